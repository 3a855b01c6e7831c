"""Helpers shared by the diagnosis tests (tests/diagnosis/...): a per-process data cache, a
cached zoo-model diagnosis, finding lookup, a synthetic loss / gradient-norm trace, and the slow
autograd reference of the end-to-end backward-signal ratio the diagnosis judges."""

from __future__ import annotations

import copy
import json
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from gradmedic.diagnosis import Diagnosis
from gradmedic.trace import Trace, frame_from_rows
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig
from gradmedic.zoo import Dataset, build_model, load_data

_DATA: dict[str, Dataset] = {}
_RUNS: dict[tuple[str, str, str | None, int], Diagnosis] = {}


def data(spec: str) -> Dataset:
    """``load_data(spec)``, loaded once per test process."""
    if spec not in _DATA:
        _DATA[spec] = load_data(spec)
    return _DATA[spec]


def run(spec: str, dspec: str = "digits", loss: str | None = None, steps: int = 10) -> Diagnosis:
    """Diagnosis of zoo model ``spec`` (seed 0) trained ``steps`` steps on ``dspec``, every step
    recorded (exact RNN time profiles for recurrent specs). Cached per process: several test
    files judge the same run, so callers must not change the result."""
    key = (spec, dspec, loss, steps)
    if key not in _RUNS:
        d = data(dspec)
        model = build_model(spec, d.info, seed=0)
        rnn = any(k in spec for k in ("rnn", "lstm", "gru"))
        cfg = TrainConfig(steps=steps, every=1, rnn_hidden=rnn, batch_size=32 if rnn else 64)
        _RUNS[key] = diagnose(model=model, data=d, loss=loss, config=cfg)
    return _RUNS[key]


def finding(d: Diagnosis, slug: str):
    """The first finding with ``slug``; fails the test, listing what was found, when none."""
    hits = [f for f in d.findings if f.slug == slug]
    assert hits, f"{slug} not in {[(f.slug, f.severity) for f in d.findings]}"
    return hits[0]


def spike_trace(losses: list[float], norms: list[float]) -> Trace:
    """A trace holding only the loss and the global gradient norm of each step (no module)."""
    rows = []
    for step, (loss, norm) in enumerate(zip(losses, norms, strict=True)):
        rows.append((step, "", "", "loss", None, loss))
        rows.append((step, "", "", "grad_norm_total", None, norm))
    modules = pd.DataFrame(
        [(0, "", "Sequential", None, 0, "{}")],
        columns=["ord", "name", "type", "activation", "n_params", "info"],
    )
    return Trace(frame=frame_from_rows(rows), modules=modules, meta={"schema_version": 1})


def event_trace(
    modules: list[tuple[str, str, str | None, dict[str, Any]]],
    rows: list[tuple],
    meta: dict[str, Any] | None = None,
) -> Trace:
    """A hand-built trace: ``modules`` as ``(name, type, activation, info)`` in model order
    (the root ``""`` first), ``rows`` as ``(step, module, parameter, quantity, idx, value)``."""
    mods = pd.DataFrame(
        [(i, n, t, a, 0, json.dumps(info)) for i, (n, t, a, info) in enumerate(modules)],
        columns=["ord", "name", "type", "activation", "n_params", "info"],
    )
    return Trace(
        frame=frame_from_rows(rows), modules=mods, meta={"schema_version": 1, **(meta or {})}
    )


def linear_stack(depth: int, sw2: float, width: int = 256) -> list[tuple]:
    """The modules of a bias-free Linear stack (``linears.0`` ...) and a head, as
    :func:`event_trace` takes them."""
    info = {"fan_in": width, "fan_out": width, "sw2": sw2, "sb2": 0.0}
    mods = [("", "LinearStack", None, {}), ("linears", "ModuleList", None, {})]
    mods += [(f"linears.{i}", "Linear", None, info) for i in range(depth)]
    head = {"fan_in": width, "fan_out": 1, "sw2": 1 / 3, "sb2": 0.0}
    return [*mods, ("head", "Linear", None, head)]


#: Norms with one spike (40 at step 5, the median is 1.0) and a loss that jumps right after it.
SPIKE_NORMS = [1.0, 1.1, 0.9, 1.0, 1.2, 40.0, 1.0, 1.1, 0.9, 1.0]
SPIKE_LOSSES_JUMP = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 9.5, 6.0, 4.0, 3.0]


class LogOfShifted(nn.Module):
    """log(x - 100): NaN for every realistic input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x - 100.0)


def output_grad_ratio(model: nn.Module, x, y, first: str, last: str) -> float:
    """``||dL/d out(first)|| / ||dL/d out(last)||`` by plain autograd (retain_grad on the two
    modules' outputs) for the cross-entropy of ``model(x)``, on a copy with in-place ReLUs
    turned off; the caller's model is untouched."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    mods = dict(model.named_modules())
    keep: dict[str, torch.Tensor] = {}

    def grab(name):
        def hook(_m, _a, out):
            out.retain_grad()
            keep[name] = out

        return hook

    hs = [mods[n].register_forward_hook(grab(n)) for n in (first, last)]
    torch.manual_seed(0)  # train() seeds the same way before its first forward (dropout mask)
    model.train()
    F.cross_entropy(model(x), y).backward()
    for h in hs:
        h.remove()
    return float(keep[first].grad.double().norm() / keep[last].grad.double().norm())
