"""Per-parameter gradient norms, parameter norms and update ratios.

Recorded quantities (``Quantity`` members; module ``m``, parameter ``p``):

* ``GRAD_NORM`` ``||dL/dW||`` per parameter (loss / weight), and per module the root of the
  summed squares over its own parameters (``parameter == ""``);
* ``GRAD_NORM_TOTAL`` the global norm over every parameter (one row, module ``""``);
* ``PARAM_NORM`` ``||W||`` (with ``weights=True``);
* ``UPDATE_RATIO`` ``||W_after - W_before|| / ||W_before||`` of the optimizer step (with
  ``weights=True`` and an optimizer): the parameters are copied into reused buffers in the
  optimizer's step pre-hook and the difference is taken at the step's end. A parameter of
  more than ``UPDATE_SAMPLE`` (32,768) entries is measured on that many entries, in blocks
  spread evenly over it (``base.spread_sample``): the copy and the difference are what made
  a recorded step of a wide MLP expensive (benchmarks/RESULTS.md), and a ratio over 32,768
  entries is within about 1% of the whole for a dense update. A DTensor (FSDP2) is measured
  whole, so every rank records the global ratio.

A parameter used by a functional layer (``x @ W.T`` in ``forward``) has its rows repeated
under the pseudo-module's name as parameter ``weight`` (:attr:`ParamsProbe.aliases`), so the
layer table finds its gradient and update ratio like a Linear's; totals count it once.

Tied parameters are counted once, under their first owner; parameters without ``.grad``
(frozen, unused) are skipped. Norms are fused (``torch._foreach_norm``) per device and dtype
and accumulated in float64, except for large tensors whose last record was far from float32's
underflow (``F32_SAFE``). Source: the update ratio as a learning-rate check follows Karpathy's
"ratio of updates to weights" heuristic (about 1e-3 is healthy).

Example::

    >>> lin = torch.nn.Linear(3, 2)
    >>> probe = ParamsProbe(weights=False)
    >>> probe.bind(lin, [], None); probe.plan(0, True)
    True
    >>> lin(torch.ones(1, 3)).sum().backward()
    >>> out = []; probe.rows(0, [t.item() for t in probe.read(None)[0]], out)
    >>> [r[3] for r in out]
    ['grad_norm', 'grad_norm', 'grad_norm', 'grad_norm_total']
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import nn

from gradmedic.errors import ModelError
from gradmedic.monitor.hooks import Hooks
from gradmedic.monitor.probes.base import F32_SAFE, Probe, foreach_norms, spread_sample
from gradmedic.trace import Quantity, Row

__all__ = ["ParamsProbe"]

_GRAD, _PARAM, _UPDATE = (
    Quantity.GRAD_NORM.value,
    Quantity.PARAM_NORM.value,
    Quantity.UPDATE_RATIO.value,
)


class ParamsProbe(Probe):
    """Gradient norms of every parameter; parameter norms and update ratios if ``weights``.

    Raises:
        ModelError: at :meth:`bind` when the model has no parameters.
    """

    def __init__(self, weights: bool = True) -> None:
        self.weights = weights
        #: (module name, parameter name, parameter), each parameter once, in model order
        self.names: list[tuple[str, str, nn.Parameter]] = []
        #: squared global gradient norm of the last recorded step
        self.total_sq = 0.0
        #: every gradient norm of the last recorded step was finite (a norm of 1e200 is
        #: finite although its square is not)
        self.finite = True
        #: functional pseudo-modules that use a parameter (``id(p)``): its rows are repeated
        #: under their names, as parameter ``weight`` (``gradmedic.monitor.functional``)
        self.aliases: dict[int, list[str]] = {}
        self._g32_ok: set[tuple[str, str]] = set()
        self._snap_bufs: list[torch.Tensor] = []
        self._snap_ids: list[int] = []
        self._snap_params: list[nn.Parameter] = []
        self._snapshot: list[torch.Tensor] | None = None
        self._labels: list[tuple[str, str, str]] = []

    def bind(self, model: nn.Module, selected: list[tuple[str, nn.Module]], hooks: Hooks) -> None:
        seen: set[int] = set()
        self.names = []
        self.aliases = {}  # found again by the functional recorder of this attachment
        for mname, module in model.named_modules():
            for pname, p in module.named_parameters(recurse=False):
                if id(p) in seen:  # tied weights: counted once, under the first owner
                    continue
                seen.add(id(p))
                self.names.append((mname, pname, p))
        if not self.names:
            raise ModelError(
                f"{type(model).__name__} has no parameters; the Monitor measures gradients "
                "of trainable parameters, so give it a model that has some"
            )

    def grads(self) -> list[tuple[str, str, nn.Parameter, torch.Tensor]]:
        """(module, parameter name, parameter, gradient) of every parameter with a gradient."""
        return [(m, n, p, p.grad) for m, n, p in self.names if p.grad is not None]

    def before_optimizer_step(self) -> None:
        """Copy the parameters about to be updated (reusing buffers: no allocation)."""
        if not (self.weights and self.on):
            return
        params = [p for _, _, p in self.names if p.grad is not None]
        with torch.no_grad():
            samples = [_sample(p) for p in params]
            if [id(p) for p in params] != self._snap_ids or any(
                b.shape != s.shape for b, s in zip(self._snap_bufs, samples, strict=True)
            ):
                self._snap_bufs = [s.clone() for s in samples]
                self._snap_ids = [id(p) for p in params]
            else:
                # local shards of DTensors (FSDP2): no sharding rule for _foreach_copy_
                torch._foreach_copy_(
                    [_local(b) for b in self._snap_bufs], [_local(t) for t in samples]
                )
        self._snap_params = params
        self._snapshot = self._snap_bufs

    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        items = self.grads()
        self._labels = []
        if not items:
            return []
        out = []
        # float64 where the last record was tiny (or on the first record): see base.norm
        wide = [(m, n) not in self._g32_ok for m, n, _, _ in items]
        out.append(torch.stack(foreach_norms([g for *_, g in items], wide)))
        self._labels += [(m, n, _GRAD) for m, n, _, _ in items]
        if self.weights:
            params = [p.detach() for _, _, p, _ in items]
            out.append(torch.stack(foreach_norms(params, [False] * len(params))))
            self._labels += [(m, n, _PARAM) for m, n, _, _ in items]
        if self._snapshot is not None:
            owner = {id(p): (m, n) for m, n, p in self.names}
            keys = [owner[id(p)] for p in self._snap_params]
            with torch.no_grad():
                before = torch.stack(foreach_norms(self._snapshot, [False] * len(keys)))
                torch._foreach_sub_(self._snapshot, [_sample(p) for p in self._snap_params])
                wide = [k not in self._g32_ok for k in keys]
                delta = torch.stack(foreach_norms(self._snapshot, wide))
            out.append(delta / before.clamp_min(1e-30))
            self._labels += [(*k, _UPDATE) for k in keys]
        return out

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        lo, hi = F32_SAFE
        mod_sq: dict[str, float] = defaultdict(float)
        g32_ok = set()
        for (module, param, qty), v in zip(self._labels, values, strict=True):
            out.append((step, module, param, qty, None, v))
            if qty == _GRAD:
                mod_sq[module] += v * v
                if lo < v < hi:
                    g32_ok.add((module, param))
        self._g32_ok = g32_ok
        for module, sq in mod_sq.items():
            out.append((step, module, "", _GRAD, None, math.sqrt(sq)))
        self.total_sq = sum(mod_sq.values())
        out.append((step, "", "", Quantity.GRAD_NORM_TOTAL.value, None, math.sqrt(self.total_sq)))
        self.finite = all(
            math.isfinite(v) for (*_, q), v in zip(self._labels, values, strict=True) if q == _GRAD
        )
        if self.aliases:  # after the totals, which count each parameter once
            ids = {(m, n): id(p) for m, n, p in self.names}
            for (module, param, qty), v in zip(self._labels, values, strict=True):
                for alias in self.aliases.get(ids[(module, param)], ()):
                    out.append((step, alias, "weight", qty, None, v))

    def reset(self) -> None:
        self._snapshot = None
        self._labels = []


def _sample(p: nn.Parameter) -> torch.Tensor:
    """The entries of ``p`` its update ratio is measured on (a view; a DTensor whole)."""
    return p.detach() if hasattr(p, "_local_tensor") else spread_sample(p.detach())


def _local(t: torch.Tensor) -> torch.Tensor:
    return getattr(t, "_local_tensor", t)
