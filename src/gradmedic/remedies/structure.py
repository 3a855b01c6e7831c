"""Structural remedies: normalisation layers and residual connections.

- :func:`add_norm` (Ioffe & Szegedy 2015; Ba et al. 2016): insert BatchNorm or LayerNorm right
  after every Linear/Conv of an ``nn.Sequential`` stack that feeds an activation, so each
  pre-activation is re-standardised and the layer Jacobian no longer depends on the weight
  scale (``BN((aW)u) = BN(Wu)``).
- :func:`add_residual` (He et al. 2016): wrap runs of same-shape units (a Linear/Conv whose
  output has the shape of its input, with the norm/activation after it) in
  :class:`Residual` blocks ``y = x + branch(x)``; the identity path adds 1 to every block's
  Jacobian, ``dE/dx_l = dE/dx_L (1 + d/dx_l sum F)``, so the gradient cannot vanish through it.

Inserting or wrapping modules renames parameters (``3.weight`` becomes ``4.weight`` or
``3.branch.0.weight``); apply the same remedy to the model code before loading a saved
state_dict. Auxiliary classifiers (``add-aux-heads``) are in :mod:`gradmedic.remedies.heads`.

Example::

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    >>> _, rep = add_norm(net, "layer")
    >>> rep.changes[0]
    'after 0 (Linear): insert LayerNorm(8)'
"""

from __future__ import annotations

import torch
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.nn.activations import is_activation
from gradmedic.remedies.base import (
    CONV_TYPES,
    NORM_TYPES,
    WEIGHTED_TYPES,
    RemedyReport,
    maybe_copy,
)
from gradmedic.remedies.registry import remedy

__all__ = [
    "Residual",
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
# registration


def _has_norm_sites(model: nn.Module) -> str | None:
    if norm_sites(model):
        return None
    return "no nn.Sequential holds a Linear/Conv followed by an activation without a norm"


def _has_residual_runs(model: nn.Module) -> str | None:
    if residual_runs(model):
        return None
    return "no nn.Sequential has 2 consecutive same-shape Linear/Conv units to wrap"


@remedy("add-residual", order=30, applies=_has_residual_runs)
def _add_residual_remedy(model: nn.Module, /, block: int = 2) -> tuple[nn.Module, RemedyReport]:
    """wrap runs of same-shape layers in residual blocks x + F(x)"""
    return add_residual(model, block=block, inplace=True)


@remedy("add-norm", order=40, applies=_has_norm_sites)
def _add_norm_remedy(model: nn.Module, /, kind: str = "batch") -> tuple[nn.Module, RemedyReport]:
    """insert BatchNorm/LayerNorm after each hidden Linear/Conv"""
    return add_norm(model, kind, inplace=True)
