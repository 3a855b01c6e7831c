"""``gradmedic demo``: diagnose a 30-layer sigmoid MLP on digits
(:func:`gradmedic.workflows.checkup_run.run_checkup`), treat it
(:func:`gradmedic.workflows.treatment.treat`), and write a report to open.

An output folder that cannot be written, or that holds the trace of an earlier run without
``--overwrite``, is one line on stderr with exit status 2.

Example::

    gradmedic demo --out gradmedic-demo --overwrite
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradmedic.cli.options import OverwriteOpt
from gradmedic.cli.output import out_console, say

__all__ = ["DEMO_DATA", "DEMO_MODEL", "demo"]

DEMO_MODEL = "mlp:depth=30,act=sigmoid"
DEMO_DATA = "digits"


def demo(
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("gradmedic-demo"),
    overwrite: OverwriteOpt = False,
) -> None:
    """Diagnose a 30-layer sigmoid MLP on digits, treat it, and write a report to open."""
    from gradmedic.report import print_diagnosis, write_diagnosis_report
    from gradmedic.report.treatment import print_treatment, write_treatment_report
    from gradmedic.workflows.checkup_run import run_checkup
    from gradmedic.workflows.train import TrainConfig
    from gradmedic.workflows.treatment import treat

    say(f"[bold]1/2[/bold] diagnosing {DEMO_MODEL} on {DEMO_DATA} (20 steps)")
    cfg = TrainConfig(steps=20, lr=0.1, seed=0, every=1)
    run = run_checkup(DEMO_MODEL, DEMO_DATA, config=cfg, out=out, overwrite=overwrite)
    print_diagnosis(run.diagnosis, console=out_console, trace=run.trace)
    title = f"gradmedic demo: {DEMO_MODEL} on {DEMO_DATA}"
    report = write_diagnosis_report(out / "report.html", run.diagnosis, run.trace, title=title)
    say("[bold]2/2[/bold] treating it: each prescription on a copy, retrained")
    cfg = TrainConfig(steps=150, lr=0.1, seed=0)
    treated = treat(DEMO_MODEL, DEMO_DATA, config=cfg, out=out / "treat")
    write_treatment_report(treated)
    print_treatment(treated, console=out_console)
    out_console.print(f"\nReport: {report.resolve()}")
