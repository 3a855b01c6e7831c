"""What every remedy shares: the report of what it changed, copying, and model walking.

A remedy never touches the user's model unless asked: the plain functions deep-copy the
model first and return ``(new_model, RemedyReport)``; the trailing-underscore variants
(``reinit_``, ``swap_activation_``, ...) change the model in place and return the report, as
in-place operations do in torch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from gradmedic._json import to_jsonable
from gradmedic.errors import ModelError
from gradmedic.nn.activations import is_activation

__all__ = [
    "CONV_TYPES",
    "NORM_TYPES",
    "WEIGHTED_TYPES",
    "RemedyReport",
    "following_activations",
    "leaf_modules",
    "maybe_copy",
    "require_weighted_layers",
    "set_submodule",
    "weighted_layers",
]

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Layers with a weight matrix/filter bank that init and normalisation remedies act on.
WEIGHTED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, *CONV_TYPES)
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
)


@dataclass
class RemedyReport:
    """Exactly what a remedy changed.

    Attributes:
        spec: the remedy spec as applied, e.g. ``reinit(scheme=kaiming)`` (``a+b`` for a
            combination); ``gradmedic.remedies.apply(model, spec)`` re-applies it.
        changes: one human-readable line per change, e.g.
            ``"3.weight: reinit kaiming(fan_in, gain=1.414)"`` or
            ``"1: Sigmoid -> LeakyReLU(0.01)"``.
        warnings: what could not be changed and why (e.g. a functional ``torch.sigmoid`` call
            in a model torch.fx cannot trace).
        loss: the loss spec to train with from now on (``fix-loss``), else ``None``.
        grad_transform: a clipper to call between backward and the optimizer step
            (``clip-grad-norm`` and friends), else ``None``.
        lr_factor: multiply the learning rate by this (``lower-lr``), 1.0 otherwise.
        details: remedy-specific numbers (e.g. LSUV's per-layer std and tries).
    """

    spec: str
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    loss: str | None = None
    grad_transform: Any = None
    lr_factor: float = 1.0
    details: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: RemedyReport) -> RemedyReport:
        """The report of applying ``self`` then ``other``."""
        return RemedyReport(
            spec=f"{self.spec}+{other.spec}" if self.spec else other.spec,
            changes=self.changes + other.changes,
            warnings=self.warnings + other.warnings,
            loss=other.loss if other.loss is not None else self.loss,
            grad_transform=(
                other.grad_transform if other.grad_transform is not None else self.grad_transform
            ),
            lr_factor=self.lr_factor * other.lr_factor,
            details={**self.details, **other.details},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the clipper is given by its spec)."""
        gt = self.grad_transform
        return {
            "spec": self.spec,
            "changes": list(self.changes),
            "warnings": list(self.warnings),
            "loss": self.loss,
            "grad_transform": getattr(gt, "spec", None) if gt is not None else None,
            "lr_factor": self.lr_factor,
            "details": to_jsonable(self.details),
        }

    def __str__(self) -> str:
        lines = [f"{self.spec}: {len(self.changes)} change(s)"]
        lines += [f"  {c}" for c in self.changes]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def maybe_copy(model: nn.Module, inplace: bool) -> nn.Module:
    """``model`` itself when ``inplace``, else a deep copy (the user's model stays untouched)."""
    return model if inplace else copy.deepcopy(model)


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every module without children, in registration order."""
    return [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Linear and Conv layers in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHTED_TYPES)]


def require_weighted_layers(model: nn.Module, what: str) -> list[tuple[str, nn.Module]]:
    """:func:`weighted_layers`, or ModelError naming the remedy ``what`` when there are none."""
    layers = weighted_layers(model)
    if not layers:
        raise ModelError(
            f"remedy '{what}' does not apply to {type(model).__name__}: it has no nn.Linear or "
            "nn.Conv layer to re-initialise"
        )
    return layers


def following_activations(model: nn.Module) -> dict[str, nn.Module | None]:
    """For each weighted layer, the activation module that follows it, or ``None``.

    "Follows" is read from registration order (which is execution order for ``nn.Sequential``
    stacks and for models that register layers in the order they use them): the first
    activation among the leaves after the layer and before the next weighted layer; norm layers
    in between are skipped. A layer followed by no activation (an output layer, the last layer
    of a residual branch) maps to ``None`` (linear, gain 1). Activations called as functions in
    ``forward`` are not seen.
    """
    out: dict[str, nn.Module | None] = {}
    pending: list[str] = []
    for name, mod in leaf_modules(model):
        if isinstance(mod, WEIGHTED_TYPES):
            for p in pending:
                out[p] = None
            pending = [name]
        elif is_activation(mod) and pending:
            for p in pending:
                out[p] = mod
            pending = []
    for p in pending:
        out[p] = None
    return out


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule at qualified ``name`` (``"rnn"``, ``"3.branch.1"``) by ``new``."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
