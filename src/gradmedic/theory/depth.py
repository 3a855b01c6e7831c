"""Depth scales, phase and the predicted end-to-end gradient ratio of a plain deep network.

Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep Information Propagation" (ICLR 2017):
with equal widths ``E[(delta^l)^2] = chi1 E[(delta^{l+1})^2]`` for ``delta^l = dLoss/dh^l``, so

    ||dL/dh^1||^2 / ||dL/dh^L||^2 = chi1^(L-1),     xi_grad = -1 / log(chi1)

(negative ``xi_grad``: exploding). ``xi_q`` is the number of layers for the length to settle,
``xi_c`` the number over which two inputs stay distinguishable (Sec. 3); networks train roughly
iff ``L < 6 xi_c``. ``chi1 < 1`` is the *ordered* phase (gradients vanish), ``chi1 > 1`` the
*chaotic* one (gradients explode).

Example::

    >>> r = predicted_gradient_ratio("relu", 1.0, 0.0, depth=30)
    >>> f"{r.norm_ratio:.2g}"                               # ||dL/dh^1|| / ||dL/dh^30||
    '4.3e-05'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from gradmedic.theory._checks import _check_depth, _check_sb2, _check_sw2, _finite
from gradmedic.theory.activations import Activation
from gradmedic.theory.meanfield import c_star_cached, chi1, chi1_at, q_slope, q_star_cached
from gradmedic.theory.quadrature import e_dphi_dphi
from gradmedic.theory.registry import ActivationLike, as_activation

__all__ = [
    "CRITICAL_TOL",
    "TRAINABLE_XI_C_FACTOR",
    "DepthScales",
    "GradientRatio",
    "depth_scales",
    "depth_scales_cached",
    "phase",
    "predicted_gradient_ratio",
    "xi_c",
    "xi_grad",
    "xi_q",
]

#: ``|chi1 - 1|`` below this counts as critical: xi_grad = -1/log(chi1) is then >= ~1000 layers,
#: so no network of practical depth sees an exponential trend in its gradient norms.
CRITICAL_TOL = 1e-3

#: Schoenholz et al. 2017: networks train roughly iff depth < 6 xi_c.
TRAINABLE_XI_C_FACTOR = 6.0


def _xi(rate: float) -> float:
    """``-1 / log(rate)``: the depth scale of a geometric factor ``rate`` per layer."""
    if math.isnan(rate):
        return math.nan
    rate = abs(rate)
    if rate == 0.0:
        return 0.0
    if rate == 1.0:
        return math.inf
    return -1.0 / math.log(rate)


@dataclass(frozen=True)
class DepthScales:
    """Mean-field quantities at one ``(activation, sw2, sb2)`` (Schoenholz et al. 2017, Sec. 3, 5).

    * ``q_star``: fixed point of the length map;
    * ``chi1``: per-layer factor of ``E[(dL/dh)^2]``;
    * ``c_star``: fixed point of the correlation map (1 in the ordered phase);
    * ``xi_q = -1/log(sw2 E[phi'^2 + phi phi''])``: layers for the length to settle;
    * ``xi_c``: layers over which two inputs stay distinguishable;
      ``-1/log(chi1)`` when ordered, ``-1/log(sw2 E[phi'(u1) phi'(u2)])`` at ``c*`` when chaotic;
      infinite on the critical line;
    * ``xi_grad = -1/log(chi1)``: layers over which ``E[(dL/dh)^2]`` changes by e
      (negative = exploding).
    """

    q_star: float
    chi1: float
    c_star: float
    xi_q: float
    xi_c: float
    xi_grad: float


def depth_scales(act: ActivationLike, sw2: float, sb2: float) -> DepthScales:
    """All depth scales at once (see :class:`DepthScales`).

    Example (theory.md table, tanh, sb2 = 0.05, sw2 = 2)::

        >>> d = depth_scales("tanh", 2.0, 0.05)
        >>> round(d.xi_q, 3), round(d.xi_c, 2), round(d.xi_grad, 2)
        (1.388, 25.21, -21.48)
    """
    a = as_activation(act)
    sw2, sb2 = _check_sw2(sw2), _check_sb2(sb2)
    return depth_scales_cached(a, sw2, sb2)


@lru_cache(maxsize=1024)
def depth_scales_cached(act: Activation, sw2: float, sb2: float) -> DepthScales:
    """:func:`depth_scales` for checked arguments (cached)."""
    q = q_star_cached(act, sw2, sb2, 1.0)
    k = chi1_at(act, sw2, q)
    finite_q = math.isfinite(q)
    xq = _xi(q_slope(act, sw2, q)) if finite_q else math.nan
    cs = c_star_cached(act, sw2, sb2)
    if k <= 1.0:
        xc = _xi(k)
    elif math.isnan(cs):
        xc = math.nan
    elif cs == 1.0:
        xc = math.inf
    else:
        xc = _xi(sw2 * e_dphi_dphi(act, q, cs))
    return DepthScales(q_star=q, chi1=k, c_star=cs, xi_q=xq, xi_c=xc, xi_grad=_xi(k))


def xi_q(act: ActivationLike, sw2: float, sb2: float) -> float:
    """Length depth scale ``xi_q = -1/log(chi1 + sw2 E[phi'' phi])`` at q* (Schoenholz Sec. 3)."""
    return depth_scales(act, sw2, sb2).xi_q


def xi_c(act: ActivationLike, sw2: float, sb2: float) -> float:
    """Correlation depth scale; trainable depth is about ``6 xi_c`` (Schoenholz Sec. 3-4)."""
    return depth_scales(act, sw2, sb2).xi_c


def xi_grad(act: ActivationLike, sw2: float, sb2: float) -> float:
    """Gradient depth scale ``-1/log(chi1)``; negative means exploding (Schoenholz Sec. 5)."""
    return depth_scales(act, sw2, sb2).xi_grad


def phase(
    act: ActivationLike, sw2: float, sb2: float, tol: float = CRITICAL_TOL
) -> Literal["ordered", "critical", "chaotic"]:
    """``"critical"`` if ``|chi1 - 1| < tol``, else ``"ordered"`` (vanishing) or ``"chaotic"``.

    The default ``tol = 1e-3`` puts ``|xi_grad|`` above ~1000 layers.

    Example::

        >>> phase("relu", 2.0, 0.0), phase("tanh", 1.0, 0.05), phase("tanh", 3.0, 0.05)
        ('critical', 'ordered', 'chaotic')
    """
    tol = _finite(tol, "tol", "a tolerance on |chi1 - 1|")
    k = chi1(act, sw2, sb2)
    if abs(k - 1.0) < tol:
        return "critical"
    return "ordered" if k < 1.0 else "chaotic"


@dataclass(frozen=True)
class GradientRatio:
    """Predicted ratio of backward-signal norms between the first and the last layer.

    With ``L = depth`` pre-activation layers ``h^1 .. h^L`` of equal width (Schoenholz 2017):

    * ``sq_norm_ratio = ||dL/dh^1||^2 / ||dL/dh^L||^2 = chi1^(L-1)``;
    * ``norm_ratio = ||dL/dh^1|| / ||dL/dh^L|| = sqrt(chi1)^(L-1)``;
    * ``log10_norm_ratio``: the same in decades (finite even when the ratio under- or overflows);
    * ``layer_gain = sqrt(chi1)``: the norm factor per layer.

    ``< 1`` means vanishing towards the input, ``> 1`` exploding.
    """

    depth: int
    chi1: float
    layer_gain: float
    norm_ratio: float
    sq_norm_ratio: float
    log10_norm_ratio: float


def predicted_gradient_ratio(
    act: ActivationLike, sw2: float, sb2: float, depth: int
) -> GradientRatio:
    """Mean-field prediction of ``||dL/dh^1|| / ||dL/dh^depth||`` (see :class:`GradientRatio`).

    Example (reference case 8, 30-layer ReLU MLP)::

        >>> f"{predicted_gradient_ratio('relu', 1 / 3, 0.0, 30).norm_ratio:.2g}"
        '5.2e-12'
    """
    depth = _check_depth(depth)
    k = chi1(act, sw2, sb2)
    n = depth - 1
    log10 = 0.5 * n * math.log10(k) if k > 0 else (-math.inf if n > 0 else 0.0)
    with np.errstate(over="ignore", under="ignore"):
        sq = float(np.float64(k) ** n)
        nr = float(np.float64(math.sqrt(k)) ** n)
    return GradientRatio(
        depth=depth,
        chi1=k,
        layer_gain=math.sqrt(k),
        norm_ratio=nr,
        sq_norm_ratio=sq,
        log10_norm_ratio=log10,
    )
