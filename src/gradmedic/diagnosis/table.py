"""The per-layer table a diagnosis is built on: the trace's measured rows plus theory's
predicted gain for each module.

The measurements come from :meth:`gradmedic.trace.Trace.layer_rows` (cached per step), the
predictions from :func:`gradmedic.theory.gains.module_predicted_gain`, and the end-to-end
ratio from :mod:`gradmedic.trace.derived`, its only definition.

Example::

    >>> rows = layer_table(trace)                            # doctest: +SKIP
    >>> rows[0]["module"], rows[0]["gain"], rows[0]["predicted_gain"]   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from gradmedic.theory.gains import module_predicted_gain
from gradmedic.trace import Trace
from gradmedic.trace.derived import EndToEnd, end_to_end_rows

__all__ = ["end_to_end", "layer_table", "module_infos", "signal_steps"]


def module_infos(trace: Trace) -> dict[str, dict[str, Any]]:
    """``name -> {"type", "activation", "ord", "n_params", **info}`` (cached on the trace)."""
    return trace.module_infos()


def signal_steps(trace: Trace) -> list[int]:
    """Recorded steps that carry backward-signal rows, ascending."""
    return trace.signal_steps()


def layer_table(trace: Trace, step: int | None = None) -> list[dict[str, Any]]:
    """:meth:`Trace.layer_rows` at ``step`` (default: the first step with a signal), each row
    with ``predicted_gain`` added (``sqrt(sw2)`` for a Linear/Conv, ``sqrt(E[phi'(sqrt(q)
    z)^2])`` for an activation at its measured ``q``; None where theory has no model). The
    rows are fresh copies: callers may change them."""
    steps = trace.signal_steps() or trace.steps
    if not steps:
        return []
    s = steps[0] if step is None else int(step)
    key = ("layer_table", s)
    cache = trace._cache
    if key not in cache:
        rows = []
        for r in trace.layer_rows(s):
            row = {k: v for k, v in r.items() if k != "info"}
            row["predicted_gain"] = module_predicted_gain(r["info"], r.get("preact_ms"))
            rows.append(row)
        cache[key] = rows
    return [dict(r) for r in cache[key]]


def end_to_end(trace: Trace, step: int | None = None) -> EndToEnd | None:
    """The end-to-end backward-signal measurement at ``step`` with theory's predicted product
    (:func:`gradmedic.trace.derived.end_to_end_rows` over :func:`layer_table`)."""
    steps = trace.signal_steps() or trace.steps
    if not steps:
        return None
    s = steps[0] if step is None else int(step)
    return end_to_end_rows(layer_table(trace, s), s)
