"""What the user's forward and loss return, checked before gradmedic uses it.

Each check raises a one-line :class:`~gradmedic.errors.GradmedicError` that says what came
back and what to return instead (exceptions *raised* by the user's code are told by
:mod:`gradmedic.workflows.failures`):

- :func:`model_output`: forward must return a tensor (or a tuple/list whose first item is
  one) that depends on the trainable parameters; a dict, ``None``, ``(None, x)`` or a
  detached tensor is refused;
- :func:`fit_target`: a target that differs from the output only by a trailing dimension of
  size 1 (``(B,)`` against ``(B, 1)``) is reshaped to the output's shape, with a note;
- :func:`check_labels`: class labels for CrossEntropyLoss / NLLLoss must lie in
  ``0..C-1`` (checked before the loss, where a GPU would only assert);
- :func:`loss_value`: the loss must return a scalar tensor with a gradient.

Example::

    >>> import torch
    >>> fit_target(torch.zeros(4), torch.ones(4, 1))[0].shape
    torch.Size([4])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from gradmedic.errors import DataError, ModelError
from gradmedic.workflows.batches import MAX_CLASSES
from gradmedic.workflows.failures import Step, shape
from gradmedic.zoo.losses import SequenceLoss, unwrap_loss

__all__ = ["check_labels", "fit_target", "loss_name", "loss_value", "model_output"]

_CLASS_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)
_CLASS_FUNCTIONS = (F.cross_entropy, F.nll_loss)


def loss_name(loss: Any) -> str:
    """The class (or function) name of the torch loss inside gradmedic's wrappers."""
    inner = unwrap_loss(loss)
    if isinstance(inner, nn.Module):
        return type(inner).__name__
    return getattr(inner, "__name__", type(inner).__name__)


def model_output(out: Any, step: Step) -> torch.Tensor:
    """The output tensor of forward's return value (the first item of a tuple or list)."""
    what = "returned"
    if isinstance(out, (tuple, list)):
        if not out or not isinstance(out[0], torch.Tensor):
            first = type(out[0]).__name__ if out else "nothing"
            raise ModelError(
                f"the model's forward returned a {type(out).__name__} whose first item is "
                f"{first} (at {step.at}); gradmedic trains on the first item: put the output "
                "tensor first, e.g. return logits, extra"
            )
        out, what = out[0], "returned as first item"
    if isinstance(out, dict):
        keys = ", ".join(map(str, out)) or "none"
        raise ModelError(
            f"the model's forward returned a dict (keys: {keys}) at {step.at}; gradmedic needs "
            "the output tensor: return it (e.g. out['logits']) or wrap the model so that "
            "forward returns one tensor"
        )
    if out is None:
        raise ModelError(
            f"the model's forward returned None at {step.at}; it must return the output "
            "tensor (is a return statement missing?)"
        )
    if not isinstance(out, torch.Tensor):
        raise ModelError(
            f"the model's forward returned {type(out).__name__} at {step.at}; it must return "
            "the output tensor"
        )
    if not out.requires_grad:
        raise ModelError(
            f"the output the model {what} at {step.at} does not depend on its trainable "
            "parameters (no grad_fn): forward cuts the graph (.detach(), .item(), .data, "
            "torch.no_grad() or a NumPy round trip); remove that so that gradients can flow"
        )
    return out


def fit_target(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, str | None]:
    """``(target, note)``: the target reshaped to the output's shape when the two differ only
    by a trailing dimension of size 1 (float targets when the output has the extra one, as an
    integer ``(B,)`` target against ``(B, 1)`` logits is a class label); note None otherwise."""
    if out.shape == y.shape or out.numel() != y.numel():
        return y, None
    if y.shape == (*out.shape, 1) or (out.shape == (*y.shape, 1) and y.is_floating_point()):
        note = (
            f"the targets of shape {tuple(y.shape)} were reshaped to the output's shape "
            f"{tuple(out.shape)} (they differ only by a trailing dimension of size 1)"
        )
        return y.reshape(out.shape), note
    return y, None


def check_labels(out: torch.Tensor, y: torch.Tensor, loss: Any, step: Step) -> None:
    """Class labels of CrossEntropyLoss / NLLLoss in ``0..C-1`` (``ignore_index`` allowed)."""
    inner = unwrap_loss(loss)
    if not (isinstance(inner, _CLASS_LOSSES) or inner in _CLASS_FUNCTIONS):
        return
    if y.is_floating_point() or y.dtype == torch.bool or out.dim() < 2 or y.numel() == 0:
        return
    classes = int(out.shape[-1] if isinstance(loss, SequenceLoss) else out.shape[1])
    ignore = getattr(inner, "ignore_index", -100)
    labels = y[y != ignore]
    if labels.numel() == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo >= 0 and hi < classes:
        return
    bad = lo if lo < 0 else hi
    if bad < 0:
        fix = f"negative labels are skipped only when they equal ignore_index ({ignore})"
    elif bad >= MAX_CLASSES:
        fix = "is the target the right column? (regression targets must be float tensors)"
    else:
        fix = f"give the model's last layer {hi + 1} outputs, or relabel the targets"
    raise DataError(
        f"class label {bad} at {step.at} is out of range for the model's {classes} outputs "
        f"(labels {lo}..{hi}; {step.shapes()}); class labels must be 0..{classes - 1}: {fix}"
    )


def loss_value(value: Any, loss: Any, step: Step) -> torch.Tensor:
    """The loss's return value as a one-element tensor with a gradient, or a one-line error."""
    name = loss_name(loss)
    if value is None:
        raise ModelError(
            f"the loss ({name}) returned None at {step.at}, expected a scalar tensor; is a "
            "return statement missing in the loss?"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ModelError(
            f"the loss ({name}) returned a Python {type(value).__name__} ({value:.4g}) at "
            f"{step.at}, expected a scalar tensor: return the torch.Tensor itself (not .item() "
            "or float(...)) so that gradients can flow"
        )
    if not isinstance(value, torch.Tensor):
        raise ModelError(
            f"the loss ({name}) returned {type(value).__name__} at {step.at}, expected a "
            "scalar tensor"
        )
    if value.numel() != 1:
        if getattr(unwrap_loss(loss), "reduction", None) == "none":
            fix = "the loss has reduction='none': use reduction='mean' (the default) or 'sum'"
        else:
            fix = "reduce it, e.g. with .mean()"
        raise ModelError(
            f"the loss ({name}) returned a tensor of shape {shape(value)} at {step.at}, "
            f"expected a scalar (gradmedic backpropagates one number); {fix}"
        )
    if not value.requires_grad:
        raise ModelError(
            f"the loss ({name}) at {step.at} does not depend on the model's output (no "
            "grad_fn): it cuts the graph (.detach(), .item(), torch.tensor(number)); compute it "
            "from the output with torch operations"
        )
    return value
