"""One root exception for everything a user can get wrong.

Every error that gradmedic raises on bad input derives from :class:`GradmedicError`, so
``except gradmedic.GradmedicError`` catches all of them and the CLI can print the message
on one line, without a traceback, and exit with status 2.

Messages follow one rule: say what is wrong, then what to do next.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "DataError",
    "GradmedicError",
    "ModelError",
    "TraceError",
    "UnknownNameError",
    "unknown_name",
]


class GradmedicError(Exception):
    """Root of every error gradmedic raises on bad input or misuse."""

    exit_code: int = 2


class ConfigError(GradmedicError):
    """An option or argument has an invalid value."""


class UnknownNameError(ConfigError, KeyError):
    """A name (activation, model, data set, loss, remedy, experiment) is not known."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ModelError(GradmedicError):
    """The model cannot be used as given (no parameters, wrong factory, unsupported layer)."""


class DataError(GradmedicError):
    """The data does not fit the model or the loss."""


class TraceError(GradmedicError):
    """A trace file is missing, unreadable or of an unsupported schema version."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UnknownNameError:
    """Build the error for an unknown ``name`` of a given ``kind``.

    The message lists the valid names and, when one is close, suggests it::

        >>> str(unknown_name("activation", "relu6x", ["relu", "relu6", "tanh"]))
        "unknown activation 'relu6x'; did you mean 'relu6'? Valid names: relu, relu6, tanh"
    """
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else "."
    return UnknownNameError(f"unknown {kind} '{name}'{hint} Valid names: {', '.join(valid)}")
