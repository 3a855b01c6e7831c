"""Non-finite values: the first module whose output or gradient went NaN/Inf, and a sentinel.

On a recorded step each hooked module's output is reduced to one float64 sum (NaN/Inf
propagate into it; a float32 or half sum would overflow on large finite outputs) and read with
everything else: the first module in forward order whose output is not finite is named
(``NONFINITE_FORWARD``), and the first in backward order whose input or output gradient is not
(``NONFINITE_BACKWARD``; the signal norms of :class:`SignalProbe`). A non-finite global
gradient norm alone gives ``NONFINITE_GRADIENT``. Every event also writes ``NONFINITE`` (1.0)
and appends ``{"step", "kind", "module", "detail"}`` to ``Monitor.events``.

Unrecorded steps keep one fused float32 norm over all gradients (and the observed losses) on the
device and remember the first step where it is NaN, without a host sync: the :meth:`sentinel`.
It is reported, with its exact step, at the next recorded step or at detach. Inf alone is left
to the recorded steps: a float32 sum of squares overflows for finite gradients above ~1e19,
which is an exploding gradient, not a NaN. After an event the sentinel rests until a recorded
step is finite again.

Raises:
    NonFiniteError: with ``halt=True``, at the step where a value went non-finite (recorded
        steps: after the step's rows are written; the sentinel then reads its check at once).

Example::

    >>> from gradmedic import Monitor
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> with Monitor(model, every=1) as mon:
    ...     (model(torch.ones(1, 2)) * float("nan")).sum().backward(); mon.step()
    >>> [(e["kind"], e["module"]) for e in mon.events]
    [('nonfinite_backward', '0')]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradmedic.errors import GradmedicError
from gradmedic.monitor.probes.base import Probe, foreach_norms
from gradmedic.monitor.probes.params import ParamsProbe
from gradmedic.monitor.probes.signal import SignalProbe
from gradmedic.trace import Quantity, Row

__all__ = ["NonFiniteError", "NonFiniteProbe"]

_FWD_DETAIL = "first module whose output is NaN/Inf"
_FWD_DETAIL_PARAMS = (
    "first module whose output is NaN/Inf; its parameters are already non-finite, "
    "so an earlier update (a NaN gradient or an exploding step) put them there"
)
_BWD_DETAIL = "first module whose input or output gradient is NaN/Inf in backward order"
_SENTINEL_DETAIL = (
    "a gradient was NaN/Inf on an unrecorded step; the module is named at the next "
    "recorded step (record every step to name it at once)"
)


class NonFiniteError(GradmedicError):
    """Raised at the end of a step when ``halt_on_nonfinite=True`` and a value was not finite."""


class NonFiniteProbe(Probe):
    """Names the first non-finite module of a recorded step; dates NaN on unrecorded steps.

    Args:
        model: the monitored model (to tell whether a module's parameters are already bad).
        events: the Monitor's event list, appended to.
        emit: writes rows to the trace (sentinel hits are written as they are read).
        params, signal: the probes whose global norm and backward norms are checked.
        enabled: watch at all; halt: raise :class:`NonFiniteError` at the bad step.
    """

    def __init__(
        self,
        model: nn.Module,
        events: list[dict[str, Any]],
        emit: Callable[[list[Row]], None],
        params: ParamsProbe,
        signal: SignalProbe,
        *,
        enabled: bool = True,
        halt: bool = False,
    ) -> None:
        self.model, self.events, self.emit = model, events, emit
        self.params, self.signal = params, signal
        self.enabled, self.halt = enabled, halt
        self._flags: list[tuple[str, torch.Tensor]] = []
        self._order: list[str] = []
        self._first_bad: torch.Tensor | None = None
        self._read_first_bad = False
        self._reported = False  # an event was reported; the sentinel rests until a finite record
        self._halting: tuple[int, str | None] | None = None

    def plan(self, step: int, recording: bool) -> bool:
        self.on = recording and self.enabled
        return self.on

    def forward(self, name: str, module: nn.Module, outs: list[torch.Tensor]) -> None:
        if outs:
            with torch.no_grad():
                probe = sum(t.detach().sum(dtype=torch.float64) for t in outs)
            self._flags.append((name, probe))

    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        out = []
        self._read_first_bad = self._first_bad is not None
        if self._read_first_bad:  # a hit from an unrecorded step, read in this transfer
            out.append(self._first_bad.double())
        if self._flags:
            out.append(torch.stack([f for _, f in self._flags]).float())
        self._order = [n for n, _ in self.signal.order]
        if self._order:
            out.append(torch.stack([s for _, s in self.signal.order]).float())
        return out

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        if self._read_first_bad:
            self.flush(values[0])
            values = values[1:]
        n_fwd = len(self._flags)
        fwd = _first_bad_name([n for n, _ in self._flags], values[:n_fwd])
        bwd = _first_bad_name(self._order, values[n_fwd:])
        found = False
        if fwd is not None:
            self._event(step, Quantity.NONFINITE_FORWARD, fwd, self._forward_detail(fwd))
            out.append((step, fwd, "", Quantity.NONFINITE_FORWARD.value, None, 1.0))
            found = True
        if bwd is not None:
            self._event(step, Quantity.NONFINITE_BACKWARD, bwd, _BWD_DETAIL)
            out.append((step, bwd, "", Quantity.NONFINITE_BACKWARD.value, None, 1.0))
            found = True
        if not math.isfinite(self.params.total_sq):
            found = True
            if fwd is None and bwd is None:
                self._event(step, Quantity.NONFINITE_GRADIENT, None, "a parameter gradient")
        self._reported = found
        if found:
            out.append((step, "", "", Quantity.NONFINITE.value, None, 1.0))
            if self.halt:
                self._halting = (step, fwd or bwd)

    def raise_if_halting(self) -> None:
        """Raise :class:`NonFiniteError` if the step just written was bad and ``halt`` is set."""
        if self._halting is not None:
            step, where = self._halting
            self._halting = None
            _halt(step, where)

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
            _halt(step, None)

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

    def reset(self) -> None:
        self._flags = []
        self._order = []
        self._read_first_bad = False

    def _event(self, step: int, kind: Quantity, module: str | None, detail: str) -> None:
        self.events.append({"step": step, "kind": kind.value, "module": module, "detail": detail})

    def _forward_detail(self, name: str) -> str:
        module = dict(self.model.named_modules()).get(name)
        params = list(module.parameters()) if module is not None else []
        if params and not all(bool(torch.isfinite(p).all()) for p in params):
            return _FWD_DETAIL_PARAMS
        return _FWD_DETAIL


def _first_bad_name(names: list[str], values: list[float]) -> str | None:
    return next((n for n, v in zip(names, values, strict=True) if not math.isfinite(v)), None)


def _halt(step: int, where: str | None) -> None:
    raise NonFiniteError(
        f"non-finite value at step {step} in {where or 'a parameter gradient'}; lower the "
        "learning rate, clip gradients or fix the module that produced it (see the trace)"
    )
