"""Helpers shared by the experiments: monitored training runs, trace read-outs, the figure
panels that several experiments draw (loss curves, backward-signal profiles) and the flattening
of result rows into the verdict's ``measured`` numbers.

Two read-outs of the backward signal, not to be confused:

- the *end-to-end ratio* ``||dL/dh^first|| / ||dL/dh^last||`` (:attr:`ProfiledRun.ratio`) is
  :func:`gradmedic.trace.derived.signal_ratio`, the one definition ``diagnose`` and ``treat``
  use too;
- a *profile* (:func:`signal_profile`) is ``||dL/dy||`` at the output of a chosen list of
  modules (the experiment picks them: every Linear layer, say), drawn by
  :func:`profile_panel` and fed to :func:`per_layer_chi`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradmedic.lab.registry import geo_mean
from gradmedic.trace import Trace
from gradmedic.trace.derived import signal_ratio
from gradmedic.workflows.train import TrainConfig, TrainResult, train
from gradmedic.zoo import Dataset, build_model

__all__ = [
    "LN10",
    "NormRecorder",
    "ProfiledRun",
    "flat_measures",
    "linear_names",
    "loss_panel",
    "monitored_run",
    "per_layer_chi",
    "profile_panel",
    "profiled_run",
    "signal_profile",
    "smooth",
]

#: ``ln 10 = 2.3026``: the cross-entropy of a uniform guess over the 10 digit classes (a net
#: that stays here has learned nothing).
LN10 = math.log(10.0)


def monitored_run(
    model: nn.Module,
    data: Dataset,
    *,
    steps: int,
    lr: float,
    optimizer: str = "sgd",
    batch_size: int = 64,
    seed: int = 0,
    record: Iterable[int] | int | None = None,
    rnn_hidden: Iterable[int] | None = None,
    trace_path: Path | None = None,
    grad_transform: Callable[..., Any] | None = None,
    monitor: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` with :func:`gradmedic.workflows.train.train` and a Monitor recording ``record``
    (a list of steps, or every k steps; default: the first and the last step)."""
    if record is None:
        record = sorted({0, steps - 1})
    kwargs: dict[str, Any] = {"schedule": record}
    if rnn_hidden is not None:
        kwargs["rnn_hidden"] = list(rnn_hidden)
    kwargs.update(monitor or {})
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed)
    return train(
        model,
        data,
        cfg,
        monitor=kwargs,
        trace_path=trace_path,
        grad_transform=grad_transform,
    )


def linear_names(model: nn.Module, kinds: tuple[type, ...] = (nn.Linear,)) -> list[str]:
    """Qualified names of the modules of ``kinds`` in registration (= forward) order."""
    return [n for n, m in model.named_modules() if isinstance(m, kinds)]


def signal_profile(trace: Trace, names: list[str], step: int = 0) -> list[float]:
    """The backward-signal profile over a chosen list of modules: ``||dL/dy||`` at the output
    of each module in ``names`` at ``step`` (nan if absent). A profile, not the end-to-end
    ratio: for that use :func:`gradmedic.trace.derived.signal_ratio`."""
    f = trace.frame
    f = f[(f["quantity"] == "signal_out") & (f["parameter"] == "") & (f["step"] == step)]
    values = dict(zip(f["module"], f["value"], strict=True))
    return [float(values.get(n, math.nan)) for n in names]


def per_layer_chi(profile: list[float], skip: int = 2) -> float:
    """Measured per-layer squared gain: the geometric mean of ``(s_l / s_{l+1})^2`` over
    consecutive equal-width hidden layers (the first ``skip`` and last one are left out: the
    input and output layers have other widths and the length map needs a few layers to settle
    at its fixed point). Compare with the mean-field ``chi1``."""
    inner = profile[skip:-1]
    return geo_mean((a / b) ** 2 for a, b in itertools.pairwise(inner) if b > 0)


