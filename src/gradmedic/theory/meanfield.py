"""The mean-field maps of a wide random network: length map, ``q*``, ``chi1``, correlation map, ``c*``.

Notation (Poole et al., "Exponential expressivity in deep neural networks through transient
chaos", NeurIPS 2016; Schoenholz et al., "Deep Information Propagation", ICLR 2017):
``h^l = W^l phi(h^{l-1}) + b^l`` with ``W_ij ~ N(0, sw2 / N)``, ``b_i ~ N(0, sb2)``, ``z ~ N(0, 1)``.

* Length map (Poole Sec. 2): ``q^l = sw2 E[phi(sqrt(q^{l-1}) z)^2] + sb2``; ``q*`` its fixed point.
* ``chi1 = sw2 E[phi'(sqrt(q*) z)^2]``: the slope of the correlation map at ``c = 1`` and the
  per-layer factor of ``E[(dL/dh)^2]`` (Schoenholz Sec. 5).
* Correlation map (Poole eq. 5): ``c' = (sw2 E[phi(u1) phi(u2)] + sb2) / q*``; ``c*`` its
  stable fixed point.

Roots are polished with Brent's method (``scipy.optimize.brentq``; Brent 1973).

Example::

    >>> chi1("relu", 2.0, 0.0)                              # He init is critical for ReLU
    1.0
    >>> round(fixed_point_q("tanh", 25 / 9, 0.0), 4)       # PyTorch's tanh gain 5/3
    1.1785
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq

from gradmedic.errors import ConfigError
from gradmedic.theory._checks import _check_q, _check_sb2, _check_sw2, _finite
from gradmedic.theory.activations import Activation
from gradmedic.theory.quadrature import e_dphi_sq, e_phi_phi, e_phi_sq, expect, kappa
from gradmedic.theory.registry import ActivationLike, as_activation

__all__ = [
    "c_star_cached",
    "chi1",
    "chi1_at",
    "correlation_map",
    "expected_layer_gain",
    "fixed_point_c",
    "fixed_point_q",
    "length_map",
    "q_slope",
    "q_star_cached",
]

#: Length maps that grow past this are reported as divergent (q* = inf).
_Q_DIVERGED = 1e12


def brent_root(f: Callable[[float], float], a: float, b: float, xtol: float) -> float:
    """The root of ``f`` in ``[a, b]`` (``f(a) f(b) <= 0``) by Brent's method, to
    ``xtol / 2 + 2 eps |x|`` (``scipy.optimize.brentq``)."""
    return float(brentq(f, a, b, xtol=xtol, maxiter=200))


def length_map(q: float, act: ActivationLike, sw2: float, sb2: float) -> float:
    """One step of the length map, ``q' = sw2 * E[phi(sqrt(q) z)^2] + sb2`` (Poole 2016, eq. 3).

    ``q`` is the variance of a pre-activation ``h_i^l``; the map gives that of layer ``l + 1``.

    Example::

        >>> length_map(1.0, "relu", 2.0, 0.0)     # He init preserves the length exactly
        1.0
    """
    a = as_activation(act)
    return _check_sw2(sw2) * e_phi_sq(a, q) + _check_sb2(sb2)


def q_slope(act: Activation, sw2: float, q: float) -> float:
    """d q'/d q at q: ``sw2 E[phi'^2 + phi phi'']``, computed as ``sw2 E[x phi phi'] / q`` (Stein).

    The Stein form needs no phi'' and is right for kinked activations too.
    """
    if act.linear_slopes is not None:
        return sw2 * kappa(act)
    if q == 0.0:
        x0 = np.zeros(1)
        return sw2 * float(act.dphi(x0)[0] ** 2 + act.phi(x0)[0] * act.d2phi(x0)[0])
    return sw2 * expect(act, lambda x: x * act.phi(x) * act.dphi(x), q) / q


def fixed_point_q(act: ActivationLike, sw2: float, sb2: float, q0: float = 1.0) -> float:
    """The fixed point ``q*`` of the length map reached from ``q^0 = q0``.

    Iterates ``q <- sw2 E[phi(sqrt(q) z)^2] + sb2`` (convergence takes ~xi_q layers), then
    polishes the root of ``q' - q`` with Brent's method. Special cases:

    * ``q* = 0`` when the map contracts to 0 (tanh with ``sb2 = 0`` and ``sw2 <= 1``);
    * ``q* = inf`` when the map grows without bound (ReLU with ``sw2 > 2``, or ``sw2 = 2`` and
      ``sb2 > 0``; any map that passes 1e12);
    * ``q0`` itself when every q is fixed (ReLU with ``sw2 = 2``, ``sb2 = 0``: He init).

    ReLU-family closed form: ``q* = sb2 / (1 - sw2 (1 + a^2) / 2)``.

    Example::

        >>> round(fixed_point_q("relu", 1.9, 0.1), 12)             # reference case 3
        2.0
        >>> round(fixed_point_q("tanh", 25 / 9, 0.0), 4)          # PyTorch's tanh gain 5/3
        1.1785
    """
    a = as_activation(act)
    return q_star_cached(a, _check_sw2(sw2), _check_sb2(sb2), _check_q(q0))


@lru_cache(maxsize=4096)
def q_star_cached(act: Activation, sw2: float, sb2: float, q0: float) -> float:
    """:func:`fixed_point_q` for checked arguments (cached)."""
    if act.linear_slopes is not None:
        g = sw2 * kappa(act)
        if g < 1.0:
            return sb2 / (1.0 - g)
        if sb2 == 0.0 and (g == 1.0 or q0 == 0.0):
            return q0
        return math.inf

    def qmap(q: float) -> float:
        return sw2 * expect(act, lambda x: act.phi(x) ** 2, q) + sb2

    def h(q: float) -> float:
        return qmap(q) - q

    q = q0
    for _ in range(40):
        nxt = qmap(q)
        if not math.isfinite(nxt) or nxt > _Q_DIVERGED:
            return math.inf
        if abs(nxt - q) <= 1e-14 * q or nxt == q:
            return nxt
        q = nxt
    hq = h(q)
    if hq == 0.0:
        return q
    if hq > 0:  # the iterates increase: the fixed point lies above
        lo, hi = q, max(4.0 * q, q + 1.0)
        while h(hi) > 0:
            if hi > _Q_DIVERGED:
                return math.inf
            lo, hi = hi, 4.0 * hi
        return brent_root(h, lo, hi, xtol=1e-15 * (1.0 + lo))
    hi, lo = q, q / 4.0  # the iterates decrease: the fixed point lies below (maybe 0)
    while h(lo) < 0:
        if lo < 1e-14:
            if h(0.0) <= 0.0:
                return 0.0
            return brent_root(h, 0.0, lo, xtol=1e-300)
        hi, lo = lo, lo / 4.0
    return brent_root(h, lo, hi, xtol=1e-15 * hi)


def chi1_at(act: Activation, sw2: float, q: float) -> float:
    """``sw2 E[phi'(sqrt(q) z)^2]`` at a given length ``q`` (its ``q -> inf`` limit for inf)."""
    if act.linear_slopes is not None:
        return sw2 * kappa(act)
    if math.isinf(q):  # q -> inf: phi'(sqrt(q) z) -> phi'(+inf) for z > 0, phi'(-inf) for z < 0
        ends = act.dphi(np.array([-1e8, 1e8]))
        return sw2 * 0.5 * float(ends[0] ** 2 + ends[1] ** 2)
    return sw2 * e_dphi_sq(act, q)


def chi1(act: ActivationLike, sw2: float, sb2: float) -> float:
    """``chi1 = sw2 * E[phi'(sqrt(q*) z)^2]``: the per-layer factor of ``E[(dL/dh)^2]``.

    Poole et al. 2016 (slope of the correlation map at c = 1); Schoenholz et al. 2017, Sec. 5
    (``E[(delta^l)^2] = chi1 E[(delta^{l+1})^2]`` for equal widths). ReLU: ``sw2 / 2`` exactly;
    leaky ReLU: ``sw2 (1 + a^2) / 2``. When q* diverges, the ``q -> inf`` limit is used.

    Example::

        >>> chi1("relu", 1 / 3, 0.0)       # PyTorch's default nn.Linear init, sw2 = 1/3
        0.16666666666666666
        >>> round(chi1("tanh", 25 / 9, 0.0), 4)
        1.2098
    """
    a = as_activation(act)
    sw2, sb2 = _check_sw2(sw2), _check_sb2(sb2)
    return chi1_at(a, sw2, q_star_cached(a, sw2, sb2, 1.0))


def expected_layer_gain(act: ActivationLike, sw2: float, sb2: float) -> float:
    """``sqrt(chi1)``: the factor by which the *norm* of ``dL/dh`` grows per layer, going backwards.

    Example::

        >>> expected_layer_gain("relu", 1.0, 0.0)
        0.7071067811865476
    """
    return math.sqrt(chi1(act, sw2, sb2))


def correlation_map(
    c: float, act: ActivationLike, sw2: float, sb2: float, q: float | None = None
) -> float:
    """One step of the correlation map at the length fixed point (Poole 2016, eq. 5).

    ``c' = (sw2 * E[phi(u1) phi(u2)] + sb2) / q*`` with ``u1 = sqrt(q*) z1``,
    ``u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2)``. Pass ``q`` to use another length than q*.

    Example::

        >>> round(correlation_map(0.0, "tanh", 2.0, 0.0), 12)     # odd phi, no bias: c* = 0
        0.0
    """
    a = as_activation(act)
    sw2, sb2 = _check_sw2(sw2), _check_sb2(sb2)
    c = _finite(c, "c", "a correlation in [-1, 1]")
    if not -1.0 <= c <= 1.0:
        raise ConfigError(f"c must lie in [-1, 1] (a correlation); got {c:g}")
    qs = q_star_cached(a, sw2, sb2, 1.0) if q is None else _check_q(q)
    return _cmap(a, sw2, sb2, qs, c)


def _cmap(act: Activation, sw2: float, sb2: float, q: float, c: float) -> float:
    if q == 0.0 or math.isinf(q):
        return math.nan
    return (sw2 * e_phi_phi(act, q, c) + sb2) / q


def fixed_point_c(act: ActivationLike, sw2: float, sb2: float) -> float:
    """The stable fixed point ``c*`` of the correlation map.

    ``c* = 1`` in the ordered phase (``chi1 <= 1``: all inputs become alike with depth); in
    the chaotic phase (``chi1 > 1``) ``c* < 1`` is found with Brent's method. ``nan`` when
    ``q*`` is 0 or infinite (the map is then undefined).

    Example (theory.md depth-scale table, tanh, sb2 = 0.05)::

        >>> round(fixed_point_c("tanh", 2.0, 0.05), 5)
        0.74408
    """
    a = as_activation(act)
    sw2, sb2 = _check_sw2(sw2), _check_sb2(sb2)
    return c_star_cached(a, sw2, sb2)


@lru_cache(maxsize=1024)
def c_star_cached(act: Activation, sw2: float, sb2: float) -> float:
    """:func:`fixed_point_c` for checked arguments (cached)."""
    q = q_star_cached(act, sw2, sb2, 1.0)
    k = chi1_at(act, sw2, q)
    if k <= 1.0:
        return 1.0
    if q == 0.0 or math.isinf(q):
        return math.nan

    def F(c: float) -> float:
        return _cmap(act, sw2, sb2, q, c) - c

    # F < 0 just below c = 1 (slope chi1 > 1); walk down until F >= 0.
    prev_c = 1.0
    for delta in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0):
        cc = 1.0 - delta
        if F(cc) >= 0.0:
            if prev_c == 1.0:
                return 1.0  # indistinguishable from 1 at this chi1
            return brent_root(F, cc, prev_c, xtol=1e-13)
        prev_c = cc
    return -1.0
