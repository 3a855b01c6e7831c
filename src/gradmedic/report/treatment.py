"""Showing a treatment: the verdict first, then the before/after table, in the terminal and
as an HTML report.

:func:`print_treatment` prints the verdict line (*cured*, *improved* or *no cure within N
steps*), then one row per candidate at its own best learning rate (the rate, how its run ended,
first/last backward-signal ratio, ``|log10|`` health, saturated and dead fractions, non-finite
steps, final loss, distance below the untreated noise band, ms/step), the rates each candidate
was tried at, the notes and the lines that apply the verified transform.
:func:`write_treatment_report` writes the same as a self-contained HTML page (the untreated
run's findings, the verdict, the tables, the before/after figures of
:func:`gradmedic.report.figures.treatment_figures`, the advice and what the chosen remedy
changed) and records its path in the result (and in ``treatment.json`` when the result was
saved).

Example::

    >>> res = treat("mlp:depth=20,act=sigmoid", "digits", out="treat-out")   # doctest: +SKIP
    >>> print_treatment(res)                                                  # doctest: +SKIP
    cured: add-residual at lr 0.1: loss 2.337 -> 1.338 (0.967 below the untreated noise band ...
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

_COLUMNS = ("candidate", "lr", "run", "first/last", "health", "NaN", "final loss", "below band")
_KIND_STYLE = {"cured": "bold green", "improved": "bold yellow", "no cure": "bold red"}


def _fmt(v: Any, kind: str = "g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if kind == "g" else f"{v:.4g}"
    return str(v)


def _run(row: dict[str, Any]) -> str:
    """How the chosen run of a candidate ended: its status, and the step it was stopped at."""
    stopped = row.get("stopped")
    return f"{row.get('status', '-')}" + (f" ({stopped})" if stopped else "")


def _rates(row: dict[str, Any]) -> str:
    return ", ".join(
        f"{r['lr']:.3g} {r['status']}"
        + (f" {r['final_loss']:.4g}" if math.isfinite(r.get("final_loss", math.nan)) else "")
        for r in row.get("rates", [])
    )


def print_treatment(result: TreatmentResult, console: Any = None) -> None:
    """Print the verdict line first, then the table, the rates tried, the notes and the advice
    with rich (to ``console``, default a new :class:`rich.console.Console` on stdout)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    con = console or Console()
    con.print(Text(result.verdict, style=_KIND_STYLE.get(result.verdict_kind, "")), soft_wrap=True)
    table = Table(
        title="each candidate at its own best learning rate (first/last: backward-signal "
        "ratio; health: its decades from 1; NaN: non-finite steps)"
    )
    widest = max((len(r["name"]) + 2 for r in result.rows), default=10)
    for col in _COLUMNS:
        if col == "candidate":
            table.add_column(col, overflow="fold", min_width=min(widest, 24))
        else:
            table.add_column(col, justify="left" if col == "run" else "right")
    for r in result.rows:
        name = r["name"]
        best = name == result.best
        style = "bold green" if best else ("dim" if r.get("error") else None)
        label = f"* {name}" if best else name
        if r.get("error") and not r.get("rates"):
            table.add_row(label, *["-"] * (len(_COLUMNS) - 1), style=style)
            continue
        table.add_row(
            label,
            _fmt(r.get("lr")),
            _run(r),
            _fmt(r.get("first_last_signal_ratio")),
            _fmt(r.get("health")),
            str(r.get("nonfinite", "-")),
            _fmt(r.get("final_loss"), "loss"),
            _fmt(r.get("below_band")),
            style=style,
        )
    con.print(table)
    if result.band is not None:
        con.print(Text(result.band.text(), style="dim"))
    for r in result.rows:
        con.print(Text(f"rates tried, {r['name']}: {_rates(r) or '-'}", style="dim"))
        if r.get("error"):
            con.print(Text(f"{r['name']} could not run: {r['error']}", style="yellow"))
    for note in result.notes:
        con.print(Text(note, style="dim"))
    con.print(result.advice, markup=False, highlight=False, soft_wrap=True)  # code pastes whole
    cfg = result.config
    if cfg.get("elapsed_s") is not None:
        con.print(
            Text(
                f"{cfg['elapsed_s']:.1f} s with {cfg.get('workers', 1)} worker(s) "
                f"({cfg.get('executor')}); budget {_fmt(cfg.get('budget_s'))} s",
                style="dim",
            )
        )
    if result.report_path is not None:
        con.print(f"report: {result.report_path}")


def _table_rows(result: TreatmentResult) -> list[dict[str, Any]]:
    out = []
    for r in result.rows:
        ms = r.get("time_per_step")
        out.append(
            {
                "candidate": r["name"] + (" (best)" if r["name"] == result.best else ""),
                "lr": r.get("lr"),
                "run": _run(r),
                "verdict": r.get("verdict"),
                "first/last signal": r.get("first_last_signal_ratio"),
                "health (decades)": r.get("health"),
                "saturated": r.get("saturated_frac"),
                "dead": r.get("dead_frac"),
                "non-finite steps": r.get("nonfinite"),
                "final loss": r.get("final_loss"),
                "below band": r.get("below_band"),
                "ms/step": 1e3 * ms if isinstance(ms, float) else None,
                "rates tried": _rates(r),
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
        f"{cfg.get('model')} on {cfg.get('data')}, {cfg.get('steps')} steps, seed "
        f"{cfg.get('seed')}, your lr {cfg.get('lr')}",
    )
    if result.diagnosis is not None:
        rep.add_findings(result.diagnosis)
    rep.add_heading("Verdict")
    rep.add_text(result.verdict)
    rep.add_heading("Before and after")
    rep.add_table(
        _table_rows(result),
        caption="Each candidate at its own best learning rate of the shared grid "
        f"({', '.join(f'{v:.3g}' for v in cfg.get('lr_grid', []))}).",
    )
    if result.band is not None:
        rep.add_text(result.band.text() + ".")
    rep.add_text(f"Chosen: {result.best}. Rule: {result.rule}.")
    before = result.results[UNTREATED].trace if UNTREATED in result.results else None
    after = {
        k: v.trace for k, v in result.results.items() if k != UNTREATED and v.trace is not None
    }
    if before is not None:
        for fig, caption in treatment_figures(before, after):
            rep.add_figure(fig, caption)
    rep.add_heading("How to apply it in your code")
    rep.add_text(result.advice)
    best_rep = result.reports.get(result.best)
    if best_rep is not None and best_rep.changes:
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
