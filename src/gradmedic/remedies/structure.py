"""Structural remedies: normalisation layers, residual connections, auxiliary classifiers.

- :func:`add_norm` (Ioffe & Szegedy 2015; Ba et al. 2016): insert BatchNorm or LayerNorm right
  after every Linear/Conv of an ``nn.Sequential`` stack that feeds an activation, so each
  pre-activation is re-standardised and the layer Jacobian no longer depends on the weight
  scale (``BN((aW)u) = BN(Wu)``).
- :func:`add_residual` (He et al. 2016): wrap runs of same-shape units (a Linear/Conv whose
  output has the shape of its input, with the norm/activation after it) in
  :class:`Residual` blocks ``y = x + branch(x)``; the identity path adds 1 to every block's
  Jacobian, ``dE/dx_l = dE/dx_L (1 + d/dx_l sum F)``, so the gradient cannot vanish through it.
- :func:`add_aux_heads` (Szegedy et al. 2015, GoogLeNet): attach linear classifiers to
  intermediate layers; training adds ``weight * sum(aux losses)`` (weight 0.3) to the main
  loss, evaluation drops them. The wrapper :class:`AuxiliaryHeads` speaks the protocol of
  :func:`gradmedic.workflows.train.train` (``aux_enabled``, ``aux_loss(loss_fn, y)``).

Inserting or wrapping modules renames parameters (``3.weight`` becomes ``4.weight`` or
``3.branch.0.weight``); apply the same remedy to the model code before loading a saved
state_dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.nn.activations import is_activation
from gradmedic.remedies.base import (
    CONV_TYPES,
    NORM_TYPES,
    WEIGHTED_TYPES,
    RemedyReport,
    leaf_modules,
    maybe_copy,
    weighted_layers,
)

__all__ = [
    "AuxiliaryHeads",
    "Residual",
    "add_aux_heads",
    "add_norm",
    "add_residual",
    "norm_sites",
    "residual_runs",
]


# ---------------------------------------------------------------------------------------------
# normalisation


def _sequentials(model: nn.Module) -> list[tuple[str, nn.Sequential]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Sequential)]


def norm_sites(model: nn.Module) -> list[tuple[str, int]]:
    """(Sequential name, index) of each Linear/Conv that is followed, inside the same
    Sequential and before the next Linear/Conv, by an activation and not already by a norm."""
    sites = []
    for sname, seq in _sequentials(model):
        items = list(seq)
        for i, mod in enumerate(items):
            if not isinstance(mod, WEIGHTED_TYPES):
                continue
            has_act = False
            for nxt in items[i + 1 :]:
                if isinstance(nxt, (WEIGHTED_TYPES, NORM_TYPES)):
                    break
                if is_activation(nxt):
                    has_act = True
                    break
            if has_act and not (i + 1 < len(items) and isinstance(items[i + 1], NORM_TYPES)):
                sites.append((sname, i))
    return sites


def _make_norm(layer: nn.Module, kind: str) -> nn.Module:
    if isinstance(layer, nn.Linear):
        n = layer.out_features
        return nn.BatchNorm1d(n) if kind == "batch" else nn.LayerNorm(n)
    c = layer.out_channels
    if kind == "layer":  # LayerNorm over (C, spatial): GroupNorm with one group
        return nn.GroupNorm(1, c)
    return {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}[
        type(layer)
    ](c)


def add_norm(
    model: nn.Module, kind: str = "batch", *, inplace: bool = False
) -> tuple[nn.Module, RemedyReport]:
    """Insert ``BatchNorm`` (``kind="batch"``) or ``LayerNorm`` (``"layer"``; GroupNorm(1, C)
    for convs) after each Linear/Conv that feeds an activation in an ``nn.Sequential``.

    The output layer (no activation after it) gets no norm. Later modules of that Sequential
    shift by one index per inserted norm. Raises ConfigError when there is no such layer.
    """
    kind = str(kind).lower()
    if kind not in ("batch", "layer"):
        raise ConfigError(f"add-norm: kind={kind!r} is invalid; use kind=batch or kind=layer")
    new = maybe_copy(model, inplace)
    sites = norm_sites(new)
    if not sites:
        raise ConfigError(
            f"remedy 'add-norm' does not apply to {type(model).__name__}: no nn.Sequential holds "
            "a Linear/Conv followed by an activation (or each already has a norm)"
        )
    rep = RemedyReport(spec=f"add-norm(kind={kind})")
    by_seq: dict[str, list[int]] = {}
    for sname, i in sites:
        by_seq.setdefault(sname, []).append(i)
    for sname, idxs in by_seq.items():
        seq = new.get_submodule(sname) if sname else new
        items = list(seq)
        out: list[nn.Module] = []
        for i, mod in enumerate(items):
            out.append(mod)
            if i in idxs:
                norm = _make_norm(mod, kind)
                out.append(norm)
                where = f"{sname}.{i}" if sname else str(i)
                size = norm.num_groups if isinstance(norm, nn.GroupNorm) else None
                dim = (
                    norm.num_channels
                    if size is not None
                    else getattr(norm, "num_features", None) or next(iter(norm.normalized_shape))
                )
                label = f"{type(norm).__name__}({'1, ' if size else ''}{dim})"
                rep.changes.append(f"after {where} ({type(mod).__name__}): insert {label}")
        for key in list(seq._modules):
            del seq._modules[key]
        for j, mod in enumerate(out):
            seq.add_module(str(j), mod)
    rep.changes.append("parameter names after the first insertion shift (indices renumbered)")
    return new, rep


# ---------------------------------------------------------------------------------------------
# residual connections


class Residual(nn.Module):
    """``y = x + branch(x)`` (He et al. 2016). ``branch`` keeps the wrapped modules in order
    (pre-activation form: norm/activation first, a Linear/Conv last)."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.branch = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def _same_shape(layer: nn.Module) -> bool:
    if isinstance(layer, nn.Linear):
        return layer.in_features == layer.out_features
    if isinstance(layer, CONV_TYPES):
        k = layer.kernel_size
        pad = layer.padding
        if isinstance(pad, str):
            ok_pad = pad == "same"
        else:
            ok_pad = all(
                p * 2 == (kk - 1) * d for p, kk, d in zip(pad, k, layer.dilation, strict=False)
            )
        return (
            layer.in_channels == layer.out_channels and all(s == 1 for s in layer.stride) and ok_pad
        )
    return False


