"""What the initialisation predicts for the backward signal, layer by layer.

For a weight layer ``h = W x + b`` with ``W`` of shape (fan_out, fan_in) and i.i.d. entries of
variance ``Var(W)``, the backward pass computes ``dL/dx = W^T dL/dh`` and, averaging over ``W``,

    E ||W^T delta||^2 = fan_in Var(W) ||delta||^2 = sw2 ||delta||^2,

so the predicted gain of the layer is ``sqrt(sw2)`` whatever its fan-out (the same holds for a
convolution whose input and output have the same spatial size, ``fan_in = c_in k^2``). An
elementwise activation multiplies the signal by ``phi'(h)``; for pre-activations
``h ~ N(0, q)`` independent of the signal its gain is ``sqrt(E[phi'(sqrt(q) z)^2])``. A
Linear+activation pair thus has gain ``sqrt(sw2 E[phi'^2]) = sqrt(chi1)`` at the fixed point
``q*`` (Poole et al. 2016; Schoenholz et al. 2017, Sec. 5), and a plain stack of L such layers
``sqrt(chi1)^(L-1)`` end to end.

With the measured ``q`` (the Monitor's ``preact_ms``) this is a finite-width predictor of the
measured gain: at width N its relative error is about ``1/sqrt(N)`` per layer (independence of
W and the signal holds only on average; Glorot & Bengio 2010 make the same assumption).

This module is the single source of theory's per-module numbers: the diagnosis's per-layer
table (:func:`gradmedic.diagnosis.table.layer_table`), and through it the terminal view, the
HTML/JSON report and the report's figures, all read them from here.

A transposed convolution has no prediction: its weight ``(c_in, c_out, k...)`` gives
``sw2 = c_out k^2 Var(W)``, but each input entry feeds ``k^2`` output entries while there are
``prod(stride)`` times more outputs than inputs, so its gain is ``sqrt(sw2 / prod(stride))``,
and the trace does not record the stride (measured at stride 2: 0.289 against
``sqrt(sw2)`` = 0.578).

Example::

    >>> round(module_predicted_gain({"type": "Linear", "sw2": 2.0}, None), 4)
    1.4142
    >>> round(module_predicted_gain({"type": "ReLU", "activation": "relu"}, 1.0), 4)
    0.7071
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gradmedic.theory.critical import critical_sigma_w2
from gradmedic.theory.depth import phase
from gradmedic.theory.meanfield import chi1
from gradmedic.theory.quadrature import e_dphi, e_dphi_sq

__all__ = [
    "InitPrediction",
    "PairPrediction",
    "init_predictions",
    "module_predicted_gain",
    "module_predicted_slope",
    "theory_activation",
]

#: Modules whose backward pass passes the signal through unchanged.
_IDENTITY_TYPES = frozenset({"Flatten", "Unflatten", "Identity"})


def theory_activation(info: dict[str, Any]) -> str | None:
    """The :func:`gradmedic.theory.get_activation` spec of a module's activation, or None when
    theory does not model it (PReLU, ReLU6, GELU's tanh approximation, ...).

    The Monitor records the spec with the activation's own parameters (``info["theory"]``, from
    :func:`gradmedic.nn.activations.theory_spec_from`), so ``Softplus(beta=2)`` and
    ``Hardtanh(-2, 2)`` are predicted for their parameters. Traces written before that field
    existed fall back to the parameter-free name.
    """
    if "theory" in info:
        spec = info["theory"]
        return spec if isinstance(spec, str) and spec else None
    name = info.get("activation")
    if name in ("sigmoid", "tanh", "relu", "selu", "gelu", "silu", "softsign", "mish", "hardswish"):
        return name
    if name == "leaky_relu":
        return f"leaky_relu({float(info.get('negative_slope', 0.01))})"
    if name == "elu":
        return f"elu(alpha={float(info.get('alpha', 1.0))})"
    return None


@functools.lru_cache(maxsize=4096)
def _dphi_sq(spec: str, q: float) -> float:
    return float(e_dphi_sq(spec, q))


@functools.lru_cache(maxsize=4096)
def _dphi(spec: str, q: float) -> float:
    return float(e_dphi(spec, q))


def _activation_expectation(
    info: dict[str, Any], q: float | None, expect: Callable[[str, float], float]
) -> float | None:
    """``expect(spec, q)`` for a modelled activation at a valid measured ``q``, else None.

    ``q`` is used exactly as measured (the cache key is the float itself: one trace asks for the
    same ``q`` many times, two layers almost never share one)."""
    spec = theory_activation(info)
    if spec is None or q is None or not math.isfinite(q) or q < 0:
        return None
    try:
        return expect(spec, float(q))
    except Exception:  # theory refuses exotic inputs: no prediction rather than a crash
        return None


def module_predicted_gain(info: dict[str, Any], q: float | None) -> float | None:
    """Predicted backward gain ``||dL/dx|| / ||dL/dy||`` of one module at initialisation.

    ``sqrt(sw2)`` for Linear/Conv layers (``sw2`` = fan_in Var(W) from the trace's module
    info), ``sqrt(E[phi'(sqrt(q) z)^2])`` for an activation with pre-activation mean square
    ``q``, 1 for Flatten/Identity, None otherwise (normalisation, pooling, recurrent layers,
    transposed convolutions, unknown activations).
    """
    t = str(info.get("type", ""))
    if "sw2" in info and t not in ("RNN", "LSTM", "GRU"):
        sw2 = info["sw2"]
        if t.startswith("ConvTranspose") or sw2 is None or sw2 < 0:
            return None  # transposed conv: the gain also depends on the unrecorded stride
        return math.sqrt(sw2)
    if t in _IDENTITY_TYPES:
        return 1.0
    e2 = _activation_expectation(info, q, _dphi_sq)
    return None if e2 is None else math.sqrt(max(e2, 0.0))


def module_predicted_slope(info: dict[str, Any], q: float | None) -> float | None:
    """Theory's mean local slope ``E[phi'(sqrt(q) z)]`` of an activation module whose
    pre-activation has mean square ``q`` (the Monitor's ``dphi_mean`` estimates it), or None
    when theory does not model the activation or ``q`` is missing.

    >>> module_predicted_slope({"type": "ReLU", "activation": "relu"}, 2.0)
    0.5
    """
    return _activation_expectation(info, q, _dphi)


@dataclass
class PairPrediction:
    """One weight layer and the activation after it, as mean-field theory sees them at init."""

    weight: str
    activation: str
    act_spec: str
    sw2: float
    sb2: float
    chi1: float
    critical_sw2: float | None
    phase: str


@dataclass
class InitPrediction:
    """Init-time prediction for a plain stack of weight+activation pairs.

    ``ratio`` = predicted ``||dL/dh^1|| / ||dL/dh^L||`` = product of ``sqrt(chi1)`` over the
    pairs the signal crosses (all but the first), or None when the stack has no pair theory
    models. ``normalised`` is True when a normalisation layer sits between a weight layer and
    its activation (theory's chi1 does not apply then).
    """

    pairs: list[PairPrediction] = field(default_factory=list)
    ratio: float | None = None
    log10_ratio: float | None = None
    normalised: bool = False
    n_weighted: int = 0


@functools.lru_cache(maxsize=1024)
def _pair_theory(spec: str, sw2: float, sb2: float) -> tuple[float, float | None, str]:
    k = float(chi1(spec, sw2, sb2))
    try:
        crit = float(critical_sigma_w2(spec, sb2))
    except Exception:  # no critical point (e.g. activations whose chi1 never reaches 1)
        crit = None
    ph = str(phase(spec, sw2, sb2))
    return k, crit, ph


def init_predictions(
    modules: Iterable[Mapping[str, Any]], category: Callable[[Mapping[str, Any]], str]
) -> InitPrediction:
    """Pair each weight layer with the activation that follows it (model order) and predict.

    ``modules`` is a list of module-info dicts in model order (``name``, ``type``,
    ``activation``, ``sw2``, ``sb2``, ...), as :func:`gradmedic.diagnosis.table.module_infos`
    gives them. ``category(info)`` names each module's kind; only ``"weight"``,
    ``"activation"`` and ``"norm"`` matter here. Pass
    :func:`gradmedic.nn.taxonomy.module_category` (theory stays free of :mod:`gradmedic.nn`).
    Pairs whose activation theory does not model are skipped; theory's chi1 follows
    Schoenholz et al. 2017, Sec. 5.

    Example (Linear-ReLU-Linear-ReLU-Linear at PyTorch's default ``sw2 = 1/3``: two pairs, each
    crossed with gain ``sqrt(chi1) = sqrt(1/6)``)::

        >>> kind = lambda i: "weight" if "sw2" in i else "activation"
        >>> relu, lin = {"activation": "relu"}, {"sw2": 1 / 3}
        >>> p = init_predictions([lin, relu, lin, relu, lin], kind)
        >>> len(p.pairs), p.n_weighted, round(p.ratio, 5), p.pairs[0].phase
        (2, 3, 0.16667, 'ordered')
    """
    out = InitPrediction()
    current: Mapping[str, Any] | None = None
    normed = False
    for info in modules:
        cat = category(info)
        if cat == "weight":
            out.n_weighted += 1
            current, normed = info, False
        elif cat == "norm":
            normed = current is not None
            out.normalised = out.normalised or normed
        elif cat == "activation" and current is not None:
            spec = theory_activation(info)
            if spec is not None and not normed:
                sw2 = round(float(current.get("sw2", 0.0)), 6)
                sb2 = round(float(current.get("sb2", 0.0) or 0.0), 6)
                try:
                    k, crit, ph = _pair_theory(spec, sw2, sb2)
                except Exception:
                    current = None
                    continue
                out.pairs.append(
                    PairPrediction(
                        weight=str(current.get("name", "")),
                        activation=str(info.get("name", "")),
                        act_spec=spec,
                        sw2=sw2,
                        sb2=sb2,
                        chi1=k,
                        critical_sw2=crit,
                        phase=ph,
                    )
                )
            current = None
    # Going backwards from the last weight layer the signal crosses activation k and then weight
    # layer k+1 for every pair: (L-1) factors sqrt(chi1) for L weight layers.
    crossing = out.pairs
    if out.pairs:
        logs = [0.5 * math.log10(p.chi1) if p.chi1 > 0 else -math.inf for p in crossing]
        out.log10_ratio = float(sum(logs))
        out.ratio = (
            10.0**out.log10_ratio
            if -300 < out.log10_ratio < 300
            else (0.0 if out.log10_ratio < 0 else math.inf)
        )
    return out
