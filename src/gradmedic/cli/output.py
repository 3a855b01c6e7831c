"""What the commands write: the two consoles, one JSON object, one-line errors, a progress bar.

stdout carries the result (a table, or with ``--json`` exactly one JSON object and nothing
else); stderr carries errors, progress and notes. ``--json`` output goes through
:func:`gradmedic._json.dumps`, so it is strict JSON (NaN and infinities as strings).

Example::

    >>> print_json({"gain": float("inf")})  # doctest: +NORMALIZE_WHITESPACE
    {
      "gain": "inf"
    }
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from gradmedic._json import dumps

__all__ = [
    "FAIL_EXIT",
    "err_console",
    "one_line",
    "out_console",
    "print_json",
    "progress_bar",
    "say",
    "say_notes",
]

#: Exit status of a run whose result fails a check (``--fail-on``, a lab claim that failed).
FAIL_EXIT = 1

out_console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """One strict-JSON object on stdout (NaN/inf as "nan"/"inf"/"-inf": see gradmedic._json)."""
    sys.stdout.write(dumps(obj, indent=2) + "\n")


def one_line(message: str) -> None:
    """``error: message`` on stderr; the message is printed literally (no rich markup)."""
    from rich.text import Text

    err_console.print(Text("error: ", style="red") + Text(message), soft_wrap=True)


def say(message: str) -> None:
    """A progress note on stderr (rich markup allowed)."""
    err_console.print(message)


def say_notes(notes: list[str]) -> None:
    """Each note (what gradmedic changed to make the data fit) as ``note: ...`` on stderr,
    printed literally."""
    from rich.text import Text

    for note in notes:
        err_console.print(Text("note: ", style="yellow") + Text(note), soft_wrap=True)


@contextmanager
def progress_bar(enabled: bool, total: int, label: str) -> Iterator[Callable[[int, float], None]]:
    """A transient progress bar on stderr over ``total`` steps; yields ``update(step, loss)``.

    With ``enabled`` False the bar is not shown and ``update`` does nothing visible.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )
    task = progress.add_task(label, total=total, loss="-")

    def update(step: int, loss: float) -> None:
        progress.update(task, completed=step + 1, loss=f"{loss:.4g}")

    with progress:
        yield update
