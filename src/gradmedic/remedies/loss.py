"""Loss pairing: fuse the output nonlinearity into the loss (the stable, log-sum-exp form).

Why: ``BCELoss(sigmoid(z))`` computes ``log(sigmoid(z))``, which underflows to ``log 0`` for
``z < -88`` in float32 and saturates the gradient ``sigmoid'(z)`` on the way; the fused
``BCEWithLogitsLoss(z) = max(z, 0) - z y + log(1 + exp(-|z|))`` has the exact gradient
``sigmoid(z) - y`` at any ``z``. Likewise ``NLLLoss(log(softmax(z)))`` (and a softmax fed to
``CrossEntropyLoss``, which applies log-softmax a second time and squashes the gradient by the
softmax Jacobian) becomes ``CrossEntropyLoss(z)`` with gradient ``softmax(z) - onehot(y)``.

:func:`fix_loss` removes the model's final ``nn.Sigmoid`` / ``nn.Softmax`` and returns the
fused loss. The model then outputs logits: apply ``torch.sigmoid`` / ``torch.softmax`` yourself
where probabilities are needed at inference.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.remedies.base import RemedyReport, leaf_modules, maybe_copy, set_submodule
from gradmedic.remedies.registry import remedy

__all__ = ["final_output_module", "fix_loss", "fix_loss_"]

_SIGMOID_LOSSES = ("bce",)
#: Loss modules by exact class, in the spec syntax of ``gradmedic.zoo.make_loss``.
_LOSS_KINDS: dict[type[nn.Module], str] = {
    nn.BCELoss: "bce",
    nn.BCEWithLogitsLoss: "bce-logits",
    nn.NLLLoss: "nll",
    nn.CrossEntropyLoss: "ce",
    nn.MSELoss: "mse",
}
_SOFTMAX_LOSSES = ("nll", "ce")


def final_output_module(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The last leaf module in registration order (the output nonlinearity of a stack)."""
    leaves = leaf_modules(model)
    return leaves[-1] if leaves else None


def _loss_kind(loss: Any) -> str | None:
    if loss is None:
        return None
    if isinstance(loss, str):
        return loss.split(":")[0].strip().lower()
    inner = getattr(loss, "inner", loss)  # zoo.SequenceLoss
    return _LOSS_KINDS.get(type(inner), "custom")  # exact class: a subclass may differ


def fix_loss_(
    model: nn.Module, loss: Any = None, to: str | None = None
) -> tuple[str, RemedyReport]:
    """In-place :func:`fix_loss`: drop the final Sigmoid/Softmax, return ``(loss spec,
    report)``. ``loss`` (a spec or module) is checked against the final layer when given;
    ``to`` forces ``bce-logits`` or ``ce``."""
    last = final_output_module(model)
    kind = _loss_kind(loss)
    if last is None or not isinstance(last[1], (nn.Sigmoid, nn.Softmax)):
        found = type(last[1]).__name__ if last else "nothing"
        raise ConfigError(
            f"remedy 'fix-loss' does not apply to {type(model).__name__}: its last module is "
            f"{found}, not a Sigmoid or Softmax to fuse into the loss"
        )
    name, mod = last
    if isinstance(mod, nn.Sigmoid):
        new_loss = "bce-logits"
        if kind not in (None, *_SIGMOID_LOSSES):
            raise ConfigError(
                f"remedy 'fix-loss' does not apply: the final Sigmoid is paired with loss "
                f"'{kind}', not BCELoss; fix-loss rewrites Sigmoid + BCELoss to BCEWithLogitsLoss"
            )
    else:
        new_loss = "ce"
        if kind not in (None, *_SOFTMAX_LOSSES, "custom"):
            raise ConfigError(
                f"remedy 'fix-loss' does not apply: the final Softmax is paired with loss "
                f"'{kind}'; fix-loss rewrites Softmax + log + NLLLoss (or Softmax + "
                "CrossEntropyLoss) to CrossEntropyLoss on logits"
            )
    if to is not None and str(to).lower() != new_loss:
        raise ConfigError(
            f"fix-loss: to={to!r} does not match the final {type(mod).__name__}; use to={new_loss}"
        )
    set_submodule(model, name, nn.Identity())
    rep = RemedyReport(spec=f"fix-loss(to={new_loss})", loss=new_loss)
    rep.changes.append(f"{name}: {type(mod).__name__} -> Identity (the model now outputs logits)")
    old = kind or ("bce" if new_loss == "bce-logits" else "nll/ce")
    fused = "BCEWithLogitsLoss" if new_loss == "bce-logits" else "CrossEntropyLoss"
    rep.changes.append(f"loss: {old} -> {new_loss} ({fused}, fused and numerically stable)")
    return new_loss, rep


def fix_loss(
    model: nn.Module, loss: Any = None, *, to: str | None = None, inplace: bool = False
) -> tuple[nn.Module, nn.Module]:
    """Rewrite final ``Sigmoid`` + ``BCELoss`` to logits + ``BCEWithLogitsLoss``, and final
    ``Softmax`` (+ log) + ``NLLLoss`` / ``CrossEntropyLoss`` to logits + ``CrossEntropyLoss``.

    Returns ``(model without the final nonlinearity, fused loss module)``; the input model is
    untouched unless ``inplace``.

    >>> import torch
    >>> net = nn.Sequential(nn.Linear(3, 1), nn.Sigmoid())
    >>> new, loss = fix_loss(net, nn.BCELoss())
    >>> type(new[1]).__name__, type(loss).__name__
    ('Identity', 'BCEWithLogitsLoss')
    """
    new = maybe_copy(model, inplace)
    spec, _ = fix_loss_(new, loss, to)
    reduction = getattr(getattr(loss, "inner", loss), "reduction", "mean")
    if spec == "bce-logits":
        return new, nn.BCEWithLogitsLoss(reduction=reduction)
    return new, nn.CrossEntropyLoss(reduction=reduction)


# ---------------------------------------------------------------------------------------------
# registration


def _ends_in_sigmoid_or_softmax(model: nn.Module) -> str | None:
    last = final_output_module(model)
    if last is not None and isinstance(last[1], (nn.Sigmoid, nn.Softmax)):
        return None
    found = type(last[1]).__name__ if last else "nothing"
    return f"its last module is {found}, not a Sigmoid or Softmax to fuse into the loss"


@remedy("fix-loss", order=100, applies=_ends_in_sigmoid_or_softmax)
def _fix_loss_remedy(
    model: nn.Module, /, to: str | None = None, *, loss: Any = None
) -> tuple[nn.Module, RemedyReport]:
    """fuse a final Sigmoid/Softmax into BCEWithLogitsLoss/CrossEntropyLoss"""
    _, rep = fix_loss_(model, loss, to)
    return model, rep
