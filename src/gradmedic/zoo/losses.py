"""Loss functions by name, and a wrapper that flattens time for per-step classification.

- ``ce``: CrossEntropyLoss; raw logits (B, C), int64 targets (B,).
- ``nll``: NLLLoss; log-probabilities (B, C), int64 targets (B,).
- ``mse``: MSELoss; predictions and targets of the same shape.
- ``bce``: BCELoss; probabilities in [0, 1] (after a sigmoid), float targets.
- ``bce-logits``: BCEWithLogitsLoss; raw logits, float targets in {0, 1}.

Constructor keywords can be given as options, e.g. ``ce:label_smoothing=0.1``,
``mse:reduction=sum`` or ``ce:reduction=none`` (the word ``none``, as torch spells it). ``path/to/file.py:name`` loads a user loss: an ``nn.Module`` class or
instance, a factory called with no arguments that returns a loss, or a loss function taking
``(output, target)`` directly.

Pairing a loss with the wrong output (``bce`` on logits, ``ce`` after a softmax) is a classic
cause of vanishing gradients: softmax followed by CrossEntropyLoss squashes the logit gradient
by the softmax Jacobian a second time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradmedic._callspec import Options, is_factory_ref, load_factory, parse_spec
from gradmedic.errors import ConfigError, GradmedicError, ModelError, unknown_name
from gradmedic.zoo.data import DataInfo

__all__ = ["LOSSES", "FunctionLoss", "SequenceLoss", "loss_for", "make_loss", "unwrap_loss"]

_TABLE: dict[str, type[nn.Module]] = {
    "ce": nn.CrossEntropyLoss,
    "mse": nn.MSELoss,
    "bce": nn.BCELoss,
    "bce-logits": nn.BCEWithLogitsLoss,
    "nll": nn.NLLLoss,
}
#: Built-in loss names.
LOSSES: tuple[str, ...] = tuple(_TABLE)

_SKIP_KW = {"self", "weight", "pos_weight", "size_average", "reduce"}


class SequenceLoss(nn.Module):
    """Apply a per-sample loss to per-time-step outputs by flattening time.

    Outputs (B, T, C) become (B·T, C) and targets (B, T) become (B·T,), so ``ce`` averages over
    every step (the convention behind the copy-task baseline ``10 ln 8 / (T + 20)``). Inputs
    that are not 3-D pass through unchanged.
    """

    def __init__(self, inner: nn.Module | Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if output.dim() == 3:
            output = output.reshape(-1, output.shape[-1])
            target = target.reshape(-1)
        return self.inner(output, target)


class FunctionLoss(nn.Module):
    """Wrap a plain ``fn(output, target)`` loss function as a module."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(output, target)


def _is_loss_function(fn: Callable[..., Any]) -> bool:
    """True for a function that needs two positional arguments (output, target)."""
    if inspect.isclass(fn):
        return False
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(required) >= 2


def _from_factory(ref: str) -> nn.Module:
    fn = load_factory(ref)
    if isinstance(fn, nn.Module):
        return fn
    if _is_loss_function(fn):
        return FunctionLoss(fn)
    try:
        obj = fn()
    except GradmedicError:
        raise
    except SystemExit as exc:
        raise ModelError(
            f"loss factory '{ref}' called sys.exit({exc.code!r}) instead of returning a loss; "
            "make it return the loss (a factory must not end the process)"
        ) from None
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        raise ModelError(
            f"loss factory '{ref}' raised {detail}; it is called with no arguments and must "
            "return a loss (an nn.Module or a function of (output, target))"
        ) from exc
    if isinstance(obj, nn.Module):
        return obj
    if callable(obj):
        return FunctionLoss(obj)
    raise ModelError(
        f"loss factory '{ref}' returned {type(obj).__name__}, expected a torch.nn.Module or a "
        "function of (output, target)"
    )


def make_loss(spec: str) -> nn.Module:
    """Build a loss module from ``ce``, ``mse``, ``bce``, ``bce-logits``, ``nll`` (with
    constructor keywords as options) or ``path/to/file.py:name``."""
    if is_factory_ref(spec):
        return _from_factory(spec)
    name, raw = parse_spec(spec, kind="loss")
    if name not in _TABLE:
        raise unknown_name("loss", name, LOSSES)
    cls = _TABLE[name]
    valid = [k for k in inspect.signature(cls.__init__).parameters if k not in _SKIP_KW]
    opts = Options("loss", name, raw, valid=valid)
    if "reduction" in opts:
        opts.opts["reduction"] = opts.get_choice("reduction", "mean", ("mean", "sum", "none"))
    try:
        return cls(**opts.opts)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"invalid option for loss '{name}': {exc}; valid options: {', '.join(valid)}"
        ) from exc


def unwrap_loss(loss: Any) -> Any:
    """The torch loss inside gradmedic's wrappers (:class:`SequenceLoss`, :class:`FunctionLoss`):
    a loss module or a loss function; ``loss`` itself when it wraps nothing.

    >>> type(unwrap_loss(SequenceLoss(nn.CrossEntropyLoss()))).__name__
    'CrossEntropyLoss'
    """
    for _ in range(5):
        if isinstance(loss, SequenceLoss):
            loss = loss.inner
        elif isinstance(loss, FunctionLoss):
            loss = loss.fn
        else:
            break
    return loss


def loss_for(info: DataInfo, spec: str | None = None) -> nn.Module:
    """The loss for a data set: ``spec`` or ``info.default_loss``, wrapped in
    :class:`SequenceLoss` for seq-classification data."""
    loss = make_loss(spec if spec is not None else info.default_loss)
    if info.task == "seq-classification":
        return SequenceLoss(loss)
    return loss
