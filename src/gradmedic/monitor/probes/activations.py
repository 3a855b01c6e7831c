"""Activation statistics: the local slope phi'(x), saturation, dead units and the output scale.

For every hooked activation module (``gradmedic.nn.activations`` knows its derivative), per
recorded step (``Quantity`` members, all dimensionless unless noted):

* ``DPHI_MEAN`` mean ``phi'(x)`` and ``DPHI_SQ_MEAN`` mean ``phi'(x)^2`` over the
  pre-activation ``x``: the factor the activation contributes to the backward gain (for the
  ReLU family, whose slope is 0 or 1, both equal the share of active entries);
* ``SATURATED_FRAC`` share of entries whose slope is below ``SATURATION_FRACTION`` (1%) of its
  maximum (the inactive side for the ReLU family);
* ``PREACT_MS`` mean square of the pre-activation, ``q`` (activation^2; Poole et al. 2016);
* ``DEAD_FRAC`` share of units whose output is zero on every sample of the batch; after a
  conv or batch-norm layer the units are channels, otherwise the last dimension;
* ``ACT_MEAN`` / ``ACT_STD`` mean and standard deviation of the output (activation).

Derivative statistics use at most ``STATS_MAX`` entries (the first samples of the batch); dead
units are judged on the whole batch. A module called several times averages its calls.

Example::

    >>> from gradmedic import Monitor
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sigmoid())
    >>> _ = torch.nn.init.zeros_(model[0].weight), torch.nn.init.zeros_(model[0].bias)
    >>> with Monitor(model, every=1) as mon:
    ...     model(torch.ones(2, 4)).sum().backward(); mon.step()
    >>> mon.frame().query("quantity == 'dphi_mean'").value.item()
    0.25
"""

from __future__ import annotations

import torch
from torch import nn

from gradmedic.monitor.hooks import Hooks
from gradmedic.monitor.probes.base import Probe, head
from gradmedic.monitor.schedule import Schedule
from gradmedic.nn.activations import (
    SATURATION_FRACTION,
    Derivative,
    derivative_for,
    is_activation,
)
from gradmedic.trace import Quantity, Row

__all__ = ["FIELDS", "ActivationProbe"]

#: the recorded statistics, in the order of each module's stacked vector
FIELDS = tuple(
    q.value
    for q in (
        Quantity.DPHI_MEAN,
        Quantity.DPHI_SQ_MEAN,
        Quantity.SATURATED_FRAC,
        Quantity.PREACT_MS,
        Quantity.DEAD_FRAC,
        Quantity.ACT_MEAN,
        Quantity.ACT_STD,
    )
)
#: activations whose output is never negative: a unit is dead when its maximum output is 0
_NONNEG = (nn.ReLU, nn.ReLU6, nn.Hardsigmoid, nn.Sigmoid)
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class ActivationProbe(Probe):
    """Slope and output statistics of the hooked activation modules, on ``schedule``'s steps."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._derivs: dict[str, Derivative | None] = {}
        self._nonneg: dict[str, bool] = {}
        self._channel_first: dict[str, bool] = {}
        self._pending: dict[str, list[torch.Tensor]] = {}
        self._stats: dict[str, list[torch.Tensor]] = {}
        self._names: list[str] = []

    def bind(self, model: nn.Module, selected: list[tuple[str, nn.Module]], hooks: Hooks) -> None:
        self._derivs = {n: derivative_for(m) for n, m in selected if is_activation(m)}
        self._nonneg = {n: isinstance(m, _NONNEG) for n, m in selected if is_activation(m)}
        self._channel_first = channel_first_activations(model)

    def add_functional(
        self, name: str, derivative: Derivative, nonnegative: bool, channel_first: bool
    ) -> None:
        """Measure a functional activation call (``torch.sigmoid(z)`` in ``forward``) under the
        pseudo-module ``name`` like an activation module."""
        self._derivs[name] = derivative
        self._nonneg[name] = nonnegative
        self._channel_first[name] = channel_first

    def plan(self, step: int, recording: bool) -> bool:
        self.on = recording and self.schedule(step)
        return self.on

    def pre_forward(self, name: str, module: nn.Module, args: tuple) -> None:
        d = self._derivs.get(name)
        if d is None or not args or not isinstance(args[0], torch.Tensor):
            return
        with torch.no_grad():
            xd = args[0].detach()
            xd = xd.float() if xd.dtype in _LOW_PRECISION else xd
            flat = head(xd)
            n = flat.numel()
            if d.active is not None:  # phi' in {0, 1}: mean phi' = share active, saturated = rest
                mean = d.count_active(flat) / n
                stats = [mean, mean, 1 - mean]
            else:
                dphi = d.fn(flat)
                thr = SATURATION_FRACTION * d.max_slope
                stats = [dphi.sum() / n, torch.dot(dphi, dphi) / n, (dphi.abs() < thr).sum() / n]
            stats.append(torch.dot(flat, flat) / n)
        self._pending.setdefault(name, []).append(torch.stack(stats))

    def forward(self, name: str, module: nn.Module, outs: list[torch.Tensor]) -> None:
        pending = self._pending.get(name)
        if not pending or not outs:
            return
        pre = pending.pop()
        with torch.no_grad():
            yd = outs[0].detach()
            yd = yd.float() if yd.dtype in _LOW_PRECISION else yd
            # a dead unit is zero for every sample (and, in a feature map, every position)
            mag = yd if self._nonneg.get(name) else yd.abs()
            if yd.dim() < 2:  # a batch of scalars: one unit
                peak = mag.amax(0, keepdim=True)
            elif self._channel_first.get(name) and yd.dim() > 2:
                peak = mag.amax(dim=[0, *range(2, yd.dim())])
            else:
                peak = mag.reshape(-1, yd.shape[-1]).amax(0)
            dead = (peak == 0).sum() / peak.numel()
            flat = head(yd)
            n = flat.numel()
            mean = flat.sum() / n
            var = (torch.dot(flat, flat) / n - mean * mean).clamp_min(0) * (n / max(n - 1, 1))
            post = torch.stack([dead, mean, var.sqrt()])
        self._stats.setdefault(name, []).append(torch.cat([pre.to(post.dtype), post]))

    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        self._names = list(self._stats)
        return [torch.stack(self._stats[n]).mean(dim=0) for n in self._names]

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        labels = [(n, q) for n in self._names for q in FIELDS]
        out.extend((step, n, "", q, None, v) for (n, q), v in zip(labels, values, strict=True))

    def reset(self) -> None:
        self._pending = {}
        self._stats = {}
        self._names = []


def channel_first_activations(model: nn.Module) -> dict[str, bool]:
    """Activations that follow a conv or batch-norm layer see (N, C, ...) feature maps, whose
    units are channels; others see (..., features). Decided from the module order."""
    channel_first = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)
    feature_last = (nn.Linear, nn.LayerNorm, nn.RNNBase, nn.Embedding)
    out: dict[str, bool] = {}
    after_conv = False
    for name, m in model.named_modules():
        if isinstance(m, channel_first + feature_last):
            after_conv = isinstance(m, channel_first)
        elif is_activation(m):
            out[name] = after_conv
    return out