def _units(items: list[nn.Module]) -> list[tuple[int, int, bool]]:
    """Split a Sequential's items into pre-activation units [start, end): the norm/activation
    modules after one weighted layer followed by the next weighted layer (He et al. 2016b,
    "identity mappings": the branch ends in a Linear/Conv, so zeroing it makes the block the
    exact identity). Third field: the unit keeps its input's shape and may be wrapped (never
    the first layer, which sees the raw input, nor the output layer)."""
    units = []
    starts = [i for i, m in enumerate(items) if isinstance(m, WEIGHTED_TYPES)]
    for k in range(1, len(starts)):
        s, e = starts[k - 1] + 1, starts[k] + 1
        ok = _same_shape(items[starts[k]]) and all(
            is_activation(m) or isinstance(m, (NORM_TYPES, nn.Dropout)) for m in items[s : e - 1]
        )
        units.append((s, e, ok and k + 1 < len(starts)))
    return units


def residual_runs(model: nn.Module, block: int = 2) -> list[tuple[str, list[tuple[int, int]]]]:
    """Per Sequential, the index ranges that :func:`add_residual` would wrap."""
    out = []
    for sname, seq in _sequentials(model):
        if isinstance(seq, Residual) or sname.endswith("branch"):
            continue
        items = list(seq)
        groups: list[tuple[int, int]] = []
        run: list[tuple[int, int, bool]] = []
        for u in [*_units(items), (len(items), len(items), False)]:
            if u[2]:
                run.append(u)
                continue
            for j in range(0, len(run) - block + 1, block):
                groups.append((run[j][0], run[j + block - 1][1]))
            run = []
        if groups:
            out.append((sname, groups))
    return out


