"""Prescriptions that work by our own theory, each with the effect it is predicted to have.

Before a rule prescribes a re-initialisation or an activation swap for a plain stack it asks
mean-field theory what the stack would do afterwards: the backward signal crosses each weight
layer ``i`` and the activation before it with gain ``sqrt(chi1_i)``,
``chi1_i = sw2_i E[phi_{i-1}'(sqrt(q*) z)^2]`` (Poole et al. 2016; Schoenholz et al. 2017,
Sec. 5), so the first/last ratio is ``prod sqrt(chi1_i)``. A remedy changes ``sw2`` (``reinit``:
xavier ``2 fan_in / (fan_in + fan_out)``, kaiming/orthogonal ``gain(phi)^2``, critical the
``sw2`` with ``chi1 = 1``; He et al. 2015, Glorot & Bengio 2010) or ``phi`` (``swap-activation``).
A candidate is printed only when the predicted ratio lies within ``10^+-3`` (:data:`WORKS_DECADES`,
where neither the vanishing nor the exploding warning fires), and carries the prediction in
``predicted``; the rejected ones are listed with theirs. So a deep sigmoid stack is not told
"Xavier": at ``sw2 = 1`` theory predicts ``sqrt(0.0557)^(L-1)`` (1.2e-12 over 20 layers).

Example::

    >>> stack = [Layer("0", None, 1 / 3, 0.0, 100, 100)]
    >>> stack += [Layer(str(i), "sigmoid", 1 / 3, 0.0, 100, 100) for i in range(1, 20)]
    >>> f"{10 ** predict(stack, scheme='xavier')['log10_ratio']:.1e}"
    '1.2e-12'
    >>> predict(stack, to="leaky_relu", scheme="kaiming")["ratio"]   # the head has gain 1: 1/sqrt 2
    0.707
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.thresholds import PRACTICAL_CRITICAL_SW2, VANISH_WARNING
from gradmedic.nn.init_gain import activation_gain
from gradmedic.nn.taxonomy import module_category
from gradmedic.theory import chi1, critical_sigma_w2
from gradmedic.theory.gains import theory_activation

__all__ = [
    "WORKS_DECADES",
    "Layer",
    "choose",
    "fans",
    "init_remedies",
    "keep_applicable",
    "path_stack",
    "predict",
    "scheme_sw2",
    "stack_of",
    "works",
]

#: A remedy "works" when theory puts the end-to-end ratio within 10^+-this: the vanishing
#: (:data:`~gradmedic.diagnosis.thresholds.VANISH_WARNING`) and exploding warnings stay silent.
WORKS_DECADES = -math.log10(VANISH_WARNING)
_THEORY_SPEC = {"leaky_relu": "leaky_relu(0.01)", "elu": "elu(alpha=1.0)"}
_BASIS = "mean-field theory: prod sqrt(chi1) over the crossed layers (Schoenholz et al. 2017)"


@dataclass(frozen=True)
class Layer:
    """A weight layer on the path and the activation before it (``act``: theory spec, None for
    none/linear), its ``sw2 = fan_in Var(W)``, ``sb2`` and fans."""

    weight: str
    act: str | None
    sw2: float
    sb2: float
    fan_in: int
    fan_out: int


def path_stack(ctx: Context, path: list[str]) -> list[Layer]:
    """The weight layers of ``path`` (model order), each with the modelled activation met
    since the previous weight layer (None when there is none or theory has no model of it)."""
    return stack_of([(name, ctx.infos.get(name, {})) for name in path])


def stack_of(modules: list[tuple[str, dict[str, Any]]]) -> list[Layer]:
    """:func:`path_stack` over ``(name, module facts)`` in model order (the module table's
    facts, e.g. :func:`gradmedic.workflows.checkup.model_infos`); ``[]`` when a weight layer's
    ``sw2`` is not a positive number."""
    out: list[Layer] = []
    act: str | None = None
    for name, info in modules:
        cat = module_category(info)
        if cat == "activation":
            act = theory_activation(info)
        elif cat == "weight" and info.get("sw2") is not None:
            sw2 = float(info["sw2"])
            if not math.isfinite(sw2) or sw2 <= 0:
                return []
            fi, fo = fans(info)
            out.append(Layer(name, act, sw2, float(info.get("sb2") or 0.0), fi, fo))
            act = None
    return out


def fans(info: dict[str, Any]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` as ``torch.nn.init`` counts them. The module table records a
    convolution's ``fan_out`` as its output channels; torch's is ``c_out k^2``, taken here as
    ``fan_in = c_in k^2`` (equal channel counts, the usual stacked conv)."""
    fi, fo = int(info.get("fan_in", 1) or 1), int(info.get("fan_out", 1) or 1)
    if str(info.get("type", "")).startswith("Conv"):
        fo = fi
    return fi, fo


