"""Static checks of the output layer and the loss: pairings that make gradients unstable.

A probability computed first and logged later loses everything below float precision:
``log(sigmoid(z))`` for ``z = -100`` is ``log(3.7e-44)`` in float32, i.e. 0 -> ``-inf`` (BCELoss
clamps it to -100, so the gradient is 0 there), while the fused forms
(``BCEWithLogitsLoss``, ``CrossEntropyLoss`` = ``log_softmax`` + ``NLLLoss``) compute
``log sigmoid(z) = -softplus(-z)`` and ``log_softmax(z) = z - logsumexp(z)`` exactly.
Applying the squashing twice (Softmax into CrossEntropyLoss, Sigmoid into BCEWithLogitsLoss)
multiplies the logit gradient by the softmax/sigmoid Jacobian a second time: at most 1/4 for a
sigmoid, and the loss can no longer reach 0 (article section 1.2).

What the model outputs is read by :func:`gradmedic.diagnosis.outputs.output_kind`. The fix is
``fix-loss`` when the model ends in a Sigmoid/Softmax module it can fuse into the loss; when
the squashing is a functional call (``F.log_softmax`` in ``forward``) the fix is the user's:
return the logits (a ``manual`` prescription).

Example::

    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Sigmoid())
    >>> [f.slug for f in static_checks(m, torch.nn.BCELoss())]
    ['unstable-loss-pairing']
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.outputs import output_kind
from gradmedic.diagnosis.registry import rule

__all__ = ["output_kind", "static_checks"]

_FN_LOSSES = {
    F.binary_cross_entropy: "BCELoss",
    F.binary_cross_entropy_with_logits: "BCEWithLogitsLoss",
    F.cross_entropy: "CrossEntropyLoss",
    F.nll_loss: "NLLLoss",
    F.kl_div: "KLDivLoss",
}


def _loss_name(loss: Any) -> str | None:
    """The torch loss class name behind ``loss`` (unwrapping gradmedic's wrappers)."""
    seen = 0
    while loss is not None and seen < 5:
        seen += 1
        inner = getattr(loss, "inner", None)
        if inner is not None:
            loss = inner
            continue
        fn = getattr(loss, "fn", None)
        if fn is not None and not isinstance(loss, nn.modules.loss._Loss):
            loss = fn
            continue
        break
    if isinstance(loss, nn.Module):
        return type(loss).__name__
    return _FN_LOSSES.get(loss)


def _finding(
    severity: str,
    title: str,
    cause: str,
    layer: str,
    loss: str,
    kind: str,
    to: str,
    extra: dict[str, Any] | None = None,
) -> Finding:
    evidence = {"loss": loss, "model_output": kind, "stable_replacement": to}
    evidence.update(extra or {})
    return Finding(
        slug="unstable-loss-pairing",
        severity=severity,
        title=title,
        cause=cause,
        layers=[layer] if layer else [],
        evidence=evidence,
        prescriptions=[Prescription("fix-loss", {"to": to}, reason=f"use {to} on raw logits")],
    )


@rule(slug="unstable-loss-pairing", kind="static", priority=90)
def static_checks(
    model: nn.Module, loss: Any = None, *, sample: torch.Tensor | None = None
) -> list[Finding]:
    """Check the pairing of the model's output with the loss; returns findings (maybe none).

    ``loss``: an ``nn.Module`` loss, a gradmedic wrapper around one, or a functional loss
    (``F.binary_cross_entropy``, ...); None skips the check. ``sample``: an input batch used to
    classify the output by value (optional; without it only ``nn.Sequential`` models whose
    last module is a Sigmoid/Softmax/LogSoftmax are recognised).

    Reported (slug ``unstable-loss-pairing``): Sigmoid into BCELoss (use ``bce-logits``),
    Sigmoid into BCEWithLogitsLoss (sigmoid twice), Softmax into CrossEntropyLoss (softmax
    twice), Softmax into NLLLoss (no log), raw scores into NLLLoss, Softmax then log into
    NLLLoss (unstable log), LogSoftmax into CrossEntropyLoss (redundant; info only, since
    ``log_softmax`` is idempotent and the result is exact).
    """
    if loss is None or not isinstance(model, nn.Module):
        return []
    name = _loss_name(loss)
    if name is None:
        return []
    kind = output_kind(model, sample)
    leaves = [n for n, m in model.named_modules() if not any(True for _ in m.children())]
    last = leaves[-1] if leaves else ""
    out: list[Finding] = []
    if name == "BCELoss" and kind in ("probs", "probs-softmax"):
        out.append(
            _finding(
                "warning",
                "Sigmoid output into BCELoss",
                "BCELoss takes log(sigmoid(z)) of an already rounded probability, so for "
                "confident outputs the log underflows (clamped at -100) and the gradient "
                "vanishes; BCEWithLogitsLoss computes the same loss from the logits exactly.",
                last,
                name,
                kind,
                "bce-logits",
            )
        )
    elif name == "BCEWithLogitsLoss" and kind in ("probs", "probs-softmax"):
        out.append(
            _finding(
                "warning",
                "Sigmoid applied twice (Sigmoid output into BCEWithLogitsLoss)",
                "BCEWithLogitsLoss applies its own sigmoid, so a sigmoid in the model squashes "
                "the logits twice: the gradient is scaled by sigmoid' <= 1/4 once more and the "
                "loss cannot reach 0; remove the model's final Sigmoid.",
                last,
                name,
                kind,
                "bce-logits",
            )
        )
    elif name == "CrossEntropyLoss" and kind == "probs-softmax":
        out.append(
            _finding(
                "warning",
                "Softmax applied twice (Softmax output into CrossEntropyLoss)",
                "CrossEntropyLoss applies log_softmax itself, so a Softmax in the model squashes "
                "the logits twice: gradients shrink by the softmax Jacobian and the loss cannot "
                "fall below log(1 + (C-1)/e) (1.46 for 10 classes); feed raw logits.",
                last,
                name,
                kind,
                "ce",
            )
        )
    elif name == "CrossEntropyLoss" and kind in ("logprobs", "log-of-probs"):
        out.append(
            _finding(
                "info" if kind == "logprobs" else "warning",
                "LogSoftmax output into CrossEntropyLoss (log_softmax applied twice)",
                "CrossEntropyLoss applies log_softmax itself; log_softmax is idempotent, so the "
                "result is exact but the extra layer is redundant (a softmax-then-log is not "
                "and underflows); feed raw logits.",
                last,
                name,
                kind,
                "ce",
            )
        )
    elif name == "NLLLoss" and kind in ("probs", "probs-softmax"):
        out.append(
            _finding(
                "warning",
                "Probabilities into NLLLoss (the log is missing)",
                "NLLLoss expects log-probabilities; on probabilities it minimises -p_y, whose "
                "gradient vanishes as p_y saturates; use CrossEntropyLoss on the logits.",
                last,
                name,
                kind,
                "ce",
            )
        )
    elif name == "NLLLoss" and kind == "log-of-probs":
        out.append(
            _finding(
                "warning",
                "Softmax then log into NLLLoss",
                "log(softmax(z)) underflows to -inf (NaN gradients) once a probability rounds to "
                "0; log_softmax or CrossEntropyLoss on the logits computes z - logsumexp(z) "
                "exactly.",
                last,
                name,
                kind,
                "ce",
            )
        )
    elif name == "NLLLoss" and kind == "logits":
        out.append(
            _finding(
                "warning",
                "Raw scores into NLLLoss (no log_softmax)",
                "NLLLoss on unnormalised scores is -z_y, unbounded below, so the logits grow "
                "without limit; use CrossEntropyLoss (log_softmax + NLLLoss) on the logits.",
                last,
                name,
                kind,
                "ce",
            )
        )
    elif name == "KLDivLoss" and kind in ("probs", "probs-softmax"):
        out.append(
            _finding(
                "warning",
                "Probabilities into KLDivLoss",
                "KLDivLoss expects log-probabilities as input; on probabilities the loss and its "
                "gradient are wrong; apply log_softmax instead of softmax.",
                last,
                name,
                kind,
                "ce",
            )
        )
    mods = dict(model.named_modules())
    if not isinstance(mods.get(last), (nn.Sigmoid, nn.Softmax)):
        out = [replace(f, prescriptions=[_by_hand(f.evidence["stable_replacement"])]) for f in out]
    return out


def _by_hand(to: str) -> Prescription:
    """The fix when no final Sigmoid/Softmax module can be fused away (a functional call or a
    missing log): the user returns the logits and uses the fused loss."""
    fused = {"ce": "CrossEntropyLoss", "bce-logits": "BCEWithLogitsLoss"}[to]
    why = f"return the raw logits from forward (no final softmax/sigmoid call); train with {fused}"
    return Prescription("output-logits", {"loss": fused}, why, manual=True)
