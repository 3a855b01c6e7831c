"""What a model outputs: logits, probabilities or log-probabilities (read by the static checks,
:mod:`gradmedic.diagnosis.static`).

Read from a forward pass on a real batch when one is given (probabilities: entries in [0, 1]
summing to 1; log-probabilities: entries <= 0 whose ``logsumexp`` is 0), otherwise from the last
module of an ``nn.Sequential``. A Softmax followed by a module named like a log is
``log-of-probs``: the unstable ``log(softmax(z))``.

Example::

    >>> import torch
    >>> output_kind(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=-1)))
    'probs-softmax'
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["output_kind"]


def _last_leaf(model: nn.Module) -> nn.Module | None:
    """The module that produces the output of nested ``nn.Sequential`` models, else None."""
    m = model
    while isinstance(m, nn.Sequential) and len(m) > 0:
        m = m[-1]
    if m is model and not isinstance(model, nn.Sequential):
        return None
    return m


def _is_softmax_then_log(model: nn.Module) -> bool:
    """A Softmax followed by a parameter-free module named like a log (``Log``, ``SafeLog``)."""
    if not isinstance(model, nn.Sequential):
        return False
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    if len(leaves) < 2:
        return False
    a, b = leaves[-2], leaves[-1]
    name = type(b).__name__.lower()
    return (
        isinstance(a, nn.Softmax)
        and "log" in name
        and not isinstance(b, (nn.LogSoftmax, nn.LogSigmoid))
        and not any(True for _ in b.parameters())
    )


def _classify_tensor(out: torch.Tensor) -> str:
    out = out.detach().float()
    if not torch.isfinite(out).all() or out.numel() == 0:
        return "unknown"
    multi = out.dim() >= 2 and out.shape[-1] > 1
    if bool(((out >= 0) & (out <= 1)).all()):
        if multi and torch.allclose(out.sum(-1), torch.ones(()), atol=1e-3):
            return "probs-softmax"
        return "probs"
    if multi and bool((out <= 0).all()):
        lse = torch.logsumexp(out, dim=-1)
        if torch.allclose(lse, torch.zeros(()), atol=1e-3):
            return "logprobs"
    return "logits"


def output_kind(model: nn.Module, sample: torch.Tensor | None = None) -> str:
    """What the model outputs: ``logits``, ``probs`` (sigmoid-like), ``probs-softmax``,
    ``logprobs``, ``log-of-probs`` (a Softmax then a log: unstable) or ``unknown``."""
    leaf = _last_leaf(model)
    if _is_softmax_then_log(model):
        return "log-of-probs"
    if sample is not None:
        was = model.training
        try:
            model.eval()
            with torch.no_grad():
                out = model(sample)
            if isinstance(out, (tuple, list)):
                out = out[0]
            kind = _classify_tensor(out) if isinstance(out, torch.Tensor) else "unknown"
        except Exception:
            kind = "unknown"
        finally:
            model.train(was)
        if kind == "logprobs" and isinstance(leaf, nn.Softmax):
            return "log-of-probs"
        if kind != "unknown":
            return kind
    if isinstance(leaf, nn.Sigmoid):
        return "probs"
    if isinstance(leaf, (nn.Softmax, nn.Softmax2d)):
        return "probs-softmax"
    if isinstance(leaf, nn.LogSoftmax):
        return "logprobs"
    if leaf is not None:
        return "logits"
    return "unknown"
