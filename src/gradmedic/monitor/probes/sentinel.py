"""The NaN sentinel of unrecorded steps (a mixin of the non-finite probe) and the halt error.

Unrecorded steps keep one norm over all gradients (float32 where the last record allows) and
the observed loss on the device, without a host sync (:meth:`Sentinel.sentinel`): the
every-step curves below. The first step where either is NaN is found when those curves are
read, at the next recorded step or at detach (:meth:`Sentinel.flush`), and reported with its
exact step. Inf alone is left to the recorded steps: a float32 sum of
squares overflows for finite gradients above ~1e19, which is an exploding gradient, not a NaN.
After an event the sentinel rests until a recorded step is finite again.

Every-step curves (:meth:`Sentinel.sentinel` on every unrecorded iteration, enabled or not):
the same fused norms give the global gradient norm, which is kept with the observed loss and
the AMP scale as one small float64 device vector per iteration (whether the GradScaler skipped
the step is known on the host). They are read in the next recorded step's one transfer
(:meth:`Sentinel.curve_read` / :meth:`Sentinel.curve_rows`) or at detach, and written as
``grad_norm_total``, ``loss``, ``amp_scale`` and ``step_skipped`` rows at their own steps: no
host sync of their own.

Raises:
    NonFiniteError: with ``halt=True``, at the step whose check is NaN (read at once).

Example::

    >>> from gradmedic import Monitor
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1))
    >>> with Monitor(model, every=100) as mon:
    ...     for i in range(3):  # step 0 is recorded; the loss is NaN from step 1 on
    ...         model(torch.ones(1, 2)).sum().backward(); mon.step(float("nan") if i else 1.0)
    >>> [(e["step"], e["kind"]) for e in mon.events]
    [(1, 'nonfinite_gradient')]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from gradmedic.errors import GradmedicError
from gradmedic.monitor.probes.base import global_norm
from gradmedic.monitor.probes.params import ParamsProbe
from gradmedic.trace import Quantity, Row

__all__ = ["NonFiniteError", "Sentinel", "halt"]

#: Curve entries kept as separate device tensors before they are concatenated into one.
_CURVE_CHUNK = 256

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
        self._reported = False  # an event was reported; the sentinel rests until a finite record
        #: per iteration a float vector [grad norm, loss, scale] (NaN where absent), in chunks
        self._curve: list[torch.Tensor] = []
        #: per entry: step, skipped, whether it has a gradient norm, a loss, a scale, and
        #: whether a NaN in it is an event (enabled, not resting, not skipped by the scaler)
        self._curve_steps: list[tuple[int, bool, bool, bool, bool, bool]] = []
        self._curve_read = 0  # how many entries of the curve the current recorded read holds
        self._nan: dict[Any, torch.Tensor] = {}  # a NaN placeholder per device
        #: writes the curve rows (the Monitor: to the trace only; sinks get recorded steps)
        self.emit_curve: Callable[[list[Row]], None] = self.emit

    def sentinel(
        self,
        step: int,
        losses: list[torch.Tensor],
        scale: torch.Tensor | None = None,
        skipped: bool = False,
    ) -> None:
        """Unrecorded step: one norm over every gradient, kept on the device with the mean of
        ``losses`` and the AMP ``scale`` for the every-step curves (one stack per step, no
        host sync); a NaN in the norm or the loss is found in those curves when they are read,
        which dates it exactly. A step the GradScaler ``skipped`` is not checked (its
        inf/NaN is the scaler's overflow probe)."""
        items = self.params.grads()
        gnorm = None
        if items:  # float32 where the last record was in range (no overflow above ~1e19)
            ok = self.params._g32_ok
            gnorm = global_norm([g for *_, g in items], [(m, n) not in ok for m, n, *_ in items])
        loss = None
        if losses:
            loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        parts = [p for p in (gnorm, loss, scale) if p is not None]
        if not parts:
            return
        dev = parts[0].device
        nan = self._nan.get(dev)
        if nan is None:
            nan = self._nan[dev] = torch.full((), math.nan, dtype=torch.float64, device=dev)
        vec = torch.stack([nan if p is None else p.reshape(()) for p in (gnorm, loss, scale)])
        self._curve.append(vec)
        check = self.enabled and not self._reported and not skipped
        check = check and (gnorm is not None or loss is not None)
        self._curve_steps.append(
            (step, skipped, gnorm is not None, loss is not None, scale is not None, check)
        )
        if len(self._curve) >= _CURVE_CHUNK:  # bounded number of tensors (never-recording runs)
            self._curve = [torch.cat([c.reshape(-1) for c in self._curve])]
        if self.halt and check:  # halting reads its check at once (a host sync)
            checked = torch.stack([p.double() for p in (gnorm, loss) if p is not None])
            if bool(torch.isnan(checked.sum())):
                self.flush()
                halt(step, None)

    def curve_read(self) -> list[torch.Tensor]:
        """The buffered curve as one flat device tensor, for the recorded step's transfer."""
        self._curve_read = len(self._curve_steps)
        if not self._curve_read:
            return []
        return [torch.cat([c.reshape(-1) for c in self._curve])]

    def curve_rows(self, values: list[float]) -> list[float]:
        """Write the curve rows from the head of ``values`` (as read by :meth:`curve_read`),
        and the event of the first checked iteration whose norm or loss is NaN; returns the
        rest."""
        n = self._curve_read
        if not n:
            return values
        rows: list[Row] = []
        first_bad = None
        for i, (step, skipped, has_norm, has_loss, has_amp, check) in enumerate(
            self._curve_steps[:n]
        ):
            gnorm, loss, scale = values[3 * i : 3 * i + 3]
            if has_norm:
                rows.append((step, "", "", Quantity.GRAD_NORM_TOTAL.value, None, gnorm))
            if has_loss:
                rows.append((step, "", "", Quantity.LOSS.value, None, loss))
            if has_amp:
                rows.append((step, "", "", Quantity.AMP_SCALE.value, None, scale))
                rows.append((step, "", "", Quantity.STEP_SKIPPED.value, None, float(skipped)))
            bad = (has_norm and math.isnan(gnorm)) or (has_loss and math.isnan(loss))
            if first_bad is None and check and bad:
                first_bad = step
        self._curve, self._curve_steps, self._curve_read = [], [], 0
        self.emit_curve(rows)
        if first_bad is not None and not self._reported:
            self._reported = True
            self._event(first_bad, Quantity.NONFINITE_GRADIENT, None, _SENTINEL_DETAIL)
            self.emit(
                [
                    (first_bad, "", "", Quantity.NONFINITE_GRADIENT.value, None, 1.0),
                    (first_bad, "", "", Quantity.NONFINITE.value, None, 1.0),
                ]
            )
        return values[3 * n :]

    def flush(self) -> None:
        """Detach (or halt): read what the curve holds and write its rows and its event (one
        host transfer, at the end)."""
        if self._curve_steps:
            (flat,) = self.curve_read()
            flat = getattr(flat, "_local_tensor", flat)  # FSDP2: a replicated DTensor
            self.curve_rows(flat.cpu().tolist())


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
