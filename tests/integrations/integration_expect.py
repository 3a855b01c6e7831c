"""Helpers of the integration tests: what a sink should have received, read off the trace,
and the scalars of TensorBoard event files read back with tensorboard's own reader."""

from __future__ import annotations

import math
from pathlib import Path

from gradmedic.trace import Trace
from gradmedic.trace.derived import is_auxiliary, signal_ratio

EVENTS = frozenset({"nonfinite_forward", "nonfinite_backward", "nonfinite_gradient"})


def expected(trace: Trace, *, per_layer: bool = False) -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value)]`` as a sink must get them, computed from the trace alone: one
    entry per recorded step (the steps with backward-signal rows; the every-step curves of the
    unrecorded steps stay in the trace)."""
    out: dict[str, list[tuple[int, float]]] = {}
    f = trace.frame
    for step in trace.signal_steps():
        at = f[f.step == step]
        glob = at[(at.module == "") & (at.parameter == "")]
        got: dict[str, float] = {"nonfinite": float(at.quantity.isin(EVENTS).sum())}
        for q in ("grad_norm_total", "loss"):
            if (glob.quantity == q).any():
                got[q] = float(glob[glob.quantity == q].value.iloc[0])
        ratio = signal_ratio(trace, step)
        if not math.isnan(ratio):
            got["signal_ratio"] = ratio
        rows = [r for r in trace.layer_rows(step) if not is_auxiliary(r["module"])]
        gains = [r["gain"] for r in rows if r["gain"] is not None]
        if gains:
            got["worst_gain"] = max(gains, key=lambda g: abs(math.log10(g)) if g > 0 else 1e300)
        for key in ("dead_frac", "saturated_frac"):
            vals = [r[key] for r in rows if r[key] is not None]
            if vals:
                got[f"worst_{key}"] = max(vals)
        if per_layer:
            so = at[(at.quantity == "signal_out") & (at.parameter == "")]
            got.update(
                {f"signal_out/{m}": float(v) for m, v in zip(so.module, so.value, strict=True)}
            )
        for tag, v in got.items():
            out.setdefault(tag, []).append((step, v))
    return out


def tensorboard_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value)]`` of every event file under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    files = sorted(Path(folder).rglob("events.out.tfevents.*"))
    assert files, f"no event file under {folder}"
    for path in files:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def float32(series: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The values as TensorBoard stores them (float32), back as Python floats."""
    import numpy as np

    return [(s, float(np.float32(v))) for s, v in series]


def train_mlp(sinks: list, *, steps: int = 6, every: int = 2, trace_path: Path | None = None):
    """A seeded tanh/ReLU MLP trained with SGD under a Monitor with ``sinks``; its trace."""
    import torch
    from torch import nn

    from gradmedic import Monitor

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU())
    model.append(nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer=opt, every=every, sinks=sinks, trace=trace_path) as mon:
        for _ in range(steps):
            opt.zero_grad()
            loss = model(torch.randn(32, 6)).square().mean()
            loss.backward()
            mon.observe(loss)
            opt.step()
    return mon.trace()
