"""The measurements ``treat`` compares candidates by: one row of numbers per training run.

- ``first_last_signal_ratio``: the backward signal reaching the input end over the signal at
  the output end, at the first recorded step (initialisation: what init and architecture
  remedies act on). For a feed-forward model it is the end-to-end ratio
  ``||dL/dh^first|| / ||dL/dh^last||`` of :func:`gradmedic.trace.derived.signal_ratio`, the
  same number ``diagnose`` and the lab report. For a recurrent model (the trace holds
  ``input_grad_t``) it is the ratio *through time*, ``||dL/dx_1|| / ||dL/dx_T||`` of the
  first recurrent module (:func:`time_ratio`): what vanishes or explodes there is the signal
  across time steps, which the end-to-end ratio over layers does not see.
- ``signal_ratio_median``: the geometric median of that ratio over every recorded step.
- ``health``: :func:`gradmedic.trace.derived.health` of the first ratio, ``|log10 r|``,
  decades away from 1 (lower is better; inf when the trace cannot tell).
- ``saturated_frac`` / ``dead_frac``: mean over activation layers and recorded steps.
- ``nonfinite``: steps whose loss or gradient was NaN/inf.
- ``final_loss``: mean loss over the last 10% of steps; ``time_per_step`` (median, seconds).

Example::

    >>> row = run_metrics(train(model, "digits", TrainConfig(steps=20)))   # doctest: +SKIP
    >>> row["health"], row["final_loss"]                                  # doctest: +SKIP
    (16.1, 2.308)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradmedic.trace import Trace
from gradmedic.trace.derived import health, pow10, signal_ratio
from gradmedic.workflows.train import TrainResult

__all__ = ["ratio_series", "run_metrics", "time_ratio"]


def _ratio(first: float, last: float) -> float:
    if not (math.isfinite(first) and math.isfinite(last)):
        return math.nan
    if last == 0:
        return math.inf if first > 0 else math.nan
    return first / last


def _time_ratios(trace: Trace) -> dict[int, float]:
    """Step -> ``||dL/dx_1|| / ||dL/dx_T||`` of the first recurrent module (empty when the
    trace has no ``input_grad_t``)."""
    q = trace.quantity("input_grad_t")
    if q.empty:
        return {}
    q = q[q["module"] == str(q["module"].iloc[0])]
    out = {}
    for step, g in q.groupby("step", sort=True):
        values = g.sort_values("idx")["value"]
        out[int(step)] = _ratio(float(values.iloc[0]), float(values.iloc[-1]))
    return out


def time_ratio(trace: Trace, step: int | None = None) -> float:
    """The backward signal through time, ``||dL/dx_1|| / ||dL/dx_T||`` (the gradient reaching
    the first input step over the one reaching the last), of the first recurrent module at
    ``step`` (default: the first recorded). Not the end-to-end ratio over layers
    (:func:`gradmedic.trace.derived.signal_ratio`); NaN without ``input_grad_t`` records."""
    ratios = _time_ratios(trace)
    if not ratios:
        return math.nan
    return ratios.get(min(ratios) if step is None else int(step), math.nan)


def ratio_series(trace: Trace) -> list[float]:
    """The ratio ``treat`` measures (see the module docstring) at each recorded step, in step
    order: through time for a recurrent model, end to end otherwise."""
    through_time = _time_ratios(trace)
    if through_time:
        return [through_time[s] for s in sorted(through_time)]
    return [signal_ratio(trace, s) for s in trace.signal_steps()]


def _log10(r: float) -> float:
    if math.isnan(r):
        return math.nan
    if r == 0:
        return -math.inf
    return math.log10(r) if math.isfinite(r) else math.inf


def _geometric_median(ratios: list[float]) -> float:
    logs = [v for v in (_log10(r) for r in ratios) if not math.isnan(v)]
    return pow10(float(np.median(np.asarray(logs)))) if logs else math.nan


def _mean_quantity(trace: Trace | None, name: str) -> float:
    if trace is None:
        return math.nan
    q = trace.quantity(name)
    vals = q["value"].to_numpy(dtype=float)
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if len(vals) else math.nan


def run_metrics(result: TrainResult) -> dict[str, Any]:
    """The row of measurements of one training run (see the module docstring for each key).

    Never raises for a run without a trace: its ratios are NaN and its health inf.

    >>> run_metrics(TrainResult([2.3, 2.1], [0.01, 0.01], None))["final_loss"]
    2.1
    """
    trace = result.trace
    bad_steps = {i for i, v in enumerate(result.losses) if not math.isfinite(v)}
    if trace is not None:
        bad_steps |= {int(s) for s in trace.quantity("nonfinite")["step"]}
    ratios = ratio_series(trace) if trace is not None else []
    first = ratios[0] if ratios else math.nan
    final = result.final_loss
    return {
        "first_last_signal_ratio": first,
        "signal_ratio_median": _geometric_median(ratios),
        "health": health(first),
        "saturated_frac": _mean_quantity(trace, "saturated_frac"),
        "dead_frac": _mean_quantity(trace, "dead_frac"),
        "nonfinite": len(bad_steps),
        "final_loss": final if math.isfinite(final) else math.inf,
        "first_loss": result.losses[0] if result.losses else math.nan,
        "time_per_step": result.time_per_step,
        "diverged_at": result.diverged_at,
    }
