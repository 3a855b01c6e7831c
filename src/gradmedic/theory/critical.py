"""The order-to-chaos line ``chi1(sigma_w2, sigma_b2) = 1`` (the "edge of chaos").

Poole et al. 2016 and Schoenholz et al. 2017 (Sec. 3): on this line gradients keep their scale
with depth. :func:`critical_sigma_w2` solves for the weight variance at a given bias variance;
:func:`critical_point_at_q` parametrises the line by its length fixed point ``q*`` (Pennington,
Schoenholz & Ganguli, "Resurrecting the sigmoid", NeurIPS 2017). ReLU family: ``2 / (1 + a^2)``.

Example::

    >>> round(critical_sigma_w2("tanh", 0.05), 4)          # edge of chaos for tanh, sb2 = 0.05
    1.761
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from gradmedic.theory._checks import _check_q, _check_sb2
from gradmedic.theory.activations import Activation
from gradmedic.theory.meanfield import brent_root, chi1_at, q_star_cached
from gradmedic.theory.quadrature import e_dphi_sq, e_phi_sq, kappa
from gradmedic.theory.registry import ActivationLike, as_activation

__all__ = [
    "CriticalPoint",
    "critical_line",
    "critical_line_from_q",
    "critical_point_at_q",
    "critical_sigma_w2",
    "critical_sw2_cached",
]


@dataclass(frozen=True)
class CriticalPoint:
    """A point ``(sigma_w2, sigma_b2)`` on the order/chaos line ``chi1 = 1``, with its ``q*``."""

    sigma_w2: float
    sigma_b2: float
    q_star: float


def critical_sigma_w2(act: ActivationLike, sb2: float) -> float:
    """The weight variance with ``chi1(sw2, sb2) = 1`` (the edge of chaos) at bias variance ``sb2``.

    Solved with Brent's method on ``chi1 - 1`` after bracketing on a doubling grid of ``sw2``.
    ReLU family: ``2 / (1 + a^2)`` for any ``sb2`` (He init). ``nan`` if ``chi1 < 1`` for all
    ``sw2`` up to 1e4.

    Example (reference case 4)::

        >>> [round(critical_sigma_w2("tanh", b), 4) for b in (0.0, 0.01, 0.05, 0.1, 0.3)]
        [1.0, 1.4242, 1.761, 1.9861, 2.5051]
    """
    a = as_activation(act)
    return critical_sw2_cached(a, _check_sb2(sb2))


@lru_cache(maxsize=1024)
def critical_sw2_cached(act: Activation, sb2: float) -> float:
    """:func:`critical_sigma_w2` for a checked ``sb2`` (cached)."""
    if act.linear_slopes is not None:
        return 1.0 / kappa(act)

    def f(w: float) -> float:
        return chi1_at(act, w, q_star_cached(act, w, sb2, 1.0)) - 1.0

    lo, flo = 0.5, f(0.5)
    if flo >= 0.0:  # already chaotic at 0.5: walk down
        hi = lo
        while True:
            lo = hi / 2.0
            if f(lo) < 0.0:
                return brent_root(f, lo, hi, xtol=1e-12)
            if lo < 1e-6:
                return math.nan
            hi = lo
    hi, fhi = lo, flo
    while fhi < 0.0:
        lo = hi
        hi *= 2.0
        if hi > 1e4:
            return math.nan
        fhi = f(hi)
    return brent_root(f, lo, hi, xtol=1e-12)


def critical_line(act: ActivationLike, sb2_values: Iterable[float]) -> list[CriticalPoint]:
    """The critical line sampled at the given bias variances.

    Example::

        >>> p = critical_line("tanh", [0.05])[0]
        >>> round(p.sigma_w2, 4), round(p.q_star, 4)
        (1.761, 0.57)
    """
    a = as_activation(act)
    out = []
    for b in sb2_values:
        b = _check_sb2(b)
        w = critical_sw2_cached(a, b)
        q = q_star_cached(a, w, b, 1.0) if math.isfinite(w) else math.nan
        out.append(CriticalPoint(sigma_w2=w, sigma_b2=b, q_star=q))
    return out


def critical_point_at_q(act: ActivationLike, q: float) -> CriticalPoint:
    """The critical point whose length fixed point is ``q*`` (Pennington, Schoenholz & Ganguli 2017).

    ``sw2 = 1 / E[phi'(sqrt(q*) z)^2]`` and ``sb2 = q* - sw2 E[phi(sqrt(q*) z)^2]``. A negative
    ``sigma_b2`` means no real network has that ``q*`` on the critical line.

    Example::

        >>> p = critical_point_at_q("tanh", 1.0)
        >>> round(p.sigma_w2, 6), round(p.sigma_b2, 6)
        (2.153303, 0.150965)
    """
    a = as_activation(act)
    q = _check_q(q)
    d2 = e_dphi_sq(a, q)
    if d2 <= 0.0:
        return CriticalPoint(sigma_w2=math.inf, sigma_b2=math.nan, q_star=q)
    w = 1.0 / d2
    return CriticalPoint(sigma_w2=w, sigma_b2=q - w * e_phi_sq(a, q), q_star=q)


def critical_line_from_q(act: ActivationLike, q_values: Iterable[float]) -> list[CriticalPoint]:
    """:func:`critical_point_at_q` for each ``q*`` in ``q_values``."""
    a = as_activation(act)
    return [critical_point_at_q(a, q) for q in q_values]
