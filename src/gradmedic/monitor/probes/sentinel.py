"""The NaN sentinel of unrecorded steps (a mixin of the non-finite probe) and the halt error.

Unrecorded steps keep one fused float32 norm over all gradients (and the observed losses) on
the device and remember the first step where it is NaN, without a host sync
(:meth:`Sentinel.sentinel`). It is reported, with its exact step, at the next recorded step or
at detach (:meth:`Sentinel.flush`). Inf alone is left to the recorded steps: a float32 sum of
squares overflows for finite gradients above ~1e19, which is an exploding gradient, not a NaN.
After an event the sentinel rests until a recorded step is finite again.

Raises:
    NonFiniteError: with ``halt=True``, at the step whose check is NaN (read at once).

Example::

    >>> from gradmedic import Monitor
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1))
    >>> with Monitor(model, every=100) as mon:
    ...     for _ in range(3):
    ...         model(torch.ones(1, 2)).sum().backward(); mon.step(float("nan"))
    >>> [(e["step"], e["kind"]) for e in mon.events]
    [(0, 'nonfinite_gradient')]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gradmedic.errors import GradmedicError
from gradmedic.monitor.probes.base import foreach_norms
from gradmedic.monitor.probes.params import ParamsProbe
from gradmedic.trace import Quantity, Row

__all__ = ["NonFiniteError", "Sentinel", "halt"]

_SENTINEL_DETAIL = (
    "a gradient was NaN/Inf on an unrecorded step; the module is named at the next "
    "recorded step (record every step to name it at once)"
)


class NonFiniteError(GradmedicError):
    """Raised at the end of a step when ``halt_on_nonfinite=True`` and a value was not finite."""


class Sentinel:
    """Mixin: dates NaN on unrecorded steps. Needs ``enabled``, ``halt``, ``params``,
    ``emit``, ``_event`` and the state set by :meth:`init_sentinel`."""

    enabled: bool
    halt: bool
    params: ParamsProbe
    emit: Callable[[list[Row]], None]
    _event: Callable[..., None]

    def init_sentinel(self) -> None:
        self._first_bad: torch.Tensor | None = None
        self._read_first_bad = False
        self._reported = False  # an event was reported; the sentinel rests until a finite record

    def sentinel(self, step: int, losses: list[torch.Tensor]) -> None:
        """Unrecorded step: one fused float32 norm over every gradient (and ``losses``), kept
        on the device; the first step whose result is NaN is remembered without a host sync."""
        if not self.enabled or self._reported:  # already reported; re-armed by a finite record
            return
        grads = [g for *_, g in self.params.grads()]
        probes = [torch.stack(foreach_norms(grads, [False] * len(grads))).sum()] if grads else []
        probes += [loss.double().reshape(()) for loss in losses]
        if not probes:
            return
        total = probes[0] if len(probes) == 1 else torch.stack(probes).sum()
        bad = torch.isnan(total)
        mark = torch.tensor(step, device=total.device)
        if self._first_bad is None or self._first_bad.device != total.device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=total.device)
        self._first_bad = torch.where(bad & (self._first_bad < 0), mark, self._first_bad)
        if self.halt and bool(bad):
            self.flush()
            halt(step, None)

    def flush(self, value: float | None = None) -> None:
        """Turn a pending sentinel hit into an event and rows (``value``: the hit, if read)."""
        if self._first_bad is None:
            return
        first = int(self._first_bad) if value is None else int(value)
        self._first_bad = None
        if first >= 0:
            self._reported = True
            self._event(first, Quantity.NONFINITE_GRADIENT, None, _SENTINEL_DETAIL)
            self.emit(
                [
                    (first, "", "", Quantity.NONFINITE_GRADIENT.value, None, 1.0),
                    (first, "", "", Quantity.NONFINITE.value, None, 1.0),
                ]
            )


def halt(step: int, where: str | None) -> Any:
    """Raise :class:`NonFiniteError` for ``step``; ``where``: the module, ``"the loss"`` or
    None (a parameter gradient)."""
    if where == "the loss":
        raise NonFiniteError(
            f"non-finite value at step {step} in the loss while the model's output was "
            "finite; fix the loss (an epsilon or a clamp before log/sqrt/division, or a fused "
            "loss such as log_input=True), not the learning rate"
        )
    raise NonFiniteError(
        f"non-finite value at step {step} in {where or 'a parameter gradient'}; lower the "
        "learning rate, clip gradients or fix the module that produced it (see the trace)"
    )
