"""Options shared by several commands: the model, data and loss specs and ``--json``.

A spec names a built-in thing with options after a colon (``mlp:depth=30,act=sigmoid``) or
points at the user's own factory (``path/to/file.py:factory``); see :mod:`gradmedic._callspec`.

Example::

    gradmedic diagnose --model mlp:depth=30,act=sigmoid --data digits --loss ce --json
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["DataOpt", "JsonOpt", "LossOpt", "ModelOpt"]

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Built-in model spec (mlp:depth=30,act=sigmoid,init=xavier | cnn | inception:aux=true "
        "| rnn | lstm | gru | transformer) or path/to/file.py:factory.",
    ),
]
DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="digits | digits-binary | mnist1d | adding-T | copy-T | random, "
        "or path/to/file.py:factory returning (input, target) batches.",
    ),
]
LossOpt = Annotated[
    str | None,
    typer.Option("--loss", help="ce | mse | bce | bce-logits | nll | file.py:factory."),
]
JsonOpt = Annotated[bool, typer.Option("--json")]
