"""Options shared by several commands: the model, data and loss specs and ``--json``.

A spec names a built-in thing with options after a colon (``mlp:depth=30,act=sigmoid``) or
points at the user's own factory (``path/to/file.py:factory``); see :mod:`gradmedic._callspec`.

Example::

    gradmedic diagnose --model mlp:depth=30,act=sigmoid --data digits --loss ce --json
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

__all__ = ["DataOpt", "JsonOpt", "LossOpt", "ModelOpt", "OverwriteOpt", "number", "whole_number"]


def whole_number(text: str) -> Any:
    """An integer option that may be written in scientific notation (``1e6``) or with
    underscores (``1_000``). Anything else is passed on as it is (``2.5``, ``abc``), so that
    the setting's own check says what is wrong in one line (and what a size beyond gradmedic's
    bounds would cost) instead of a usage error.

    >>> whole_number("1e12"), whole_number("20"), whole_number("2.5"), whole_number("x")
    (1000000000000, 20, 2.5, 'x')
    """
    s = str(text).strip().replace("_", "")
    try:
        return int(s)
    except ValueError:
        pass
    try:
        value = float(s)
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


def number(text: str) -> Any:
    """A real-valued option; text that is not a number is passed on as it is, so the setting's
    own check words the error in one line.

    >>> number("1e-3"), number("abc")
    (0.001, 'abc')
    """
    try:
        return float(str(text).strip().replace("_", ""))
    except ValueError:
        return text


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
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace the trace of an earlier run in --out (refused without it).",
    ),
]
