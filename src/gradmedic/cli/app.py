"""The ``gradmedic`` Typer application: every command registered, every error made one line.

Each command lives in its own module (:mod:`~gradmedic.cli.diagnose`,
:mod:`~gradmedic.cli.treat`, :mod:`~gradmedic.cli.lab`, :mod:`~gradmedic.cli.theory`,
:mod:`~gradmedic.cli.report`, :mod:`~gradmedic.cli.demo`) as a plain function over a
workflow; this module wraps each in :func:`friendly` and registers it. A
:class:`~gradmedic.errors.GradmedicError` (bad input) is printed as ``error: ...`` on one line
of stderr, without a traceback, and the command exits with the error's code (2); so is an
``OSError`` (a folder that is a file, no permission, disk full): about the ``--out`` /
``--output`` path when its file lies there, else about the file it names.

Example::

    >>> from typer.testing import CliRunner
    >>> res = CliRunner().invoke(app, ["theory", "tanhh"])
    >>> res.exit_code
    2
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
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


def _os_error(exc: OSError, options: Mapping[str, Any]) -> str:
    """One line for an OSError: blame the output option only when the file is under it."""
    name = exc.filename
    where = f" ({name})" if name else ""
    text = f"{exc.strerror or exc}{where}"
    for key, flag in (("out", "--out"), ("output", "--output")):
        target = options.get(key)
        if target is None:
            continue
        if name is None:
            return f"{text}; check the {flag} path {target} (or the disk) and try again"
        path, base = Path(str(name)).absolute(), Path(str(target)).absolute()
        if path == base or base in path.parents:
            return f"{text}; choose another {flag} path or fix it"
    return f"{text}; that file is not gradmedic's output: check the path and its permissions"


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command: print a GradmedicError or an OSError as one line on stderr and exit
    with status 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GradmedicError as exc:
            one_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a folder that is a file, no permission, disk full, ...
            one_line(_os_error(exc, kwargs))
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
