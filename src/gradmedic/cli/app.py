"""The ``gradmedic`` Typer application: every command registered, every error made one line.

Each command lives in its own module (:mod:`~gradmedic.cli.diagnose`,
:mod:`~gradmedic.cli.treat`, :mod:`~gradmedic.cli.lab`, :mod:`~gradmedic.cli.theory`,
:mod:`~gradmedic.cli.report`, :mod:`~gradmedic.cli.demo`) as a plain function over a
workflow; this module wraps each in :func:`friendly` and registers it. A
:class:`~gradmedic.errors.GradmedicError` (bad input) is printed as ``error: ...`` on one line
of stderr, without a traceback, and the command exits with the error's code (2); so is an
``OSError`` from writing the output (a folder that is a file, no permission, disk full).

Example::

    >>> from typer.testing import CliRunner
    >>> res = CliRunner().invoke(app, ["theory", "tanhh"])
    >>> res.exit_code
    2
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from gradmedic.cli import demo, diagnose, lab, report, theory, treat
from gradmedic.cli.output import one_line
from gradmedic.errors import GradmedicError

__all__ = ["app", "friendly", "lab_app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Diagnose and cure vanishing and exploding gradients in PyTorch models.",
    pretty_exceptions_enable=False,
)
lab_app = typer.Typer(no_args_is_help=True, help="Experiments for every claim of the article.")
app.add_typer(lab_app, name="lab")


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command: print a GradmedicError (or an OSError from writing the output) as one
    line on stderr and exit with its code (2), no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GradmedicError as exc:
            one_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a folder that is a file, no permission, disk full, ...
            where = f" ({exc.filename})" if exc.filename else ""
            one_line(f"{exc.strerror or exc}{where}; choose another --out path or fix it")
            raise typer.Exit(2) from None

    return wrapper


app.command()(friendly(diagnose.diagnose))
app.command()(friendly(theory.theory))
app.command()(friendly(report.report))
app.command()(friendly(treat.treat))
lab_app.command("list")(friendly(lab.lab_list))
lab_app.command("run")(friendly(lab.lab_run))
app.command()(friendly(demo.demo))


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``gradmedic``, ``python -m gradmedic``): run the app on ``argv``
    (default: the process's arguments) under the program name ``gradmedic``."""
    app(args=argv, prog_name="gradmedic")
