"""The per-layer table every view shows (terminal, HTML, JSON) and its activation summary.

The measured zero-slope share of an activation (the trace's ``saturated_frac``: units whose
``|φ'|`` is below 1% of its maximum) is shown under the name that fits the activation
(:func:`zero_slope_name`): *saturated* when its slope vanishes on both tails (sigmoid, tanh,
softsign, hardtanh; the module fact ``tails == "both"``), *inactive* for the ReLU family
(``tails == "negative"``) and the other kinds. A unit inactive on every sample is *dead*.
:func:`activation_summary` gives, for each of the three, the mean over layers beside the
worst layer, so a fully dead layer cannot hide in a 50% mean.

Example::

    >>> import pandas as pd
    >>> t = pd.DataFrame({"module": ["1", "3"], "saturated_frac": [float("nan")] * 2,
    ...                   "inactive_frac": [0.5, 0.5], "dead_frac": [0.0, 1.0]})
    >>> [(r["measure"], r["mean"], r["worst"], r["worst_layer"]) for r in activation_summary(t)]
    [('inactive', 0.5, 0.5, '1'), ('dead', 0.5, 1.0, '3')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from gradmedic.diagnosis.finding import Diagnosis
    from gradmedic.trace import Trace

__all__ = [
    "FRACTION_COLUMNS",
    "LAYER_COLUMNS",
    "activation_summary",
    "layer_table",
    "zero_slope_name",
]

#: Columns of the per-layer table (HTML, JSON and terminal).
LAYER_COLUMNS = [
    "module",
    "type",
    "grad_norm",
    "signal_out",
    "gain",
    "saturated_frac",
    "inactive_frac",
    "dead_frac",
    "predicted_gain",
]

#: The shares of units in the table, each with the word a reader sees.
FRACTION_COLUMNS = {"saturated_frac": "saturated", "inactive_frac": "inactive", "dead_frac": "dead"}


def zero_slope_name(info: Mapping[str, Any] | None) -> str:
    """What an activation's zero-slope share is called: ``"saturated"`` when its slope
    vanishes on both tails (``info["tails"] == "both"``) or nothing is known about it (no
    ``tails`` fact: the trace's own name), else ``"inactive"``.

    >>> zero_slope_name({"tails": "both"}), zero_slope_name({"tails": "negative"})
    ('saturated', 'inactive')
    """
    tails = (info or {}).get("tails")
    return "saturated" if tails in (None, "both") else "inactive"


def _num(v: Any) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def layer_table(diagnosis: Diagnosis | None, trace: Trace | None = None) -> pd.DataFrame:
    """The per-layer table: module, type, grad norm, backward-signal out, gain, saturated,
    inactive and dead fractions, predicted gain (columns :data:`LAYER_COLUMNS`; NaN where
    not measured).

    Rows come from ``diagnosis.layers`` (the numbers the findings were drawn from) when it has
    them, else from the trace at its first recorded step; both are
    :func:`gradmedic.diagnosis.layer_table` rows, so the terminal, HTML and JSON tables and the
    diagnosis agree by construction. ``predicted_gain`` comes from the diagnosis when it
    carries one, else from the same table computed on the trace. The measured zero-slope
    share goes to ``saturated_frac`` or ``inactive_frac`` by :func:`zero_slope_name` of the
    module's facts in the trace (``saturated_frac`` without a trace).
    """
    from gradmedic.diagnosis.table import layer_table as diagnosis_layer_table

    rows = list(getattr(diagnosis, "layers", None) or [])
    trace_rows = diagnosis_layer_table(trace) if trace is not None else []
    infos = trace.module_infos() if trace is not None else {}
    if not rows:
        rows = trace_rows
    pred = {r["module"]: r.get("predicted_gain") for r in trace_rows}
    out = []
    for r in rows:
        module = str(r.get("module", ""))
        p = r.get("predicted_gain")
        zero = _num(r.get("saturated_frac"))
        inactive = zero_slope_name(infos.get(module)) == "inactive"
        out.append(
            {
                "module": module,
                "type": str(r.get("type", "") or ""),
                "grad_norm": _num(r.get("grad_norm")),
                "signal_out": _num(r.get("signal_out")),
                "gain": _num(r.get("gain")),
                "saturated_frac": math.nan if inactive else zero,
                "inactive_frac": zero if inactive else math.nan,
                "dead_frac": _num(r.get("dead_frac")),
                "predicted_gain": _num(p) if p is not None else _num(pred.get(module)),
            }
        )
    return pd.DataFrame(out, columns=LAYER_COLUMNS)


def activation_summary(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The mean and the worst layer of each share of units in a :func:`layer_table`.

    One dict per column of :data:`FRACTION_COLUMNS` with at least one finite value:
    ``measure`` (``saturated``, ``inactive`` or ``dead``), ``layers`` (how many layers were
    measured), ``mean``, ``worst`` (the largest share) and ``worst_layer`` (its module, the
    first one on a tie). Empty for a table without activation layers.
    """
    out: list[dict[str, Any]] = []
    for col, measure in FRACTION_COLUMNS.items():
        if col not in table.columns:
            continue
        vals = pd.to_numeric(table[col], errors="coerce")
        ok = vals.notna() & vals.abs().lt(math.inf)
        if not ok.any():
            continue
        measured = vals[ok]
        i = measured.idxmax()
        out.append(
            {
                "measure": measure,
                "layers": int(ok.sum()),
                "mean": float(measured.mean()),
                "worst": float(measured.loc[i]),
                "worst_layer": str(table.loc[i, "module"]),
            }
        )
    return out