def smooth(values: list[float], k: int = 10) -> np.ndarray:
    """Running mean over ``k`` steps (for readable loss curves)."""
    a = np.asarray(values, dtype=float)
    if len(a) < k or k <= 1:
        return a
    kernel = np.ones(k) / k
    return np.convolve(a, kernel, mode="valid")


class NormRecorder:
    """A ``grad_transform`` that changes nothing and records the global gradient norm
    ``sqrt(sum_p ||g_p||^2)`` of every step in ``.norms`` (the Monitor records only the steps
    of its schedule; this is one norm per step, cheap)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def __call__(self, params: Iterable[nn.Parameter]) -> float:
        per = [torch.linalg.vector_norm(p.grad.detach()) for p in params if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack(per))) if per else 0.0
        self.norms.append(norm)
        return norm


@dataclass
class ProfiledRun:
    """A monitored training run of a model built from a zoo spec, with the backward-signal
    profile ``||dL/dh^l||`` at the output of each Linear layer at step 0 (the layers the
    experiments draw)."""

    result: TrainResult
    model: nn.Module
    layers: list[str]
    profile: list[float]

    @property
    def ratio(self) -> float:
        """The end-to-end ratio ``||dL/dh^first|| / ||dL/dh^last||`` at init (step 0), from
        :func:`gradmedic.trace.derived.signal_ratio` (NaN without a trace)."""
        trace = self.result.trace
        return math.nan if trace is None else signal_ratio(trace, 0)


def profiled_run(
    spec: str,
    data: Dataset,
    *,
    steps: int,
    lr: float,
    seed: int,
    optimizer: str = "momentum",
    prepare: Callable[[nn.Module], Any] | None = None,
    grad_transform: Callable[..., Any] | None = None,
) -> ProfiledRun:
    """Build ``spec`` (seeded), let ``prepare(model)`` re-initialise it in place (LSUV,
    zero-init residual, ...), train it with :func:`monitored_run` (first and last step
    recorded; ``grad_transform`` as in :func:`gradmedic.workflows.train.train`) and read the Linear
    layers' backward-signal profile at step 0."""
    model = build_model(spec, data.info, seed=seed)
    if prepare is not None:
        prepare(model)
    layers = linear_names(model)
    res = monitored_run(
        model,
        data,
        steps=steps,
        lr=lr,
        optimizer=optimizer,
        seed=seed,
        grad_transform=grad_transform,
    )
    return ProfiledRun(res, model, layers, signal_profile(res.trace, layers, step=0))


def flat_measures(
    rows: Iterable[Mapping[str, Any]], key: str, fields: Mapping[str, str]
) -> dict[str, Any]:
    """``{f"{row[key]}_{suffix}": row[column]}`` for every row and ``suffix: column`` of
    ``fields``: the per-case numbers of a result table as flat ``measured`` entries."""
    return {f"{r[key]}_{suffix}": r[col] for r in rows for suffix, col in fields.items()}


def loss_panel(
    ax: Any,
    curves: Mapping[str, Sequence[float]],
    title: str,
    *,
    k: int = 10,
    baseline: float | None = LN10,
    baseline_label: str | None = None,
) -> None:
    """Draw ``k``-step running means of the loss ``curves`` on ``ax`` with a dotted
    ``baseline`` (default ``ln 10``, a uniform guess on digits; None for none)."""
    for label, losses in curves.items():
        ax.plot(smooth(list(losses), k), label=label)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls=":", lw=1, label=baseline_label)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)


def profile_panel(
    ax: Any, profiles: Mapping[str, Sequence[float]], title: str, xlabel: str = "layer l"
) -> None:
    """Draw each backward-signal profile normalised by its last layer, ``||dL/dh^l|| /
    ||dL/dh^L||``, on a log axis (values floored at 1e-30 so vanished signals stay visible)."""
    for label, prof in profiles.items():
        top = prof[-1] if prof[-1] > 0 else 1.0
        ax.semilogy(range(1, len(prof) + 1), [max(p / top, 1e-30) for p in prof], label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7)