def add_residual(
    model: nn.Module, *, block: int = 2, inplace: bool = False
) -> tuple[nn.Module, RemedyReport]:
    """Wrap runs of ``block`` consecutive same-shape units of each ``nn.Sequential`` in
    :class:`Residual` (``x + branch(x)``).

    A unit is a Linear (``in == out``) or a shape-keeping Conv (stride 1, "same" padding,
    ``in_channels == out_channels``) with the norm/activation/dropout modules that follow it.
    The first layer (input width) and the output layer are never wrapped. Combine with
    ``zero-init-residual`` to start every block at the identity (Fixup).
    """
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ConfigError(f"add-residual: block={block!r} must be an integer >= 1; e.g. block=2")
    new = maybe_copy(model, inplace)
    runs = residual_runs(new, block)
    if not runs:
        raise ConfigError(
            f"remedy 'add-residual' does not apply to {type(model).__name__}: no nn.Sequential "
            f"has {block} consecutive same-shape Linear/Conv units to wrap"
        )
    rep = RemedyReport(spec=f"add-residual(block={block})")
    for sname, groups in runs:
        seq = new.get_submodule(sname) if sname else new
        items = list(seq)
        starts = {g[0]: g for g in groups}
        out: list[nn.Module] = []
        i = 0
        while i < len(items):
            if i in starts:
                s, e = starts[i]
                out.append(Residual(*items[s:e]))
                names = ", ".join(f"{sname}.{j}" if sname else str(j) for j in range(s, e))
                rep.changes.append(f"wrap [{names}] in Residual: y = x + branch(x)")
                i = e
            else:
                out.append(items[i])
                i += 1
        for key in list(seq._modules):
            del seq._modules[key]
        for j, mod in enumerate(out):
            seq.add_module(str(j), mod)
    return new, rep


# ---------------------------------------------------------------------------------------------
# auxiliary classifiers


