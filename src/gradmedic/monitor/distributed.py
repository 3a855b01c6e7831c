"""The Monitor under ``torch.distributed`` (DDP, FSDP2 ``fully_shard``): global-batch numbers
with one collective per recorded step.

When a process group of more than one rank is initialised at attach, :class:`DistSync` packs
every device value of a recorded step (what the probes' ``read`` returned) into one float64
buffer, gathers it from every rank with one ``all_gather_single``, reduces on the device and
hands the reduced tensors to the one host transfer. Every rank then writes the same rows;
rank 0 alone writes the trace and the sinks. ``W`` is the world size, ``r`` a rank, ``n_r``
the entries an activation's statistics used on r, ``w_r`` the entries of the model's output:

* gradient and parameter norms (``ParamsProbe``): under DDP the gradients are averaged
  already, so every rank holds the global value ``v`` and the mean over ranks is ``v``; a
  DTensor norm (FSDP2 shard, ``_NormPartial``) is ``sqrt(sum_{r in shard group} v_r^2)`` over
  the ranks of its partial mesh dimensions only (never a replicate group), in float64; a
  ``Partial(sum)`` DTensor is summed over that group. Tied parameters are one parameter.
  (FSDP2: ``update_ratio``, a quotient of two shard norms, is made whole by DTensor itself,
  one all-reduce more, as is the every-step curve's norm on unrecorded steps: both are whole);
* backward signals ``signal_out``/``signal_in`` and RNN profiles: with the averaged loss
  ``L = (1/W) sum_r L_r`` the gradient at rank r's rows of ``y`` is ``(1/W) dL_r/dy``, so
  ``||dL/dy|| = sqrt(sum_r ||dL_r/dy_r||^2) / W``; gains are ``in/out`` of the reduced values;
* activation means (``dphi_mean``, ``dphi_sq_mean``, ``saturated_frac``, ``preact_ms``,
  ``act_mean``): ``m = sum_r n_r m_r / N`` with ``N = sum_r n_r`` (the sample-count weight);
  ``act_std`` pooled exactly: ``sqrt((sum_r (n_r-1) s_r^2 + n_r m_r^2 - N m^2) / (N-1))``;
* ``dead_frac``: a unit is dead only if dead on every rank: ``1 - mean_u max_r alive_{r,u}``
  from per-unit masks (:class:`DeadUnits`); functional activations without masks get
  ``min_r dead_r`` (an upper bound);
* the loss: ``mean_r L_r``; ``output_rms``: ``sqrt(sum_r w_r rms_r^2 / sum_r w_r)``;
* non-finite events: the first rank (lowest number) whose non-finite checks hold a NaN/Inf
  is chosen on the device and its checks are used, so every rank names the same step and
  module; events get ``rank``. A NaN of an unrecorded step is found in the every-step curve,
  averaged over ranks, so a NaN on any rank is seen at its step;
* anything else (another probe's values): ``mean_r``. Detach does no collective (it must not
  block after an exception on one rank): the every-step curve of unrecorded steps after the
  last recorded one is read there, so its loss is the rank's own.

Why a gather and not all-reduce: one gather gives sum, max and "first bad rank" at once
(an all-reduce would need a sum and a max collective, and a third for the rank). The buffer
is small (a few values per parameter and module), so ``W x n`` floats stay cheap for the
world sizes of data parallelism. Every rank must record the same modules (same model, same
schedule): the buffers must have equal length.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gradmedic.monitor.hooks import Hooks
from gradmedic.monitor.probes import (
    ActivationProbe,
    NonFiniteProbe,
    RnnProbe,
    SignalProbe,
)
from gradmedic.monitor.probes.activations import channel_first_activations
from gradmedic.monitor.probes.base import Probe, head
from gradmedic.nn.activations import is_activation
from gradmedic.trace import Row

__all__ = ["DeadUnits", "DistSync", "parallel_metadata"]

_NONNEG = (nn.ReLU, nn.ReLU6, nn.Hardsigmoid, nn.Sigmoid)
#: torch >= 2.10 names it all_gather_single; older versions all_gather_into_tensor
_GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_DEAD = 4  # index of dead_frac in an activation module's stacked vector (probes.activations)


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def parallel_metadata(model: nn.Module) -> dict[str, Any]:
    """``{"distributed": {world_size, rank, backend, parallelism}}`` when a process group of
    more than one rank is initialised, else ``{}``. Parallelism: ``ddp`` (the model is a
    ``DistributedDataParallel``), ``fsdp2`` (a module was ``fully_shard``-ed), otherwise
    ``unwrapped`` (gradients averaged by the user, as assumed for norms)."""
    if _world() < 2:
        return {}
    kind = "unwrapped"
    if isinstance(model, nn.parallel.DistributedDataParallel):
        kind = "ddp"
    elif any(type(m).__name__.startswith("FSDP") for m in model.modules()):
        kind = "fsdp2"
    info = {"world_size": _world(), "rank": dist.get_rank(), "backend": str(dist.get_backend())}
    return {"distributed": {**info, "parallelism": kind}}


class DeadUnits(Probe):
    """Per-unit alive masks of the activation modules (``max |y| > 0`` over the rank's batch;
    units as in ``probes.activations``), the sample weight and the chosen non-finite rank.
    Its values are consumed by :class:`DistSync`; :meth:`rows` only annotates the events."""

    def __init__(self, acts: ActivationProbe, events: list[dict[str, Any]]) -> None:
        self.acts, self.events = acts, events
        self.masks: dict[str, torch.Tensor] = {}
        self.counts: dict[str, float] = {}
        self.bad_rank = 0
        self._names: list[str] = []
        self._nonneg: dict[str, bool] = {}
        self._cf: dict[str, bool] = {}

    def bind(self, model: nn.Module, selected: list[tuple[str, nn.Module]], hooks: Hooks) -> None:
        self._nonneg = {n: isinstance(m, _NONNEG) for n, m in selected if is_activation(m)}
        self._cf = channel_first_activations(model)

    def plan(self, step: int, recording: bool) -> bool:
        self.on = recording
        return self.on

    def forward(self, name: str, module: nn.Module, outs: list[torch.Tensor]) -> None:
        if name not in self._nonneg or not outs or not self.acts.on:
            return
        with torch.no_grad():
            yd = outs[0].detach()
            mag = yd if self._nonneg[name] else yd.abs()
            if yd.dim() < 2:
                peak = mag.amax(0, keepdim=True)
            elif self._cf.get(name) and yd.dim() > 2:
                peak = mag.amax(dim=[0, *range(2, yd.dim())])
            else:
                peak = mag.reshape(-1, yd.shape[-1]).amax(0)
            alive = (peak != 0).double()
        old = self.masks.get(name)
        self.masks[name] = alive if old is None or old.shape != alive.shape else old.maximum(alive)
        self.counts[name] = float(head(yd).numel())

    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        self._names = list(self.masks)
        dev = next(iter(self.masks.values())).device if self.masks else None
        return [self._with_count(n) for n in self._names] + [torch.zeros(1, device=dev)]

    def _with_count(self, name: str) -> torch.Tensor:
        mask = self.masks[name]
        return torch.cat([mask, mask.new_full((1,), self.counts[name])])

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        self.bad_rank = int(values[-1])
        for e in self.events:
            if e.get("step") == step and "rank" not in e:
                e["rank"] = self.bad_rank
                e["detail"] = f"{e['detail']} (rank {self.bad_rank})"

    def reset(self) -> None:
        self.masks = {}
        self.counts: dict[str, float] = {}


class DistSync:
    """The one collective of a recorded step (see the module docstring for each reduction).

    Created by the Monitor when a process group of ``W > 1`` ranks exists; :attr:`probe`
    is added to its probes (after the non-finite probe, so that it annotates its events).
    """

    def __init__(self, acts: ActivationProbe, events: list[dict[str, Any]]) -> None:
        self.world, self.rank = _world(), dist.get_rank()
        self.probe = DeadUnits(acts, events)

    @classmethod
    def maybe(cls, acts: ActivationProbe, events: list[dict[str, Any]]) -> DistSync | None:
        """A :class:`DistSync` when ``torch.distributed`` runs on more than one rank, else None."""
        return cls(acts, events) if _world() > 1 else None

    def reduce(
        self, active: list[Probe], reads: list[list[torch.Tensor]]
    ) -> list[list[torch.Tensor]]:
        """Global-batch values of ``reads`` (one list per probe of ``active``): one gather."""
        locals_ = [[_local(t) for t in r] for r in reads]
        flat = [t.reshape(-1).double() for r in locals_ for t in r]
        dev = next((t.device for t in flat), torch.device("cpu"))
        weight = self._weight(active, dev)
        buf = torch.cat([weight, *[t.to(dev) for t in flat]])
        gathered = torch.empty(self.world * buf.numel(), dtype=buf.dtype, device=dev)
        _GATHER(gathered, buf)  # the one collective of the step
        rows = gathered.view(self.world, -1)
        w = rows[:, 0]
        self._bad = torch.zeros((), dtype=torch.long, device=dev)
        self.dead: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}
        pos, all_segs = 1, []
        for loc in locals_:
            all_segs.append([])
            for lt in loc:
                all_segs[-1].append(rows[:, pos : pos + lt.numel()])
                pos += lt.numel()
        # the non-finite rank and the masks first: the activation statistics use them
        order = sorted(range(len(active)), key=lambda i: not isinstance(active[i], DeadUnits))
        order = sorted(order, key=lambda i: not isinstance(active[i], NonFiniteProbe))
        out: list[list[torch.Tensor]] = [[] for _ in active]
        for i in order:
            out[i] = self._probe(active[i], reads[i], all_segs[i], w)
        return out

    def _weight(self, active: list[Probe], dev: torch.device) -> torch.Tensor:
        n = next((p._out_n for p in active if isinstance(p, NonFiniteProbe)), 0)
        return torch.tensor([float(n or 1)], dtype=torch.float64, device=dev)

    def _probe(
        self, probe: Probe, r: list[torch.Tensor], segs: list[torch.Tensor], w: torch.Tensor
    ) -> list[torch.Tensor]:
        if isinstance(probe, NonFiniteProbe):
            return self._nonfinite(probe, segs, w)
        if isinstance(probe, DeadUnits):
            return self._dead(probe, segs)
        out = []
        for t, s in zip(r, segs, strict=True):
            shape = _local(t).shape
            if _is_dtensor(t):
                v = _partial(t, s)
            elif isinstance(probe, (SignalProbe, RnnProbe)):
                v = s.square().sum(0).sqrt() / self.world
            elif isinstance(probe, ActivationProbe):
                name = probe._names[len(out)]
                v = _acts(s, self.counts.get(name, w), self.dead.get(name))
            else:  # DDP-averaged parameter norms (equal on every rank), the loss, others
                v = s.mean(0)
            out.append(v.reshape(shape))
        return out

    def _dead(self, probe: DeadUnits, segs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for name, s in zip(probe._names, segs[:-1], strict=True):
            alive = s[:, :-1].amax(0)
            self.dead[name], self.counts[name] = 1.0 - alive.mean(), s[:, -1]
            out.append(torch.cat([alive, s[:, -1].sum().reshape(1)]))
        return [*out, self._bad.reshape(1).double()]

    def _nonfinite(
        self, probe: NonFiniteProbe, segs: list[torch.Tensor], w: torch.Tensor
    ) -> list[torch.Tensor]:
        out_curve = []
        if getattr(probe, "_curve_read", 0):  # every-step curves (gnorm, loss, scale) x steps
            out_curve, segs = [segs[0].mean(0)], segs[1:]  # norms made whole by DTensor
        if not probe.enabled:
            return out_curve
        rms = segs[-1] if probe._out_ms else None
        checks = segs[: len(segs) - (rms is not None)]
        bad = torch.zeros(self.world, dtype=torch.bool, device=w.device)
        for s in checks:
            bad |= ~torch.isfinite(s).all(1)
        self._bad = torch.where(bad.any(), bad.int().argmax(), 0)
        out = [s[self._bad] for s in segs]
        if rms is not None:
            out[-1] = ((w * rms[:, 0].square()).sum() / w.sum()).sqrt().reshape(1)
        return out_curve + out


def _acts(s: torch.Tensor, n: torch.Tensor, dead: torch.Tensor | None) -> torch.Tensor:
    """Reduce one activation module's 7 statistics (rows: ranks; ``n``: entries per rank).
    Means ``sum_r n_r m_r / N``; the unbiased std pooled exactly,
    ``sqrt((sum_r (n_r - 1) s_r^2 + n_r m_r^2 - N m^2) / (N - 1))``; dead from the masks."""
    total = n.sum()
    v = (n[:, None] * s).sum(0) / total
    v[_DEAD] = s[:, _DEAD].min() if dead is None else dead
    mean, std = s[:, 5], s[:, 6]
    ss = ((n - 1).clamp_min(0) * std.square() + n * mean.square()).sum()
    v[6] = ((ss - total * v[5].square()) / (total - 1).clamp_min(1)).clamp_min(0).sqrt()
    return v


def _is_dtensor(t: torch.Tensor) -> bool:
    return hasattr(t, "placements") and hasattr(t, "to_local")


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if _is_dtensor(t) else t


def _partial(t: Any, s: torch.Tensor) -> torch.Tensor:
    """Reduce a DTensor's gathered local values over the ranks of its partial mesh dimensions
    (the shard group): ``sqrt(sum v^2)`` for a norm partial, ``sum`` for a sum partial."""
    mesh, me = t.device_mesh, dist.get_rank()
    dims = [i for i, p in enumerate(t.placements) if p.is_partial()]
    if not dims:
        return s[me]
    grid = mesh.mesh
    coord = [int(c[0]) for c in (grid == me).nonzero(as_tuple=True)]
    sel = grid
    for d in reversed(range(grid.dim())):
        sel = sel.select(d, coord[d]) if d not in dims else sel
    group = s[sel.reshape(-1).tolist()]
    if hasattr(t.placements[dims[0]], "norm_type"):
        return group.square().sum(0).sqrt()
    return group.sum(0)
