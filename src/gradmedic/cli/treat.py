"""``gradmedic treat``: apply each prescribed (or named) remedy to a copy of the model, retrain
it, and show before and after side by side (:func:`gradmedic.workflows.treatment.treat`).

Writes ``out/transform.json`` (the winning transform), ``out/best_model.pt``,
``out/treatment.json`` and ``out/report.html``. A remedy that
does not apply to the model, or bad input, is one line on stderr with exit status 2.

Example::

    gradmedic treat --model mlp:depth=12,act=sigmoid --remedy add-residual --steps 100
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradmedic.cli.options import DataOpt, JsonOpt, LossOpt, ModelOpt
from gradmedic.cli.output import out_console, print_json

__all__ = ["treat"]


def treat(
    model: ModelOpt = "mlp:depth=30,act=sigmoid",
    data: DataOpt = "digits",
    loss: LossOpt = None,
    remedy: Annotated[
        list[str] | None,
        typer.Option("--remedy", "-r", help="Remedy to try (repeatable); default: prescribed."),
    ] = None,
    steps: Annotated[int, typer.Option(help="Training steps per candidate.")] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    lr: Annotated[float, typer.Option()] = 0.01,
    optimizer: Annotated[str, typer.Option()] = "sgd",
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("gradmedic-treat"),
    as_json: JsonOpt = False,
) -> None:
    """Apply each prescribed remedy to a copy, retrain, and show before/after side by side."""
    from gradmedic.report.treatment import print_treatment, write_treatment_report
    from gradmedic.workflows.train import TrainConfig
    from gradmedic.workflows.treatment import treat as run_treat

    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed)
    result = run_treat(model, data, loss=loss, config=cfg, remedies=remedy or None, out=out)
    write_treatment_report(result)
    if as_json:
        print_json(result.to_dict())
    else:
        print_treatment(result, console=out_console)
