"""``gradmedic treat``: apply each prescribed (or named) remedy to a copy of the model, retrain
it, and show before and after side by side (:func:`gradmedic.workflows.treatment.treat`).

Every candidate (the untreated model included) is trained at its own best learning rate from a
shared grid (your ``--lr`` times 0.1, 0.3, 1, 3, 10), within ``--budget``, in worker processes
when cores are free (``--executor``, ``--workers``); a progress bar on stderr counts the
trials. The verdict line comes first. Writes ``out/transform.json`` (the verified transform and
learning rate), ``out/best_model.pt``, ``out/treatment.json`` and ``out/report.html`` (not with
``--no-report``). A remedy that does not apply to the model, or bad input (anything the model,
data or loss raise in training included), is one line on stderr with exit status 2.

Example::

    gradmedic treat --model mlp:depth=12,act=sigmoid --remedy add-residual --steps 100
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from gradmedic.cli.options import DataOpt, JsonOpt, LossOpt, ModelOpt, number, whole_number
from gradmedic.cli.output import err_console, out_console, print_json

__all__ = ["treat"]


def treat(
    model: ModelOpt = "mlp:depth=30,act=sigmoid",
    data: DataOpt = "digits",
    loss: LossOpt = None,
    remedy: Annotated[
        list[str] | None,
        typer.Option("--remedy", "-r", help="Remedy to try (repeatable); default: prescribed."),
    ] = None,
    steps: Annotated[int, typer.Option(parser=whole_number, help="Steps per candidate.")] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size", parser=whole_number)] = 64,
    lr: Annotated[float, typer.Option(parser=number)] = 0.01,
    optimizer: Annotated[str, typer.Option()] = "sgd",
    seed: Annotated[int, typer.Option(parser=whole_number)] = 0,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("gradmedic-treat"),
    budget: Annotated[
        str, typer.Option(help="Wall-time budget (90s, 5m, 1h; none): stop and report.")
    ] = "5m",
    executor: Annotated[
        str, typer.Option(help="Where trials run: auto, serial, process or ray.")
    ] = "auto",
    workers: Annotated[
        int | None, typer.Option(help="Worker processes or Ray tasks (default: one per free core).")
    ] = None,
    as_json: JsonOpt = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the HTML report.")] = False,
) -> None:
    """Apply each prescribed remedy to a copy, retrain, and show before/after side by side."""
    from gradmedic.report.treatment import print_treatment, write_treatment_report
    from gradmedic.workflows.train import TrainConfig
    from gradmedic.workflows.treatment import treat as run_treat

    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed)
    with _trial_bar(enabled=not as_json) as progress:
        result = run_treat(
            model,
            data,
            loss=loss,
            config=cfg,
            remedies=remedy or None,
            out=out,
            progress=progress,
            budget=budget,
            executor=executor,
            workers=workers,
        )
    if not no_report:
        write_treatment_report(result)
    if as_json:
        print_json(result.to_dict())
    else:
        print_treatment(result, console=out_console)


@contextmanager
def _trial_bar(enabled: bool) -> Iterator[Callable[[int, int, str], None]]:
    """A transient bar on stderr over the trials (candidates x learning rates, then the noise
    seeds); yields ``update(done, planned, text)``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]treat"),
        BarColumn(),
        TextColumn("{task.completed}/{task.fields[planned]} trials"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=err_console,
        transient=True,
        disable=not (enabled and err_console.is_terminal),  # no stray line in a pipe or log
    )
    task = bar.add_task("treat", total=None, last="", planned="?")  # planned: after the 1st

    def update(done: int, planned: int, text: str) -> None:
        bar.update(task, completed=done, total=planned, planned=planned, last=text[:60])

    with bar:
        yield update
