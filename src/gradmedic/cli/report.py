"""``gradmedic report TRACE``: rebuild the diagnosis and its HTML report from a saved trace,
without the model (:func:`gradmedic.workflows.checkup.diagnose` over the trace).

A missing or unreadable trace, or one with no recorded gradient, is one line on stderr with
exit status 2.

Example::

    gradmedic report gradmedic-out/trace.sqlite -o report.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradmedic.cli.output import out_console, print_json

__all__ = ["report"]


def report(
    trace: Annotated[Path, typer.Argument(help="A trace.sqlite file or the run's --out folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Rebuild the report from a saved trace, without the model."""
    from gradmedic.report import diagnosis_json, print_diagnosis, write_diagnosis_report
    from gradmedic.trace import read_trace
    from gradmedic.workflows.checkup import diagnose

    tr = read_trace(trace)
    result = diagnose(tr)
    path = write_diagnosis_report(output, result, tr, title=f"gradmedic report: {tr.path}")
    if as_json:
        print_json(diagnosis_json(result, tr))
    else:
        print_diagnosis(result, console=out_console, trace=tr)
        out_console.print(f"report: {path}")
