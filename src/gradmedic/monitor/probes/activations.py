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

Derivative and output statistics use the leading ``STATS_MAX`` (16,384) entries (whole
samples); dead units are judged on the whole batch. A module called several times averages
its calls.

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

from collections import defaultdict
from typing import Any

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
    params_of,
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
    """Slope and output statistics of the hooked activation modules, on ``schedule``'s steps.

    The hooks only keep what a statistic needs: the pre-activation's leading ``STATS_MAX``
    entries and the output's (copies, so a later in-place op cannot change them) and the
    per-unit peak of the output over the whole batch (dead units). The statistics are
    computed at the step's end, a few batched reductions for all calls of activation modules
    of one kind and sample size together: a 20-layer MLP's activation statistics went from
    about 40 tensor operations per layer to about 5 (benchmarks/RESULTS.md).
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._derivs: dict[str, Derivative | None] = {}
        self._nonneg: dict[str, bool] = {}
        self._channel_first: dict[str, bool] = {}
        self._pending: dict[str, list[torch.Tensor]] = {}
        #: per call: (module name, pre-activation sample, output sample, per-unit peak)
        self._calls: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._names: list[str] = []

    def bind(self, model: nn.Module, selected: list[tuple[str, nn.Module]], hooks: Hooks) -> None:
        shared: dict[Any, Derivative | None] = {}
        self._derivs = {}
        for n, m in selected:
            if is_activation(m):
                d = derivative_for(m)
                key = _share_key(m)  # one object per kind and parameters: batched together
                self._derivs[n] = d if key is None else shared.setdefault(key, d)
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
            self._pending.setdefault(name, []).append(_sample(args[0]))

    def forward(self, name: str, module: nn.Module, outs: list[torch.Tensor]) -> None:
        pending = self._pending.get(name)
        if not pending or not outs:
            return
        x = pending.pop()
        with torch.no_grad():
            yd = outs[0].detach()
            # a dead unit is zero for every sample (and, in a feature map, every position)
            if yd.dim() < 2:  # a batch of scalars: one unit
                y2, dims = yd.reshape(-1, 1), [0]
            elif self._channel_first.get(name) and yd.dim() > 2:
                y2, dims = yd, [0, *range(2, yd.dim())]
            else:
                y2, dims = yd.reshape(-1, yd.shape[-1]), [0]
            peak = y2.amax(dim=dims)
            if not self._nonneg.get(name):  # max |y| without an |y| copy of the batch
                peak = torch.maximum(peak, y2.amin(dim=dims).neg_())
            self._calls.append((name, x, _sample(yd), peak))

    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        calls = self._calls
        self._names = list(dict.fromkeys(c[0] for c in calls))
        if not calls:
            return []
        with torch.no_grad():
            groups: dict[Any, list[int]] = defaultdict(list)
            for i, (name, x, y, _) in enumerate(calls):
                d = self._derivs[name]
                groups[(id(d), x.shape, x.dtype, x.device, y.shape, y.dtype)].append(i)
            order = [i for idxs in groups.values() for i in idxs]
            per_call = torch.cat([self._group_stats(calls, idxs) for idxs in groups.values()])
            peaks = [calls[i][3] for i in order]
            dev = per_call.device
            flat = torch.cat([p.reshape(-1) for p in peaks]).to(dev)
            sizes = [p.numel() for p in peaks]
            seg = torch.repeat_interleave(  # output_size: no host sync
                torch.arange(len(peaks), device=dev),
                torch.tensor(sizes, device=dev),
                output_size=sum(sizes),
            )
            units = torch.tensor([max(p.numel(), 1) for p in peaks], device=dev)
            zeros = (flat == 0).to(per_call.dtype)
            dead = per_call.new_zeros(len(peaks)).index_add_(0, seg, zeros) / units
            # per call: 4 pre-activation statistics, dead, 2 output statistics (FIELDS order)
            stats = torch.cat([per_call[:, :4], dead[:, None], per_call[:, 4:]], dim=1)
            module_of = {n: j for j, n in enumerate(self._names)}
            mods = torch.tensor([module_of[calls[i][0]] for i in order], device=dev)
            if len(self._names) == len(calls):  # every module called once: reorder
                out = stats.new_empty(stats.shape).index_copy_(0, mods, stats)
            else:  # a module called several times averages its calls
                counts = torch.bincount(mods, minlength=len(self._names)).to(stats.dtype)
                out = stats.new_zeros(len(self._names), len(FIELDS)).index_add_(0, mods, stats)
                out = out / counts[:, None]
        return list(out.unbind(0))

    def _group_stats(
        self, calls: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]], idxs: list[int]
    ) -> torch.Tensor:
        """(calls, 6) statistics of calls of one derivative and sample shape: the mean
        slope, its mean square, the saturated share, the pre-activation's mean square, the
        output's mean and standard deviation."""
        d = self._derivs[calls[idxs[0]][0]]
        x = torch.stack([calls[i][1].reshape(-1) for i in idxs])  # (calls, entries)
        y = torch.stack([calls[i][2].reshape(-1) for i in idxs])
        m, n = x.shape
        if d.active is not None:  # phi' in {0, 1}: mean phi' = share active, saturated = rest
            if d.name == "relu":  # clamp + sign + sum: 2-3x cheaper than summing a bool mask
                active = x.clamp(min=0).sign_().sum(1) / n
            else:
                active = d.active(x).sum(1).to(x.dtype) / n
            pre = [active, active, 1 - active]
        else:
            dphi = d.fn(x.reshape(-1)).view(m, n)
            thr = SATURATION_FRACTION * d.max_slope
            sat = (dphi.abs() < thr).sum(1).to(x.dtype) / n
            pre = [dphi.sum(1) / n, torch.linalg.vecdot(dphi, dphi) / n, sat]
        pre.append(torch.linalg.vecdot(x, x) / n)
        k = y.shape[1]
        mean = y.sum(1) / k  # var_mean along a row measured 20x slower on the CPU
        var = (torch.linalg.vecdot(y, y) / k - mean * mean).clamp_min(0) * (k / max(k - 1, 1))
        return torch.stack([*pre, mean.to(x.dtype), var.sqrt().to(x.dtype)], dim=1)

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        labels = [(n, q) for n in self._names for q in FIELDS]
        out.extend((step, n, "", q, None, v) for (n, q), v in zip(labels, values, strict=True))

    def reset(self) -> None:
        self._pending = {}
        self._calls = []
        self._names = []


def _sample(t: torch.Tensor) -> torch.Tensor:
    """The leading ``STATS_MAX`` entries of ``t`` (whole samples) as a copy: float32 for a
    half-precision tensor, else in its dtype."""
    h = head(t.detach())
    return h.float() if h.dtype in _LOW_PRECISION else h.clone()


def _share_key(module: nn.Module) -> Any:
    """Modules of one type and the same constructor parameters share one derivative (their
    statistics are computed together); None for a module whose slope has parameters of its
    own (``nn.PReLU``) or unhashable ones."""
    if any(True for _ in module.parameters()):
        return None
    key = (type(module), tuple(sorted(params_of(module).items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


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
