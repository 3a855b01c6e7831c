"""The backward signal at each module's output and input, and the module's gain.

Backpropagation multiplies per-layer factors (Glorot & Bengio 2010, eq. 6): the gradient that
reaches layer ``l``'s input is the one at its output times the layer's Jacobian,
``dL/dx_l = J_l^T dL/dy_l``. Recorded per hooked module (``Quantity`` members):

* ``SIGNAL_OUT`` ``||dL/dy_l||`` at the module's output (loss / activation);
* ``SIGNAL_IN`` ``||dL/dx_l||`` at its private input view: the vector-Jacobian product through
  the module alone, skip connections excluded (see ``Hooks.private_inputs``);
* ``GAIN`` ``signal_in / signal_out`` (NaN when the output signal is 0); over a chain of L
  layers the gains multiply to the end-to-end ratio (``0.9**20 = 0.1216``).

The gradient at an input that needs none (the model's data, at the first layer) is not part
of training and costs an extra product (``base.LEAF_INPUT_EVERY``): it is measured on the
first recorded step and then on every 10th, so the first layer's ``signal_in`` and ``gain``
rows come at that pace; every other signal row comes on every recorded step.

A module called several times in one step accumulates the squared norms of all calls. Under
AMP the signals are divided by the GradScaler's scale. The norms, in the order backward
produced them, are also what the non-finite probe scans (:attr:`SignalProbe.order`).

Example::

    >>> from gradmedic import Monitor
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    >>> with Monitor(model, every=1) as mon:
    ...     model(torch.ones(2, 3)).sum().backward(); mon.step()
    >>> sorted(mon.frame().query("quantity == 'gain'").module)
    ['0', '1']
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict

import torch
from torch import nn

from gradmedic.monitor.hooks import Hooks
from gradmedic.monitor.probes.base import (
    F32_SAFE,
    LeafPace,
    Probe,
    norm,
    scaled,
    segment_norms,
)
from gradmedic.trace import Quantity, Row

__all__ = ["SignalProbe"]

_OUT, _IN = Quantity.SIGNAL_OUT.value, Quantity.SIGNAL_IN.value


class SignalProbe(LeafPace, Probe):
    """``signal_out``, ``signal_in`` and ``gain`` of every hooked module (when ``enabled``)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._hooks: Hooks | None = None
        #: (module, norm) of every signal in the order backward produced it
        self.order: list[tuple[str, torch.Tensor]] = []
        self._out: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._in: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._f32_ok: set[tuple[str, str]] = set()
        self._labels: list[tuple[str, str]] = []
        #: modules measured through their functional layers instead (a user module holding
        #: bare parameters, see ``gradmedic.monitor.functional``): no signal rows of their own
        self.skip: set[str] = set()

    def bind(self, model: nn.Module, selected: list[tuple[str, nn.Module]], hooks: Hooks) -> None:
        self._hooks = hooks

    def plan(self, step: int, recording: bool) -> bool:
        self.on = recording and self.enabled
        self.pace(step, self.on)
        return self.on

    def wants_input(self, name: str) -> bool:
        return name not in self.skip

    def input_grad(self, name: str, module: nn.Module, index: int, g: torch.Tensor) -> None:
        nrm = norm(g, (name, _IN) not in self._f32_ok)
        self._in[name].append(nrm)
        self.order.append((name, nrm))

    def forward(self, name: str, module: nn.Module, outs: list[torch.Tensor]) -> None:
        if name in self.skip:
            return
        for t in outs:
            if t.requires_grad:
                self._hooks.tensor(t, functools.partial(self._on_out_grad, name))

    def _on_out_grad(self, name: str, g: torch.Tensor) -> None:
        nrm = norm(g, (name, _OUT) not in self._f32_ok)
        self._out[name].append(nrm)
        self.order.append((name, nrm))

    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        out, self._labels = [], []
        for qty, store in ((_OUT, self._out), (_IN, self._in)):
            names = [n for n in store if n not in self.skip]
            if names:
                norms = [t for n in names for t in store[n]]
                segments = [i for i, n in enumerate(names) for _ in store[n]]
                out.append(scaled(segment_norms(norms, segments), scale))
                self._labels += [(n, qty) for n in names]
        return out

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        lo, hi = F32_SAFE
        sig = dict(zip(self._labels, values, strict=True))
        for (module, qty), v in sig.items():
            out.append((step, module, "", qty, None, v))
        self._f32_ok = {k for k, v in sig.items() if lo < v < hi}
        for (name, qty), v_out in sig.items():
            if qty == _OUT and (name, _IN) in sig:
                gain = sig[(name, _IN)] / v_out if v_out > 0 else math.nan
                out.append((step, name, "", Quantity.GAIN.value, None, gain))

    def reset(self) -> None:
        self.order = []
        self._out = defaultdict(list)
        self._in = defaultdict(list)
        self._labels = []
