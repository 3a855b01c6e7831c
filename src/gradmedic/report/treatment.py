"""Showing a treatment: the before/after table in the terminal and the HTML report.

:func:`print_treatment` prints one row per candidate (first/last backward-signal ratio,
``|log10|`` health, saturated and dead fractions, non-finite steps, final loss, ms/step), the
choice with its margins, and the advice. :func:`write_treatment_report` writes the same as a
self-contained HTML page (the untreated run's findings, the table, the before/after figures
of :func:`gradmedic.report.figures.treatment_figures`, the advice and what the chosen remedy
changed) and records its path in the result (and in ``treatment.json`` when the result was
saved).

Example::

    >>> res = treat("mlp:depth=20,act=sigmoid", "digits", out="treat-out")   # doctest: +SKIP
    >>> print_treatment(res)                                                  # doctest: +SKIP
    >>> write_treatment_report(res)                                           # doctest: +SKIP
    PosixPath('treat-out/report.html')
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gradmedic.errors import ConfigError
from gradmedic.report import Report
from gradmedic.workflows.treatment import UNTREATED, TreatmentResult

__all__ = ["print_treatment", "treatment_report", "write_treatment_report"]

_COLUMNS = (
    "candidate",
    "first/last signal",
    "|log10| health",
    "saturated",
    "dead",
    "non-finite",
    "final loss",
    "ms/step",
)


def _fmt(v: Any, kind: str = "g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        if kind == "pct":
            return f"{100 * v:.1f}%"
        if kind == "ms":
            return f"{1e3 * v:.2f}"
        return f"{v:.3g}"
    return str(v)


def print_treatment(result: TreatmentResult, console: Any = None) -> None:
    """Print the before/after table, the choice with its margins and the advice with rich
    (to ``console``, default a new :class:`rich.console.Console` on stdout)."""
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    table = Table(title="gradmedic treat: before and after", show_lines=False)
    for col in _COLUMNS:
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for r in result.rows:
        name = r["name"]
        style = "bold green" if name == result.best else ("dim" if r.get("error") else None)
        label = f"* {name}" if name == result.best else name
        if r.get("error"):
            table.add_row(label, *["-"] * (len(_COLUMNS) - 1), style=style)
            continue
        table.add_row(
            label,
            _fmt(r["first_last_signal_ratio"]),
            _fmt(r["health"]),
            _fmt(r["saturated_frac"], "pct"),
            _fmt(r["dead_frac"], "pct"),
            str(r["nonfinite"]),
            _fmt(r["final_loss"]),
            _fmt(r["time_per_step"], "ms"),
            style=style,
        )
    con.print(table)
    m = result.margins
    con.print(
        f"best: [bold]{result.best}[/bold]  gradient health {_fmt(m['health_untreated'])} -> "
        f"{_fmt(m['health_best'])} decades from 1, final loss {_fmt(m['loss_untreated'])} -> "
        f"{_fmt(m['loss_best'])}"
    )
    for r in result.rows:
        if r.get("error"):
            con.print(f"[yellow]{r['name']} could not run:[/yellow] {r['error']}")
    for note in result.notes:
        con.print(f"[dim]{note}[/dim]")
    con.print(result.advice, markup=False, highlight=False)
    if result.report_path is not None:
        con.print(f"report: {result.report_path}")


def _table_rows(result: TreatmentResult) -> list[dict[str, Any]]:
    out = []
    for r in result.rows:
        ms = r.get("time_per_step")
        out.append(
            {
                "candidate": r["name"] + (" (best)" if r["name"] == result.best else ""),
                "first/last signal": r.get("first_last_signal_ratio"),
                "health (decades)": r.get("health"),
                "saturated": r.get("saturated_frac"),
                "dead": r.get("dead_frac"),
                "non-finite steps": r.get("nonfinite"),
                "final loss": r.get("final_loss"),
                "ms/step": 1e3 * ms if isinstance(ms, float) else None,
                "error": r.get("error") or "",
            }
        )
    return out


def treatment_report(result: TreatmentResult) -> Report:
    """The treatment as a :class:`~gradmedic.report.Report` (not yet written)."""
    from gradmedic.report.figures import treatment_figures

    cfg = result.config
    rep = Report(
        "gradmedic treatment",
        f"{cfg.get('model')} on {cfg.get('data')}, {cfg.get('steps')} steps, seed {cfg.get('seed')}",
    )
    if result.diagnosis is not None:
        rep.add_findings(result.diagnosis)
    rep.add_heading("Before and after")
    rep.add_table(_table_rows(result), caption="Every candidate trained the same seeded way.")
    rep.add_text(f"Chosen: {result.best}. Rule: {result.rule}.")
    m = result.margins
    rep.add_text(
        f"Margins: gradient health {m['health_untreated']:.3g} -> {m['health_best']:.3g} "
        f"decades from 1 (gain {m['health_gain_decades']:.3g}); final loss "
        f"{m['loss_untreated']:.4g} -> {m['loss_best']:.4g}."
    )
    before = result.results[UNTREATED].trace
    after = {
        k: v.trace for k, v in result.results.items() if k != UNTREATED and v.trace is not None
    }
    if before is not None:
        for fig, caption in treatment_figures(before, after):
            rep.add_figure(fig, caption)
    rep.add_heading("How to apply it in your code")
    rep.add_text(result.advice)
    best_rep = result.reports.get(result.best)
    if best_rep is not None:
        rep.add_table(
            [{"change": c} for c in best_rep.changes], caption="What the chosen remedy changed"
        )
    for note in result.notes:
        rep.add_text(note)
    return rep


def write_treatment_report(result: TreatmentResult, path: str | Path | None = None) -> Path:
    """Write the HTML report to ``path`` (default ``report.html`` in the result's output
    folder), set ``result.report_path`` and refresh ``treatment.json`` there.

    Raises ConfigError when no ``path`` is given and the result has no output folder.
    """
    if path is None:
        if result.out is None:
            raise ConfigError(
                "write_treatment_report needs a path: the treatment was run without out=; "
                "pass path='report.html'"
            )
        path = result.out / "report.html"
    import matplotlib

    matplotlib.use("Agg")
    result.report_path = treatment_report(result).write(Path(path))
    result.write_json()
    return result.report_path
