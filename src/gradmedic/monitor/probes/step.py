"""Facts of the step itself: the observed loss, forward calls per module, the AMP flag.

Recorded (``Quantity`` members): ``LOSS`` the mean of the losses passed to
``Monitor.observe`` in the step (loss); ``CALLS`` the number of forward calls of a hooked module
when it ran more than once (count; its signals then sum the squared norms of all calls);
``AMP_UNSCALED`` 1.0 when a GradScaler was active and signals were divided by its scale (flag);
with a GradScaler also ``AMP_SCALE`` (its scale at the step) and ``STEP_SKIPPED`` (1.0 when it
skipped ``optimizer.step()``, else 0.0). Unrecorded iterations get the same rows from the
sentinel's every-step curves (``probes.sentinel``). :func:`wrap_scaler_update` is how the
Monitor counts an iteration whose step the scaler skipped.

Example::

    >>> probe = StepProbe(); probe.plan(0, True)
    True
    >>> probe.observe(torch.tensor(2.0)); probe.observe(4.0)
    >>> out = []; probe.rows(0, [v.item() for v in probe.read(None)], out); out
    [(0, '', '', 'loss', None, 3.0)]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradmedic.monitor.probes.base import Probe
from gradmedic.trace import Quantity, Row

__all__ = ["StepProbe", "amp_scale", "wrap_scaler_update"]


class StepProbe(Probe):
    """Losses (observed on every step: the non-finite sentinel reads them too) and calls."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        #: the mean observed loss of the last recorded step (None when none was observed)
        self.loss_value: float | None = None
        self._calls: dict[str, int] = defaultdict(int)
        self._amp = False
        #: the GradScaler skipped this step's optimizer.step() (set by the Monitor)
        self.skipped = False

    def observe(self, loss: torch.Tensor | float) -> None:
        """Keep the loss of the current step on its device (no host sync)."""
        if isinstance(loss, torch.Tensor):  # 0-d, in its own dtype (stacking promotes)
            loss = loss.detach()
            self.losses.append(loss if loss.dim() == 0 else loss.reshape(-1)[0])
        else:
            self.losses.append(torch.tensor(float(loss), dtype=torch.float64))

    def forward(self, name: str, module: nn.Module, outs: list[torch.Tensor]) -> None:
        self._calls[name] += 1

    def needs_modules(self) -> bool:
        return False  # calls are counted when another probe measures modules

    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        self._amp = scale is not None
        out = [torch.stack(self.losses).mean().reshape(1)] if self.losses else []
        return [*out, scale.reshape(1)] if scale is not None else out

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        loss_values = values[:-1] if self._amp else values
        self.loss_value = loss_values[0] if loss_values else None
        if loss_values:
            out.append((step, "", "", Quantity.LOSS.value, None, loss_values[0]))
        for name, calls in self._calls.items():
            if calls > 1:
                out.append((step, name, "", Quantity.CALLS.value, None, float(calls)))
        if self._amp:
            out.append((step, "", "", Quantity.AMP_UNSCALED.value, None, 1.0))
            out.append((step, "", "", Quantity.AMP_SCALE.value, None, values[-1]))
            out.append((step, "", "", Quantity.STEP_SKIPPED.value, None, float(self.skipped)))

    def reset(self) -> None:
        self.losses = []
        self.loss_value = None
        self._calls = defaultdict(int)
        self._amp = False
        self.skipped = False


def wrap_scaler_update(scaler: Any, before: Callable[[], None]) -> Callable[[], None]:
    """Make ``scaler.update()`` call ``before()`` first (an instance attribute, so nothing of
    the class changes); returns the function that removes it. The Monitor ends there an
    iteration whose ``optimizer.step()`` the scaler skipped (inf/NaN found), which no
    optimizer hook sees."""
    original = scaler.update

    def update(*args: Any, **kwargs: Any) -> Any:
        before()
        return original(*args, **kwargs)

    scaler.update = update

    def undo() -> None:
        if scaler.__dict__.get("update") is update:
            del scaler.update

    return undo


def amp_scale(scaler: object | None) -> torch.Tensor | None:
    """The current loss scale of an enabled AMP ``GradScaler`` as a 0-d float32 device tensor
    (read without a host sync where the scaler allows), or None."""
    if scaler is None or not getattr(scaler, "is_enabled", lambda: True)():
        return None
    get = getattr(scaler, "_get_scale_async", None)
    s = get() if get is not None else torch.tensor(float(scaler.get_scale()))
    return None if s is None else s.detach().float().reshape(())
