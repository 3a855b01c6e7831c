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

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gradmedic._json import to_jsonable
from gradmedic.report.document import Report
from gradmedic.report.layers import LAYER_COLUMNS, activation_summary, layer_table
from gradmedic.report.values import module_label
from gradmedic.trace.derived import SPIKE_FACTOR

if TYPE_CHECKING:  # pragma: no cover
    from gradmedic.diagnosis.finding import Diagnosis
    from gradmedic.trace import Trace

__all__ = [
    "FIGURES",
    "LAYER_COLUMNS",
    "activation_summary",
    "diagnosis_json",
    "diagnosis_report",
    "layer_table",
    "step_table",
    "write_diagnosis_report",
]

_HTML_HEADERS = {
    "grad_norm": "grad norm ‖∂L/∂W‖",
    "signal_out": "signal out ‖∂L/∂y‖",
    "gain": "gain α",
    "saturated_frac": "saturated",
    "inactive_frac": "inactive",
    "dead_frac": "dead",
    "predicted_gain": "predicted gain",
}

#: The report's figures in order: (caption key, function of :mod:`gradmedic.report.figures`,
#: the title a note uses when the figure cannot be drawn).
FIGURES = (
    ("flow", "gradient_flow_figure", "Gradient flow per layer"),
    ("product", "gain_product_figure", "Gains multiply along depth"),
    ("activation", "activation_figure", "Activation health per layer"),
    ("heatmap", "signal_heatmap_figure", "Backward signal per module and step"),
    ("rnn", "rnn_time_figure", "Gradient reaching each time step"),
    ("steps", "grad_norm_over_steps_figure", "Gradient norm over training"),
)

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
        "Saturated (sigmoid, tanh: slope near 0 on both tails) or inactive (ReLU family: on "
        "the zero side) and dead fractions per activation layer (top) and the mean slope φ'(x) "
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


def _summary_rows(layers: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "units": r["measure"],
            "layers measured": r["layers"],
            "mean": r["mean"],
            "worst layer": r["worst_layer"],
            "worst": r["worst"],
        }
        for r in activation_summary(layers)
    ]


def _add_figures(rep: Report, trace: Trace, strict: bool) -> None:
    from gradmedic.report import figures as F

    for key, name, title in FIGURES:
        if key == "heatmap" and len(trace.steps) < 2:
            continue
        try:
            rep.add_figure(getattr(F, name)(trace), _FIGURE_CAPTIONS[key])
        except Exception as exc:  # a figure must never cost the user the diagnosis
            if strict:
                raise
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
            rep.add_text(
                f"The figure '{title}' could not be drawn ({type(exc).__name__}: "
                f"{first.strip()}); its numbers are in the tables. This is a gradmedic bug: "
                "please report it with the trace."
            )


def diagnosis_report(
    diagnosis: Diagnosis, trace: Trace, *, title: str = "gradmedic diagnosis", strict: bool = False
) -> Report:
    """Build (without writing) the diagnosis report; callers may append more blocks.

    Order: findings; per-layer table and the activation summary (mean and worst layer of the
    saturated, inactive and dead shares); figures (:data:`FIGURES`, those the trace has data
    for); raw numbers (per-step table, non-finite events, RNN profile). A figure that raises
    becomes a note in the report naming the error, so the report (and the diagnosis around
    it) is always written; ``strict=True`` raises instead (for tests). The root module is
    named by the model's class (``trace.meta["model_class"]``).
    """
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
    rep.add_findings(diagnosis, root_name=module_label("", meta))

    layers = layer_table(diagnosis, trace)
    rep.add_heading("Per-layer numbers")
    rep.add_text(
        "One row per module in model order (input first), at initialisation: grad norm = "
        "‖∂L/∂W‖ of the module's own parameters, signal out = ‖∂L/∂y‖ at its output, gain = "
        "‖∂L/∂x‖/‖∂L/∂y‖, saturated/inactive/dead = fraction of units (saturated: slope near 0 "
        "on both tails, as sigmoid and tanh; inactive: on the zero side of the ReLU family; "
        "dead: inactive on every sample), predicted gain = mean-field theory (√σ_w² for "
        "Linear/Conv, √E[φ'(h)²] for activations)."
    )
    rep.add_table(
        layers.rename(columns=_HTML_HEADERS), caption="Per-layer gradient health (initialisation)"
    )
    summary = _summary_rows(layers)
    if summary:
        rep.add_table(summary, caption="Activation health: mean over layers and the worst layer")

    rep.add_heading("Figures")
    _add_figures(rep, trace, strict)

    rep.add_heading("Raw numbers")
    rep.add_table(step_table(trace), caption="Per recorded step")
    events = _nonfinite_events(trace)
    if events:
        shown = [{**e, "module": module_label(e["module"], meta)} for e in events]
        rep.add_table(
            shown, caption="NaN/Inf events: first module whose output or gradient was not finite"
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
    :data:`LAYER_COLUMNS`), ``activation_summary`` (mean and worst layer of the saturated,
    inactive and dead shares, :func:`gradmedic.report.layers.activation_summary`), ``meta`` (the diagnosis's), and with a trace ``steps`` (per-step
    loss, gradient norm, non-finite flag), ``nonfinite_events`` and ``trace`` (path and run
    metadata without the model summary). NaN and inf appear as the strings "nan"/"inf"/"-inf"
    (:mod:`gradmedic._json`).
    """
    layers = layer_table(diagnosis, trace)
    out: dict[str, Any] = {
        "worst": diagnosis.worst,
        "findings": [f.to_dict() for f in diagnosis.findings],
        "skipped": [{"rule": r, "reason": why} for r, why in diagnosis.skipped],
        "layers": layers.to_dict("records"),
        "activation_summary": activation_summary(layers),
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
