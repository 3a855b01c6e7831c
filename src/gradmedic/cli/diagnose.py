"""``gradmedic diagnose``: train briefly, record gradient flow, say what is wrong and how to fix
it (:func:`gradmedic.workflows.checkup_run.run_checkup`), and write the HTML report.

Bad input (an unknown model, data set, optimizer or severity, a model that does not fit the
data, anything the model, data or loss raise during training, an ``--out`` folder that holds
the trace of an earlier run without ``--overwrite``) is one line on stderr with exit status 2;
``--fail-on warning|error`` exits with status 1 when findings of that severity or worse exist,
so the command can gate a CI job; a run that yielded nothing measurable (no layer's backward
signal, e.g. a model computing only with bare parameters) exits with status 3 and says
``nothing measurable: <reason>``, never "healthy". What training changed to make the data fit (targets
reshaped to the output) is printed as a ``note:`` line on stderr and listed in the JSON's
``meta.notes``.

Example::

    gradmedic diagnose --model mlp:depth=30,act=sigmoid --data digits --steps 20 --json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradmedic.cli.options import DataOpt, LossOpt, ModelOpt, OverwriteOpt, number, whole_number
from gradmedic.cli.output import out_console, print_json, progress_bar, say_notes

__all__ = ["diagnose"]


def diagnose(
    model: ModelOpt = "mlp:depth=30,act=sigmoid",
    data: DataOpt = "digits",
    loss: LossOpt = None,
    steps: Annotated[
        int, typer.Option(parser=whole_number, help="Training steps to observe.")
    ] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", parser=whole_number)] = 64,
    lr: Annotated[float, typer.Option(parser=number, help="Learning rate.")] = 0.01,
    optimizer: Annotated[str, typer.Option(help="sgd | momentum | adam | adamw | rmsprop")] = "sgd",
    seed: Annotated[int, typer.Option(parser=whole_number, help="Seed: init, batch order.")] = 0,
    every: Annotated[int, typer.Option(parser=whole_number, help="Record every k-th step.")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "gradmedic-out"
    ),
    overwrite: OverwriteOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    fail_on: Annotated[
        str | None, typer.Option("--fail-on", help="Exit 1 on findings of this severity or worse.")
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the HTML report.")] = False,
) -> None:
    """Train briefly, record gradient flow, and say what is wrong and how to fix it.

    Exit status: 0 done; 1 findings at --fail-on or worse; 2 bad input or an error in your
    model, data or loss; 3 nothing measurable (too little recorded to judge: not healthy).
    """
    from gradmedic.diagnosis.finding import severity_rank
    from gradmedic.report import print_diagnosis, write_diagnosis_report
    from gradmedic.workflows.checkup_run import run_checkup
    from gradmedic.workflows.train import TrainConfig

    if fail_on is not None:
        severity_rank(fail_on)  # refuse an unknown severity before training
    cfg = TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed, every=every
    )
    with progress_bar(not as_json and steps >= 50, steps, "training") as update:
        run = run_checkup(
            model, data, loss=loss, config=cfg, out=out, progress=update, overwrite=overwrite
        )
    say_notes(run.diagnosis.meta.get("notes", []))
    if not no_report:
        title = f"gradmedic diagnose: {model} on {data}"
        run.report = write_diagnosis_report(
            out / "report.html", run.diagnosis, run.trace, title=title
        )
    if as_json:
        print_json(run.to_dict())
    else:
        print_diagnosis(run.diagnosis, console=out_console, trace=run.trace)
        out_console.print(f"loss: {run.losses[0]:.4g} -> {run.final_loss:.4g} over {steps} steps")
        out_console.print(f"trace: {run.trace_path}")
        if run.report:
            out_console.print(f"report: {run.report}")
    status = run.diagnosis.exit_status(fail_on)  # 1: findings at --fail-on, 3: unmeasurable
    if status:
        raise typer.Exit(status)