def scheme_sw2(scheme: str, act: str | None, fan_in: int, fan_out: int) -> float | None:
    """``sw2`` a ``reinit(scheme=...)`` gives a layer followed by ``act`` (None: linear), as
    :mod:`gradmedic.remedies.init` draws it; None for data-driven schemes (lsuv).

    >>> scheme_sw2("kaiming", "relu", 64, 64), scheme_sw2("xavier", "relu", 64, 192)
    (2.0000000000000004, 0.5)
    """
    spec = act or "linear"
    if scheme in ("xavier", "xavier_normal"):
        return 2.0 * fan_in / (fan_in + fan_out)
    if scheme in ("kaiming", "orthogonal"):
        return activation_gain(spec.split("(")[0]) ** 2
    if scheme == "critical":
        try:
            crit = 1.0 if spec == "linear" else float(critical_sigma_w2(spec, 0.0))
        except Exception:
            return None
        return crit if math.isfinite(crit) and crit <= PRACTICAL_CRITICAL_SW2 else None
    return None


def predict(
    stack: list[Layer], *, to: str | None = None, scheme: str | None = None
) -> dict[str, Any] | None:
    """Theory's end-to-end ratio of ``stack`` after swapping every activation ``to`` and/or
    re-initialising with ``scheme`` (None: unchanged): ``log10_ratio``, ``ratio``,
    ``chi1_median``, ``sw2_median``, ``layers_crossed``, ``basis``; None when theory has no
    model for it (an unmodelled activation, a data-driven scheme)."""
    if len(stack) < 2:
        return None
    new = [replace(s, act=_THEORY_SPEC.get(to, to)) if to and s.act else s for s in stack]
    # the activation after each layer decides its init gain: it is the next layer's ``act``
    follows = [s.act for s in new[1:]] + [None]
    if scheme is not None:
        sws = [
            scheme_sw2(scheme, a, s.fan_in, s.fan_out) for s, a in zip(new, follows, strict=True)
        ]
        if any(v is None for v in sws):
            return None
        new = [replace(s, sw2=float(v), sb2=0.0) for s, v in zip(new, sws, strict=True)]  # type: ignore[arg-type]
    logs, chis = [], []
    for s in new[1:]:
        try:
            c = float(chi1(s.act or "linear", s.sw2, s.sb2))
        except Exception:
            return None
        chis.append(c)
        logs.append(0.5 * math.log10(c) if c > 0 else -math.inf)
    lg = float(sum(logs))
    chis.sort()
    sws = sorted(s.sw2 for s in new)
    return {
        "log10_ratio": round(lg, 3),
        "ratio": float(f"{10**lg:.3g}") if -300 < lg < 300 else (0.0 if lg < 0 else math.inf),
        "chi1_median": round(chis[len(chis) // 2], 4),
        "sw2_median": round(sws[len(sws) // 2], 4),
        "layers_crossed": len(new) - 1,
        "basis": _BASIS,
    }


def works(pred: dict[str, Any] | None) -> bool:
    """Whether a prediction stays within :data:`WORKS_DECADES` of a ratio of 1."""
    return pred is not None and abs(pred["log10_ratio"]) < WORKS_DECADES


def _text(pred: dict[str, Any]) -> str:
    return (
        f"predicted ratio 10^{pred['log10_ratio']:.1f} over {pred['layers_crossed']} layers "
        f"(chi1 = {pred['chi1_median']:.3g})"
    )


def choose(
    stack: list[Layer], candidates: list[tuple[Prescription, str | None, str | None]]
) -> tuple[list[Prescription], dict[str, str]]:
    """Keep the candidates ``(prescription, swap to, scheme)`` that :func:`works` predicts to
    fix ``stack``, each with its prediction in ``predicted`` and its reason; return them and
    ``{spec: why rejected}`` for the others. Without a stack (theory has no model) every
    candidate is kept, marked as unpredicted."""
    kept: list[Prescription] = []
    rejected: dict[str, str] = {}
    for p, to, scheme in candidates:
        pred = predict(stack, to=to, scheme=scheme) if stack else None
        if pred is None:
            kept.append(replace(p, predicted={"basis": "no mean-field model for this stack"}))
        elif works(pred):
            kept.append(replace(p, predicted=pred, reason=f"{p.reason}; {_text(pred)}"))
        else:
            rejected[str(p)] = _text(pred)
    return kept, rejected


def init_remedies(
    stack: list[Layer], act: str | None, *, dead: bool = False
) -> tuple[list[Prescription], dict[str, str]]:
    """The weight-scale and activation remedies for a plain stack whose main activation is
    ``act``, kept only where theory predicts they work (:func:`choose`): the scheme made for
    ``act`` (kaiming for the ReLU family, xavier otherwise), the critical scheme, and for
    squashing activations or ``dead`` units (then first) a swap to leaky ReLU with kaiming
    init."""
    relu_like = act in ("relu", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu")
    own = "kaiming" if relu_like else "xavier"
    swap = (
        Prescription(
            "swap-activation",
            {"to": "leaky_relu"},
            "slope 1 on one side, never 0",
            plus=(Prescription("reinit", {"scheme": "kaiming"}),),
        ),
        "leaky_relu",
        "kaiming",
    )
    cands = [
        (Prescription("reinit", {"scheme": own}, f"{own} scale for {act or 'linear'}"), None, own)
    ]
    impractical: dict[str, str] = {}
    if scheme_sw2("critical", act, 1, 1) is not None:
        cands.append((Prescription("reinit", {"scheme": "critical"}, "chi1 = 1"), None, "critical"))
    elif act is not None:
        impractical["reinit(scheme=critical)"] = (
            f"{act}'s critical sigma_w^2 is beyond {PRACTICAL_CRITICAL_SW2:g}: its units "
            "would sit in the saturated tails"
        )
    if act is not None and act != "leaky_relu" and (dead or not relu_like):
        cands = [swap, *cands] if dead else [*cands, swap]
    kept, rejected = choose(stack, cands)
    rejected.update(impractical)
    own_lg = next(
        (p.predicted.get("log10_ratio") for p in kept if p.params == {"scheme": own}), None
    )
    same = [
        p
        for p in kept
        if p.params == {"scheme": "critical"}
        and own_lg is not None
        and abs(p.predicted.get("log10_ratio", 99) - own_lg) < 0.1
    ]
    return [p for p in kept if p not in same], rejected


def keep_applicable(findings: list[Finding], check: Callable[[str], str | None]) -> list[Finding]:
    """The findings with every prescription that does not apply to the model removed:
    ``check(spec)`` returns None when it applies, else the reason
    (:func:`gradmedic.remedies.registry.spec_applies` bound to the model). Manual
    prescriptions (changes to the user's code or data) are kept. What was removed is listed in
    the finding's ``evidence["not_applicable"]`` as ``{spec: reason}``."""
    out = []
    for f in findings:
        kept, dropped = [], {}
        for p in f.prescriptions:
            why = None if p.manual else check(str(p))
            if why is None:
                kept.append(p)
            else:
                dropped[str(p)] = why
        if dropped:
            f = replace(f, prescriptions=kept, evidence={**f.evidence, "not_applicable": dropped})
        out.append(f)
    return out
