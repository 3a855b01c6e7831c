"""The numbers the figures draw, read from a trace: the per-layer snapshot and its steps.

:func:`layer_snapshot` is :func:`gradmedic.diagnosis.layer_table` as a DataFrame, so the
figures, the report's table and the diagnosis read the same numbers; :func:`predicted_gains`
is theory's column of it.

Example::

    >>> from gradmedic.trace import read_trace                      # doctest: +SKIP
    >>> snap = layer_snapshot(read_trace("run/trace.sqlite"))        # doctest: +SKIP
    >>> snap[["module", "gain", "predicted_gain"]].head(3)           # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from gradmedic.diagnosis.table import layer_table

if TYPE_CHECKING:  # pragma: no cover
    from gradmedic.trace import Trace

__all__ = [
    "SNAPSHOT_COLUMNS",
    "as_float",
    "first_step",
    "last_step",
    "layer_snapshot",
    "module_order",
    "predicted_gains",
    "recorded_modules",
]


def module_order(trace: Trace) -> list[str]:
    """Names of the hooked modules in model order (the root module excluded)."""
    return [str(n) for n in trace.modules["name"] if str(n) != ""]


def first_step(trace: Trace, quantity: str) -> int | None:
    """The first step that recorded ``quantity``; None when none did."""
    f = trace.frame
    steps = f.loc[f["quantity"] == quantity, "step"]
    return int(steps.min()) if len(steps) else None


def last_step(trace: Trace, quantity: str) -> int | None:
    """The last step that recorded ``quantity``; None when none did."""
    f = trace.frame
    steps = f.loc[f["quantity"] == quantity, "step"]
    return int(steps.max()) if len(steps) else None


def recorded_modules(trace: Trace, step: int, quantities: tuple[str, ...]) -> set[str]:
    """Modules with a record of any of ``quantities`` at ``step``, whatever its value (a NaN
    recorded is data a figure must show as such; a quantity not recorded is not)."""
    f = trace.frame
    hit = f[(f["step"] == step) & f["quantity"].isin(quantities)]
    return {str(m) for m in hit["module"]}


#: Columns of :func:`layer_snapshot`.
SNAPSHOT_COLUMNS = [
    "module",
    "type",
    "weight_grad_norm",
    "grad_norm",
    "signal_out",
    "signal_in",
    "gain",
    "dphi_mean",
    "dphi_sq_mean",
    "preact_ms",
    "saturated_frac",
    "dead_frac",
    "predicted_gain",
]


def layer_snapshot(trace: Trace, step: int | None = None) -> pd.DataFrame:
    """The diagnosis's per-layer table (:func:`gradmedic.diagnosis.layer_table`) as a frame.

    One row per hooked module (model order, root excluded) with its numbers at ``step``;
    columns :data:`SNAPSHOT_COLUMNS`: ``module``, ``type``, ``weight_grad_norm`` (per-parameter
    ``grad_norm`` of ``weight``, else the module aggregate), ``grad_norm``, ``signal_out``,
    ``signal_in``, ``gain``, ``dphi_mean``, ``dphi_sq_mean``, ``preact_ms``,
    ``saturated_frac``, ``dead_frac`` (NaN where not measured) and ``predicted_gain`` (theory,
    :func:`gradmedic.theory.gains.module_predicted_gain`). ``step=None`` takes the first
    step with backward signals (initialisation). Modules with no record at that step are left
    out; a module whose records there are all NaN keeps its row (all NaN), so a figure can say
    that it has no finite values. The figures, the report's table and the diagnosis read the
    same numbers.
    """
    rows = layer_table(trace, step)
    steps = trace.signal_steps() or trace.steps
    if steps:
        at = steps[0] if step is None else int(step)
        infos = trace.module_infos()
        f = trace.frame
        here = f[(f["step"] == at) & (f["parameter"] == "") & (f["module"] != "")]
        have = {r["module"] for r in rows}
        rows += [
            {"module": m, "type": infos.get(m, {}).get("type", "?")}
            for m in dict.fromkeys(str(m) for m in here["module"])
            if m not in have
        ]
        rows.sort(key=lambda r: infos.get(r["module"], {}).get("ord", 10**9))
    data = {
        c: [r.get(c) if c in ("module", "type") else as_float(r.get(c)) for r in rows]
        for c in SNAPSHOT_COLUMNS
    }
    return pd.DataFrame(data, columns=SNAPSHOT_COLUMNS)


def as_float(v: Any) -> float:
    """``v`` as a float, None as NaN (not measured)."""
    return float("nan") if v is None else float(v)


def predicted_gains(trace: Trace, step: int | None = None) -> dict[str, float]:
    """Theory's per-module gain of the backward-signal norm, where there is one.

    The ``predicted_gain`` column of :func:`gradmedic.diagnosis.layer_table` at ``step``
    (default: the first step with backward signals): ``sqrt(sw2)`` for Linear/Conv layers,
    ``sqrt(E[phi'(sqrt(q) z)^2])`` for an elementwise activation at its measured
    pre-activation mean square ``q``, 1 for Flatten/Identity; other modules (norms, RNNs,
    pooling, containers) get no prediction.
    """
    return {
        r["module"]: float(r["predicted_gain"])
        for r in layer_table(trace, step)
        if r["predicted_gain"] is not None
    }
