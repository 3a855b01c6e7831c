"""A diagnosis plus its trace as a report: HTML (findings → per-layer table → figures → raw
numbers), JSON, and the per-layer table shared with the terminal view.

Everything here reads only the :class:`~gradmedic.diagnosis.finding.Diagnosis` and the
:class:`~gradmedic.trace.Trace`, never the model, so ``gradmedic report TRACE -o report.html``
rebuilds the same report from a saved trace.

Example::

    >>> from gradmedic.trace import read_trace                           # doctest: +SKIP
    >>> from gradmedic import diagnose                         # doctest: +SKIP
    >>> tr = read_trace("run/trace.sqlite")                              # doctest: +SKIP
    >>> write_diagnosis_report("report.html", diagnose(tr), tr)          # doctest: +SKIP
    PosixPath('report.html')
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gradmedic._json import to_jsonable
from gradmedic.report.document import Report
from gradmedic.trace.derived import SPIKE_FACTOR

if TYPE_CHECKING:  # pragma: no cover
    from gradmedic.diagnosis.finding import Diagnosis
    from gradmedic.trace import Trace

__all__ = [
    "LAYER_COLUMNS",
    "diagnosis_json",
    "diagnosis_report",
    "layer_table",
    "step_table",
    "write_diagnosis_report",
]

#: Columns of the per-layer table (HTML, JSON and terminal).
LAYER_COLUMNS = [
    "module",
    "type",
    "grad_norm",
    "signal_out",
    "gain",
    "saturated_frac",
    "dead_frac",
    "predicted_gain",
]

_HTML_HEADERS = {
    "grad_norm": "grad norm ‖∂L/∂W‖",
    "signal_out": "signal out ‖∂L/∂y‖",
    "gain": "gain α",
    "saturated_frac": "saturated",
    "dead_frac": "dead",
    "predicted_gain": "predicted gain",
}

_FIGURE_CAPTIONS = {
    "flow": (
        "Gradient flow per module at initialisation (faint line: last recorded step). Top: the "
        "weight-gradient norm ‖∂L/∂W‖ and the backward signal ‖∂L/∂y‖ on a log axis, input on the "
        "left; a downward slope to the left is a vanishing gradient, upward an exploding one. "
        "Bottom: each module's gain α = ‖∂L/∂x‖/‖∂L/∂y‖ against theory's mean-field prediction "
        "(×) and α = 1."
    ),
    "product": (
        "The product of gains from each module to the output against the measured ratio of the "
        "gradient at that module's input to the gradient at the output (article 1.1: the "
        "per-layer factors multiply). Where they part, a skip connection or branch carries the "
        "signal around the chain."
    ),
    "activation": (
        "Saturated and dead fractions per activation layer (top) and the mean slope φ'(x) "
        "(bottom) against theory's E[φ'] at the measured pre-activation scale. Sigmoid's slope "
        "is at most 0.25."
    ),
    "heatmap": (
        "Backward signal ‖∂L/∂y‖ per module (rows, input at top) and training step (columns), "
        "log colour scale."
    ),
    "rnn": (
        "Gradient reaching each time step of the recurrent layers; the dotted line is 10⁻³ of the "
        "largest value (the memory-horizon threshold)."
    ),
    "steps": (
        f"Global gradient norm over training with spikes (▲, at least {SPIKE_FACTOR:g}× the run's "
        "median, as in the gradient-spikes finding) and NaN/Inf events (red lines); loss below."
    ),
}


def _num(v: Any) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def layer_table(diagnosis: Diagnosis | None, trace: Trace | None = None) -> pd.DataFrame:
    """The per-layer table: module, type, grad norm, backward-signal out, gain, saturated, dead,
    predicted gain (columns :data:`LAYER_COLUMNS`).

    Rows come from ``diagnosis.layers`` (the numbers the findings were drawn from) when it has
    them, else from the trace at its first recorded step; both are
    :func:`gradmedic.diagnosis.layer_table` rows, so the terminal, HTML and JSON tables and the
    diagnosis agree by construction. ``predicted_gain`` comes from the diagnosis when it
    carries one, else from the same table computed on the trace.
    """
    from gradmedic.diagnosis.table import layer_table as diagnosis_layer_table

    rows = list(getattr(diagnosis, "layers", None) or [])
    trace_rows = diagnosis_layer_table(trace) if trace is not None else []
    if not rows:
        rows = trace_rows
    pred = {r["module"]: r.get("predicted_gain") for r in trace_rows}
    out = []
    for r in rows:
        module = str(r.get("module", ""))
        p = r.get("predicted_gain")
        out.append(
            {
                "module": module,
                "type": str(r.get("type", "") or ""),
                "grad_norm": _num(r.get("grad_norm")),
                "signal_out": _num(r.get("signal_out")),
                "gain": _num(r.get("gain")),
                "saturated_frac": _num(r.get("saturated_frac")),
                "dead_frac": _num(r.get("dead_frac")),
                "predicted_gain": _num(p) if p is not None else _num(pred.get(module)),
            }
        )
    return pd.DataFrame(out, columns=LAYER_COLUMNS)


def step_table(trace: Trace) -> pd.DataFrame:
    """Per recorded step: ``step``, ``loss``, ``grad_norm_total`` and ``nonfinite`` (1 when a
    NaN/Inf appeared at that step, forward or backward, else 0)."""
    f = trace.frame
    g = f[(f["module"] == "") & (f["parameter"] == "")]
    table = g[g["quantity"].isin(["loss", "grad_norm_total"])].pivot_table(
        index="step", columns="quantity", values="value", aggfunc="last", dropna=False
    )
    steps = sorted(set(trace.steps))
    table = table.reindex(steps)
    bad = f[f["quantity"].isin(["nonfinite", "nonfinite_forward", "nonfinite_backward"])]
    bad_steps = {int(s) for s in bad["step"]}
    out = pd.DataFrame({"step": steps})
    for q in ("loss", "grad_norm_total"):
        out[q] = table[q].to_numpy() if q in table.columns else np.nan
    out["nonfinite"] = [1 if s in bad_steps else 0 for s in steps]
    return out


def _nonfinite_events(trace: Trace) -> list[dict[str, Any]]:
    f = trace.frame
    bad = f[f["quantity"].isin(["nonfinite_forward", "nonfinite_backward"])]
    return [
        {
            "step": int(r.step),
            "module": r.module,
            "where": "forward" if r.quantity == "nonfinite_forward" else "backward",
        }
        for r in bad.sort_values("step").itertuples(index=False)
    ]


def _rnn_table(trace: Trace) -> pd.DataFrame | None:
    f = trace.frame
    f = f[f["quantity"].isin(["input_grad_t", "hidden_grad_t"])]
    if f.empty:
        return None
    first = int(f["step"].min())
    f = f[f["step"] == first]
    f = f.assign(
        series=[
            f"{m} {q}" + (f" {p}" if p else "")
            for m, q, p in zip(f["module"], f["quantity"], f["parameter"], strict=True)
        ]
    )
    table = f.pivot_table(index="idx", columns="series", values="value", aggfunc="last")
    table.index = table.index.astype(int)
    table.index.name = "t"
    return table


def _subtitle(diagnosis: Diagnosis | None, trace: Trace) -> str:
    meta = trace.meta or {}
    parts = []
    if meta.get("model_spec"):
        parts.append(f"model {meta['model_spec']}")
    elif meta.get("model_class"):
        parts.append(f"model {meta['model_class']}")
    if meta.get("data_spec"):
        parts.append(f"data {meta['data_spec']}")
    steps = trace.steps
    if steps:
        parts.append(f"{len(steps)} recorded steps ({steps[0]}–{steps[-1]})")
    return "; ".join(parts)


def diagnosis_report(
    diagnosis: Diagnosis, trace: Trace, *, title: str = "gradmedic diagnosis"
) -> Report:
    """Build (without writing) the diagnosis report; callers may append more blocks.

    Order: findings; per-layer table; figures (gradient flow, gain product, activations,
    signal heatmap, RNN time profile, gradient norm over steps, those the trace has data for);
    raw numbers (per-step table, non-finite events, RNN profile).
    """
    from gradmedic.report import figures as F

    rep = Report(title, _subtitle(diagnosis, trace))
    meta = trace.meta or {}
    facts: dict[str, Any] = {}
    for key, label in (
        ("model_spec", "model"),
        ("data_spec", "data"),
        ("loss_spec", "loss"),
        ("n_params", "parameters"),
        ("seed", "seed"),
        ("torch_version", "torch"),
    ):
        if meta.get(key) is not None:
            facts[label] = meta[key]
    if trace.path is not None:
        facts["trace"] = str(trace.path)
    rep.add_meta(facts)
    rep.add_findings(diagnosis)

    layers = layer_table(diagnosis, trace)
    rep.add_heading("Per-layer numbers")
    rep.add_text(
        "One row per module in model order (input first), at initialisation: grad norm = "
        "‖∂L/∂W‖ of the module's own parameters, signal out = ‖∂L/∂y‖ at its output, gain = "
        "‖∂L/∂x‖/‖∂L/∂y‖, saturated/dead = fraction of units, predicted gain = mean-field theory "
        "(√σ_w² for Linear/Conv, √E[φ'(h)²] for activations)."
    )
    rep.add_table(
        layers.rename(columns=_HTML_HEADERS), caption="Per-layer gradient health (initialisation)"
    )

    rep.add_heading("Figures")
    rep.add_figure(F.gradient_flow_figure(trace), _FIGURE_CAPTIONS["flow"])
    rep.add_figure(F.gain_product_figure(trace), _FIGURE_CAPTIONS["product"])
    rep.add_figure(F.activation_figure(trace), _FIGURE_CAPTIONS["activation"])
    if len(trace.steps) > 1:
        rep.add_figure(F.signal_heatmap_figure(trace), _FIGURE_CAPTIONS["heatmap"])
    rep.add_figure(F.rnn_time_figure(trace), _FIGURE_CAPTIONS["rnn"])
    rep.add_figure(F.grad_norm_over_steps_figure(trace), _FIGURE_CAPTIONS["steps"])

    rep.add_heading("Raw numbers")
    rep.add_table(step_table(trace), caption="Per recorded step")
    events = _nonfinite_events(trace)
    if events:
        rep.add_table(
            events, caption="NaN/Inf events: first module whose output or gradient was not finite"
        )
    rnn = _rnn_table(trace)
    if rnn is not None:
        rep.add_table(rnn, caption="Gradient norm reaching each time step t (first recorded step)")
    return rep


def write_diagnosis_report(
    path: str | Path, diagnosis: Diagnosis, trace: Trace, title: str = "gradmedic diagnosis"
) -> Path:
    """Write the diagnosis report (HTML, or JSON when ``path`` ends in ``.json``); return the path."""
    return diagnosis_report(diagnosis, trace, title=title).write(path)


def diagnosis_json(diagnosis: Diagnosis, trace: Trace | None = None) -> dict[str, Any]:
    """The diagnosis as strict-JSON data for machines and CI.

    Keys: ``worst`` (highest severity or None), ``findings``, ``skipped`` (rules that could not
    run, with the reason), ``layers`` (the per-layer table,
    :data:`LAYER_COLUMNS`), ``meta`` (the diagnosis's), and with a trace ``steps`` (per-step
    loss, gradient norm, non-finite flag), ``nonfinite_events`` and ``trace`` (path and run
    metadata without the model summary). NaN and inf appear as the strings "nan"/"inf"/"-inf"
    (:mod:`gradmedic._json`).
    """
    out: dict[str, Any] = {
        "worst": diagnosis.worst,
        "findings": [f.to_dict() for f in diagnosis.findings],
        "skipped": [{"rule": r, "reason": why} for r, why in diagnosis.skipped],
        "layers": layer_table(diagnosis, trace).to_dict("records"),
        "meta": dict(diagnosis.meta),
    }
    if trace is not None:
        out["steps"] = step_table(trace).to_dict("records")
        out["nonfinite_events"] = _nonfinite_events(trace)
        out["trace"] = {
            "path": str(trace.path) if trace.path is not None else None,
            "meta": {k: v for k, v in (trace.meta or {}).items() if k != "model_summary"},
        }
    return to_jsonable(out)
