"""Auxiliary classifiers on intermediate layers (Szegedy et al. 2015, GoogLeNet).

:func:`add_aux_heads` attaches linear classifiers to intermediate layers; training adds
``weight * sum(aux losses)`` (weight 0.3) to the main loss, so the gradient reaches the early
layers over a path of a third or two thirds of the depth; evaluation drops them. The wrapper
:class:`AuxiliaryHeads` speaks the protocol of :func:`gradmedic.workflows.train.train`
(``aux_enabled``, ``aux_loss(loss_fn, y)``). Wrapping renames parameters: ``3.weight`` becomes
``model.3.weight``.

Example::

    >>> from torch import nn
    >>> net = nn.Sequential(*[nn.Linear(8, 8) for _ in range(6)])
    >>> wrapped, rep = add_aux_heads(net, at=3)
    >>> wrapped.taps, rep.details["aux_at"]
    (['2'], [3])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.nn.activations import is_activation
from gradmedic.remedies.base import (
    WEIGHTED_TYPES,
    RemedyReport,
    leaf_modules,
    maybe_copy,
    weighted_layers,
)
from gradmedic.remedies.registry import remedy

__all__ = ["AuxiliaryHeads", "add_aux_heads"]


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


# ---------------------------------------------------------------------------------------------
# registration


def _takes_aux_heads(model: nn.Module) -> str | None:
    if hasattr(model, "aux_heads"):
        return "it already has auxiliary heads"
    n = len(weighted_layers(model))
    return None if n >= 3 else f"it needs at least 3 Linear/Conv layers, found {n}"


@remedy("add-aux-heads", order=90, applies=_takes_aux_heads)
def _add_aux_heads_remedy(
    model: nn.Module, /, weight: float = 0.3, at: int | str | None = None
) -> tuple[nn.Module, RemedyReport]:
    """auxiliary classifiers on intermediate layers (GoogLeNet), loss weight 0.3"""
    return add_aux_heads(model, at=at, weight=weight, inplace=True)
