"""TensorBoard sink: the Monitor's scalars as TensorBoard scalars under ``gradmedic/``.

Writes through ``torch.utils.tensorboard.SummaryWriter`` (install with
``pip install 'gradmedic[tensorboard]'``); each recorded step's scalars
(:data:`gradmedic.trace.sinks.TAGS`) become ``gradmedic/<tag>`` at that step, the per-layer
backward signals ``gradmedic/signal_out/<module>`` with ``per_layer=True``. TensorBoard stores
32-bit floats: a value read back equals the trace's value rounded to float32.

Example::

    from gradmedic import Monitor
    from gradmedic.integrations.tensorboard import TensorBoardSink

    with Monitor(model, optimizer=opt, sinks=[TensorBoardSink("runs/exp1")]) as mon:
        ...  # training; then: tensorboard --logdir runs
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradmedic.integrations import PREFIX

__all__ = ["TensorBoardSink"]


def _summary_writer(log_dir: str | Path | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch raises this when the tensorboard package is missing
        raise ImportError(
            "TensorBoardSink needs the tensorboard package; install it with: "
            "pip install 'gradmedic[tensorboard]'"
        ) from exc
    return SummaryWriter(log_dir=None if log_dir is None else str(log_dir))


class TensorBoardSink:
    """A :class:`~gradmedic.trace.sinks.Sink` writing ``gradmedic/<tag>`` scalars.

    Args:
        log_dir: the event folder (``SummaryWriter``'s ``log_dir``; None: ``runs/<time>``).
        writer: an existing ``SummaryWriter`` to write to instead (then it is flushed, not
            closed, at the end).
        prefix: the tag group (default ``"gradmedic/"``).
        per_layer: also write ``signal_out/<module>`` for every hooked module.

    Raises:
        ImportError: the tensorboard package is not installed (the message says how).
    """

    def __init__(
        self,
        log_dir: str | Path | None = None,
        *,
        writer: Any = None,
        prefix: str = PREFIX,
        per_layer: bool = False,
    ) -> None:
        self._own = writer is None
        self.writer = _summary_writer(log_dir) if writer is None else writer
        self.prefix = prefix
        self.per_layer = per_layer

    @property
    def log_dir(self) -> str:
        """The folder the event file is written to."""
        return str(self.writer.log_dir)

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Add one scalar per tag at ``step``."""
        for tag, value in scalars.items():
            self.writer.add_scalar(self.prefix + tag, float(value), int(step))

    def close(self) -> None:
        """Flush the events to disk (and close the writer this sink opened)."""
        if self._own:
            self.writer.close()
        else:
            self.writer.flush()
