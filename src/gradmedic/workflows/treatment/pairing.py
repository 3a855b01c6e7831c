"""Combinations theory supports: an activation swap carries the init critical for the new
activation.

Swapping sigmoid for ReLU but keeping PyTorch's default init (``sw2 = 1/3``) leaves ReLU at
``chi1 = 1/6``: the signal still vanishes by ``10^-11`` over 30 layers. So every candidate that
swaps an activation is completed with the re-initialisation mean-field theory says is critical
for the *new* activation on *this* model's layers, computed, not looked up:

1. the swap is applied to a copy; its weight layers, the activation before each and their
   ``sw2 = fan_in Var(W)`` are read with :func:`gradmedic.nn.modelinfo.module_facts` and the
   activation registry (:mod:`gradmedic.nn.activations`);
2. for each scheme of :data:`PREFERENCE` the end-to-end ratio is predicted as
   ``prod sqrt(chi1)`` (:func:`gradmedic.diagnosis.prescribe.predict`: ``chi1`` of
   :func:`gradmedic.theory.chi1`, each scheme's ``sw2`` from the init gain of
   :func:`gradmedic.nn.init_gain.activation_gain` or :func:`gradmedic.theory.critical_sigma_w2`);
3. the first scheme predicted within :data:`PAIRING_DECADES` of a ratio of 1 is taken (none
   when the swapped model's own init already is, or when theory has no model of the stack).

:data:`PREFERENCE` puts the variance-preserving ``xavier_normal`` first (on equal widths it is
LeCun normal, ``Var W = 1/fan_in``: critical for tanh and SELU's own choice), then ``kaiming``
(the activation's gain: ReLU ``sqrt 2``), ``orthogonal``, and the exact critical ``sw2``. So
ReLU gets Kaiming, tanh and SELU get Xavier/LeCun normal, GELU and SiLU get Kaiming with their
own gains, and sigmoid gets nothing (no scheme reaches its critical ``sw2 ~ 100``).

Example::

    >>> from torch import nn
    >>> net = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(32, 32), nn.Sigmoid())])
    >>> consistent(["swap-activation(to=relu)"], net)
    ['swap-activation(to=relu)', 'reinit(scheme=kaiming)']
    >>> consistent(["swap-activation(to=tanh)", "reinit(scheme=kaiming)"], net)
    ['swap-activation(to=tanh)', 'reinit(scheme=xavier_normal)']
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from torch import nn

from gradmedic._callspec import parse_call
from gradmedic.diagnosis.prescribe import Layer, path_stack, predict
from gradmedic.errors import GradmedicError
from gradmedic.nn.activations import kind_of
from gradmedic.nn.modelinfo import module_facts
from gradmedic.remedies import apply, canonical_order

__all__ = ["PAIRING_DECADES", "PREFERENCE", "consistent", "critical_init", "model_stack"]

#: Init schemes in order of preference (see the module docstring).
PREFERENCE: tuple[str, ...] = ("xavier_normal", "kaiming", "orthogonal", "critical")
#: A scheme is critical enough when theory puts the first/last ratio within 10^+-this.
PAIRING_DECADES = 1.0


def model_stack(model: nn.Module) -> list[Layer]:
    """The weight layers of ``model`` in module order, each with the activation before it (its
    theory spec) and its init scale, as :func:`gradmedic.diagnosis.prescribe.path_stack` reads
    them from a trace."""
    leaves = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    infos: dict[str, dict[str, Any]] = {}
    for name, mod in leaves:
        kind = kind_of(mod)
        infos[name] = {
            **module_facts(mod),
            "type": type(mod).__name__,
            "activation": kind.name if kind is not None else None,
        }
    return path_stack(SimpleNamespace(infos=infos), [n for n, _ in leaves])


def critical_init(model: nn.Module) -> tuple[str | None, dict[str, float | None]]:
    """(the scheme to re-initialise ``model`` with, or None when its own init is already within
    :data:`PAIRING_DECADES` or no scheme is; the predicted log10 first/last ratio of its own
    init (key ``"current"``) and of each scheme of :data:`PREFERENCE`)."""
    stack = model_stack(model)
    preds: dict[str, float | None] = {}
    for key, scheme in [("current", None), *((s, s) for s in PREFERENCE)]:
        p = predict(stack, scheme=scheme) if len(stack) >= 2 else None
        preds[key] = None if p is None else float(p["log10_ratio"])
    now = preds["current"]
    if now is None or abs(now) <= PAIRING_DECADES:
        return None, preds
    for scheme in PREFERENCE:
        v = preds[scheme]
        if v is not None and abs(v) <= PAIRING_DECADES:
            return scheme, preds
    return None, preds


def _name(spec: str) -> str:
    return parse_call(spec, what="remedy")[0]


def consistent(specs: list[str], model: nn.Module) -> list[str]:
    """``specs`` with the init theory makes critical for any activation they swap in: a
    ``reinit`` they carry is replaced by the scheme of :func:`critical_init` on ``model`` after
    the other remedies (or dropped when that init is already critical), in canonical order; specs without a
    ``swap-activation``, or whose result theory cannot predict, are returned unchanged."""
    names = [_name(s) for s in specs]
    if "swap-activation" not in names:
        return list(specs)
    rest = [s for s, n in zip(specs, names, strict=True) if n != "reinit"]
    try:
        swapped, _ = apply(model, rest)
    except GradmedicError:
        return list(specs)
    scheme, preds = critical_init(swapped)
    if scheme is None:
        if preds["current"] is not None and abs(preds["current"]) <= PAIRING_DECADES:
            return rest  # the swapped model's own init is already critical
        return list(specs)
    return canonical_order([*rest, f"reinit(scheme={scheme})"])