class AuxiliaryHeads(nn.Module):
    """A model with auxiliary classifier heads on intermediate modules (GoogLeNet).

    ``forward`` returns the main model's output. In training mode (and with ``aux_enabled``)
    forward hooks, registered only for the duration of the call, feed the outputs of the
    ``taps`` modules to ``aux_heads``; the results are kept in ``aux_outputs``.
    ``aux_loss(loss_fn, y) = aux_loss_weight * sum_k loss_fn(aux_k, y)`` (Szegedy et al. 2015:
    ``L = L_main + 0.3 (L_aux1 + L_aux2)``); in eval mode no head runs and ``aux_outputs`` is
    empty. :func:`gradmedic.workflows.train.train` adds ``aux_loss`` automatically.

    Training loop of your own::

        out = model(x)
        loss = loss_fn(out, y) + model.aux_loss(loss_fn, y)
    """

    def __init__(
        self, model: nn.Module, taps: list[str], heads: list[nn.Module], weight: float = 0.3
    ) -> None:
        super().__init__()
        if len(taps) != len(heads):
            raise ConfigError("AuxiliaryHeads needs one head per tap")
        self.model = model
        self.taps = list(taps)
        self.aux_heads = nn.ModuleList(heads)
        self.aux_loss_weight = float(weight)
        self.aux_enabled = True
        self.aux_outputs: list[torch.Tensor] = []

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        self.aux_outputs = []
        if not (self.training and self.aux_enabled):
            return self.model(x, *args, **kwargs)
        captured: dict[int, torch.Tensor] = {}
        handles = []
        for k, tap in enumerate(self.taps):

            def hook(mod: nn.Module, inp: Any, out: Any, k: int = k) -> None:
                if k not in captured and isinstance(out, torch.Tensor):
                    captured[k] = out

            handles.append(self.model.get_submodule(tap).register_forward_hook(hook))
        try:
            out = self.model(x, *args, **kwargs)
        finally:
            for h in handles:
                h.remove()
        self.aux_outputs = [
            self.aux_heads[k](captured[k]) for k in range(len(self.taps)) if k in captured
        ]
        return out

    def aux_loss(
        self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """``aux_loss_weight * sum(loss_fn(aux, target))`` over the last forward's heads."""
        if not self.aux_outputs:
            return torch.zeros(())
        return (
            self.aux_loss_weight * torch.stack([loss_fn(a, target) for a in self.aux_outputs]).sum()
        )


def _parse_at(at: Any, n: int) -> list[int]:
    if at is None:
        picks = sorted({max(1, round(n * k / 3)) for k in (1, 2)})
        return [p for p in picks if p < n]
    if isinstance(at, int) and not isinstance(at, bool):
        parts: Iterable[Any] = [at]
    elif isinstance(at, str):
        parts = at.replace("/", "+").split("+")
    else:
        parts = at
    out = []
    for p in parts:
        try:
            k = int(p)
        except (TypeError, ValueError):
            k = 0
        if isinstance(p, bool) or not 1 <= k < n:
            raise ConfigError(
                f"add-aux-heads: at={at!r} is invalid; give weighted-layer numbers 1..{n - 1} "
                "joined by '+', e.g. add-aux-heads(at=7+14)"
            )
        out.append(k)
    return sorted(set(out))


def add_aux_heads(
    model: nn.Module,
    *,
    at: Any = None,
    weight: float = 0.3,
    num_outputs: int | None = None,
    inplace: bool = False,
) -> tuple[nn.Module, RemedyReport]:
    """Attach auxiliary classifiers after the ``at``-th Linear/Conv layers (1-based, counted in
    registration order; default: at 1/3 and 2/3 of the depth), returning an
    :class:`AuxiliaryHeads` wrapper.

    Each head reads the output of the activation that follows the chosen layer (or the layer
    itself when none follows): ``Linear(features, num_outputs)`` for Linear layers,
    ``AdaptiveAvgPool -> Flatten -> Linear(channels, num_outputs)`` for convs. ``num_outputs``
    defaults to the output size of the model's last Linear.

    The wrapper prefixes the model's parameter names with ``model.``.
    """
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise ConfigError(f"add-aux-heads: weight={weight!r} must be a number >= 0; e.g. 0.3")
    layers = weighted_layers(model)
    if len(layers) < 3:
        raise ConfigError(
            f"remedy 'add-aux-heads' does not apply to {type(model).__name__}: it needs at "
            f"least 3 Linear/Conv layers, found {len(layers)}"
        )
    if isinstance(model, AuxiliaryHeads) or hasattr(model, "aux_heads"):
        raise ConfigError(
            f"remedy 'add-aux-heads' does not apply to {type(model).__name__}: it already has "
            "auxiliary heads"
        )
    if num_outputs is None:
        linears = [m for _, m in layers if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError("add-aux-heads: pass num_outputs= (the model has no final Linear)")
        num_outputs = linears[-1].out_features
    new = maybe_copy(model, inplace)
    new_layers = weighted_layers(new)
    picks = _parse_at(at, len(new_layers))
    leaves = leaf_modules(new)
    order = {name: i for i, (name, _) in enumerate(leaves)}
    taps, heads = [], []
    rep = RemedyReport(spec=f"add-aux-heads(weight={float(weight):g})")
    for k in picks:
        lname, layer = new_layers[k - 1]
        tap = lname
        for name, mod in leaves[order[lname] + 1 :]:
            if isinstance(mod, WEIGHTED_TYPES):
                break
            if is_activation(mod):
                tap = name
                break
        if isinstance(layer, nn.Linear):
            head: nn.Module = nn.Linear(layer.out_features, num_outputs)
        else:
            pool = {nn.Conv1d: nn.AdaptiveAvgPool1d, nn.Conv2d: nn.AdaptiveAvgPool2d}.get(
                type(layer), nn.AdaptiveAvgPool3d
            )
            head = nn.Sequential(pool(1), nn.Flatten(), nn.Linear(layer.out_channels, num_outputs))
        taps.append(tap)
        heads.append(head)
        rep.changes.append(
            f"aux head after layer {k} ({lname}, tap {tap}): {head} with loss weight "
            f"{float(weight):g}"
        )
    rep.changes.append("model wrapped in AuxiliaryHeads: parameter names gain the prefix 'model.'")
    rep.details["aux_at"] = picks
    return AuxiliaryHeads(new, taps, heads, weight=float(weight)), rep
