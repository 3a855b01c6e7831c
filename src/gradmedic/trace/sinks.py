"""Sinks: stream a few scalars of every recorded step elsewhere (TensorBoard, MLflow, a log).

A sink is any object with ``write(step, scalars)`` and ``close()`` (:class:`Sink`); pass a list
of them to ``Monitor(..., sinks=[...])``. After each recorded step the Monitor calls ``write``
with the step's scalars, and ``close`` once at detach. The trace stays the full record; a sink
gets this compact dict (the tags, :data:`TAGS`):

* ``grad_norm_total``: the global gradient norm of the step (loss / weight);
* ``loss``: the mean observed loss (``Monitor.observe`` or ``step(loss)``), when one was;
* ``nonfinite``: the number of non-finite events dated to the step (0.0 when none), the count
  of its ``nonfinite_forward`` / ``nonfinite_backward`` / ``nonfinite_gradient`` rows. A NaN
  caught by the sentinel on an unrecorded step is written, when it is read, as its own call
  ``write(that_step, {"nonfinite": 1.0})``.

Values are Python floats equal to the trace's. A sink that raises never stops training: the
error is caught, reported once per sink as a ``RuntimeWarning``, and the sink keeps being
called.

Example::

    >>> class Printer:
    ...     def write(self, step, scalars):
    ...         print(step, sorted(scalars))
    ...     def close(self):
    ...         print("closed")
    >>> sinks = Sinks([Printer()])
    >>> sinks.write_rows([(0, "", "", "grad_norm_total", None, 1.5)])
    0 ['grad_norm_total', 'nonfinite']
    >>> sinks.close()
    closed

A TensorBoard sink is three lines::

    class TensorBoardSink:
        def __init__(self, writer): self.writer = writer  # torch.utils.tensorboard.SummaryWriter
        def write(self, step, scalars):
            for tag, v in scalars.items(): self.writer.add_scalar(f"gradmedic/{tag}", v, step)
        def close(self): self.writer.flush()
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from gradmedic.errors import ConfigError
from gradmedic.trace.schema import Quantity, Row

__all__ = ["TAGS", "Sink", "Sinks", "step_scalars"]

#: the scalar names a sink receives
TAGS = ("grad_norm_total", "loss", "nonfinite")

_EVENTS = frozenset(
    q.value
    for q in (Quantity.NONFINITE_FORWARD, Quantity.NONFINITE_BACKWARD, Quantity.NONFINITE_GRADIENT)
)
_PLAIN = {Quantity.GRAD_NORM_TOTAL.value: "grad_norm_total", Quantity.LOSS.value: "loss"}


@runtime_checkable
class Sink(Protocol):
    """Receives the scalars of each recorded step (see the module docstring for the tags)."""

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Called once per recorded step, in step order, after the step's rows are written."""

    def close(self) -> None:
        """Called once when the Monitor detaches."""


def step_scalars(rows: Iterable[Row]) -> dict[int, dict[str, float]]:
    """The sink scalars of each step that ``rows`` hold, in order of first appearance.

    >>> step_scalars([(3, "", "", "loss", None, 0.5), (3, "a", "", "nonfinite_forward", None, 1.0)])
    {3: {'nonfinite': 1.0, 'loss': 0.5}}
    """
    out: dict[int, dict[str, float]] = {}
    for step, module, parameter, quantity, _idx, value in rows:
        scalars = out.setdefault(step, {"nonfinite": 0.0})
        tag = _PLAIN.get(quantity)
        if tag is not None and not module and not parameter:
            scalars[tag] = float(value)
        elif quantity in _EVENTS:
            scalars["nonfinite"] += 1.0
    return out


class Sinks:
    """A list of sinks, each shielded: an exception is caught and warned about once per sink.

    Args:
        sinks: objects following :class:`Sink`.

    Raises:
        ConfigError: when an element lacks a callable ``write`` or ``close``.
    """

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self.sinks = list(sinks)
        for s in self.sinks:
            if not (callable(getattr(s, "write", None)) and callable(getattr(s, "close", None))):
                raise ConfigError(
                    f"sinks= takes objects with write(step, scalars) and close() methods "
                    f"(gradmedic.trace.sinks.Sink); got {type(s).__name__}"
                )
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.sinks)

    def write_rows(self, rows: Iterable[Row]) -> None:
        """Pass each sink the scalars of every step in ``rows``."""
        if not self.sinks:
            return
        for step, scalars in step_scalars(rows).items():
            for sink in self.sinks:
                self._call(sink, "write", step, scalars)

    def close(self) -> None:
        """Close every sink (each once; errors are warned about, not raised)."""
        for sink in self.sinks:
            self._call(sink, "close")

    def _call(self, sink: Sink, method: str, *args: object) -> None:
        try:
            getattr(sink, method)(*args)
        except Exception as exc:
            if id(sink) not in self._warned:
                self._warned.add(id(sink))
                warnings.warn(
                    f"gradmedic sink {type(sink).__name__}.{method} raised {exc!r}; training "
                    "goes on and further errors of this sink are not reported",
                    RuntimeWarning,
                    stacklevel=4,
                )
