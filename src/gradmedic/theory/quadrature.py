"""Gaussian expectations ``E[f(sqrt(q) z)]``, ``z ~ N(0, 1)``, the integrals of mean-field theory.

Composite Gauss-Legendre quadrature on panels whose edges sit on every kink of the activation
(0 for ReLU, +-1 for hardtanh), on a unit grid in the standard normal variable and on a unit
grid in the pre-activation itself (so that ``tanh(sqrt(q) z)`` is resolved even for large
``q``). This is exact to ~1e-13 for kinked activations, where plain Gauss-Hermite quadrature
converges slowly; ``gaussian_expectation(..., method="hermite")`` gives the Gauss-Hermite
answer for comparison. Piecewise-linear activations (relu, leaky_relu, linear) use closed
forms, and pairs of correlated inputs the arc-cosine kernels of Cho & Saul (NeurIPS 2009).

Example::

    >>> e_phi_sq("relu", 3.0), e_dphi_sq("relu", 1.0)
    (1.5, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import lru_cache
from numbers import Integral
from typing import Literal

import numpy as np

from gradmedic.errors import ConfigError
from gradmedic.theory._checks import _check_q
from gradmedic.theory._elementwise import Array, Fn
from gradmedic.theory.activations import Activation
from gradmedic.theory.registry import ActivationLike, as_activation

__all__ = [
    "e_dphi",
    "e_dphi_dphi",
    "e_dphi_sq",
    "e_phi_phi",
    "e_phi_sq",
    "expect",
    "gaussian_expectation",
    "kappa",
]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_Z_MAX = 10.0  # tails beyond 10 sd carry 1.5e-23 of the mass
_GL_T, _GL_W = np.polynomial.legendre.leggauss(12)
_Z_EDGES = np.arange(-_Z_MAX, _Z_MAX + 0.5, 1.0)
_X_EDGES = np.arange(-10.0, 10.5, 1.0)  # activation features live at |x| <~ 10


def _normal_rule(mean: Array, std: float, kinks: tuple[float, ...]) -> tuple[Array, Array]:
    """Nodes ``x`` (m, K) and weights (m, K) with ``sum_k w f(x) ~= E[f(mean_i + std Z)]``.

    Composite 12-point Gauss-Legendre on panels with edges at the integers in z in [-10, 10],
    at the integers in x in [-10, 10] and at the kinks (each mapped to z = (x - mean)/std and
    clipped to [-10, 10]; clipped edges make empty panels of zero weight).
    """
    mean = np.atleast_1d(np.asarray(mean, dtype=float))
    m = mean.size
    if std <= 0.0:
        return mean[:, None].copy(), np.ones((m, 1))
    xk = np.concatenate([_X_EDGES, np.asarray(kinks, dtype=float)])
    zk = np.clip((xk[None, :] - mean[:, None]) / std, -_Z_MAX, _Z_MAX)
    edges = np.concatenate([np.broadcast_to(_Z_EDGES, (m, _Z_EDGES.size)), zk], axis=1)
    edges.sort(axis=1)
    half = 0.5 * (edges[:, 1:] - edges[:, :-1])
    mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    z = mid[..., None] + half[..., None] * _GL_T
    w = half[..., None] * _GL_W * (_INV_SQRT_2PI * np.exp(-0.5 * z * z))
    return mean[:, None] + std * z.reshape(m, -1), w.reshape(m, -1)


def gaussian_expectation(
    f: Callable[[Array], Array],
    q: float,
    *,
    kinks: Iterable[float] = (),
    method: Literal["panels", "hermite"] = "panels",
    n_nodes: int = 200,
) -> float:
    """``E[f(sqrt(q) z)]`` for ``z ~ N(0, 1)``, i.e. ``Int Dz f(sqrt(q) z)``.

    ``method="panels"`` (default): composite Gauss-Legendre split at ``kinks`` (in x units) and
    on unit grids in z and in x; accurate to ~1e-13 for piecewise-smooth ``f`` with the kinks
    given. ``method="hermite"``: ``n_nodes``-point Gauss-Hermite for the normal measure
    (``numpy.polynomial.hermite_e.hermegauss``), spectrally accurate for smooth ``f`` at moderate
    ``q`` but only ~1e-5 for kinks, and for ``tanh`` at ``q = 5`` it is off by 2e-6 (the
    integrand is narrower than the node spacing); ``n_nodes`` at most 350.

    Example (reference case 26, ``Var[relu(z)] = (1 - 1/pi)/2``)::

        >>> relu = lambda x: np.maximum(x, 0.0)
        >>> m1 = gaussian_expectation(relu, 1.0, kinks=[0.0])
        >>> round(gaussian_expectation(lambda x: relu(x) ** 2, 1.0) - m1**2, 6)
        0.340845
    """
    q = _check_q(q)
    if method == "hermite":
        if (
            isinstance(n_nodes, bool)
            or not isinstance(n_nodes, Integral)
            or not 1 <= n_nodes <= _HERMITE_MAX
        ):
            raise ConfigError(
                f"n_nodes must be an integer in [1, {_HERMITE_MAX}] (numpy's hermegauss "
                f"overflows beyond); got {n_nodes!r}"
            )
        z, w = _hermite_rule(int(n_nodes))
        return float(np.dot(w, f(math.sqrt(q) * z)))
    if method != "panels":
        raise ConfigError(f"method must be 'panels' or 'hermite'; got {method!r}")
    x, w = _normal_rule(np.zeros(1), math.sqrt(q), tuple(float(k) for k in kinks))
    return float(np.sum(w * f(x)))


_HERMITE_MAX = 350


@lru_cache(maxsize=16)
def _hermite_rule(n: int) -> tuple[Array, Array]:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / math.sqrt(2.0 * math.pi)


def expect(act: Activation, f: Fn, q: float) -> float:
    """``E[f(sqrt(q) z)]`` on panels split at ``act``'s kinks (no argument checks)."""
    x, w = _normal_rule(np.zeros(1), math.sqrt(q), act.kinks)
    return float(np.sum(w * f(x)))


def kappa(act: Activation) -> float:
    """``(a+^2 + a-^2)/2`` for a piecewise-linear activation with slopes a+, a-."""
    sp, sn = act.linear_slopes  # type: ignore[misc]
    return 0.5 * (sp * sp + sn * sn)


def e_phi_sq(act: ActivationLike, q: float) -> float:
    """``E[phi(sqrt(q) z)^2]``, the second moment that drives the length map (Poole 2016).

    Example::

        >>> e_phi_sq("relu", 3.0)                     # q/2 for ReLU
        1.5
    """
    a = as_activation(act)
    q = _check_q(q)
    if a.linear_slopes is not None:
        return kappa(a) * q
    return expect(a, lambda x: a.phi(x) ** 2, q)


def e_dphi_sq(act: ActivationLike, q: float) -> float:
    """``E[phi'(sqrt(q) z)^2]``; ``chi1 = sw2 * e_dphi_sq(act, q*)`` (Schoenholz 2017, eq. 5).

    Example::

        >>> e_dphi_sq("relu", 1.0), e_dphi_sq("tanh", 0.0)
        (0.5, 1.0)
    """
    a = as_activation(act)
    q = _check_q(q)
    if a.linear_slopes is not None:
        return kappa(a)
    return expect(a, lambda x: a.dphi(x) ** 2, q)


def e_dphi(act: ActivationLike, q: float) -> float:
    """``E[phi'(sqrt(q) z)]``, the mean local slope (mean backward gain of the activation).

    Example::

        >>> e_dphi("relu", 2.0)
        0.5
    """
    a = as_activation(act)
    q = _check_q(q)
    if a.linear_slopes is not None:
        sp, sn = a.linear_slopes
        return 0.5 * (sp + sn)
    return expect(a, a.dphi, q)


_BEND_OFFSETS = (-8.0, -4.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 4.0, 8.0)


def _e_pair(act: Activation, f: Fn, q: float, c: float) -> float:
    """``E[f(u1) f(u2)]`` with u1, u2 ~ N(0, q), correlation c (nested panel quadrature)."""
    s = math.sqrt(q)
    sd2 = s * math.sqrt(max(0.0, 1.0 - c * c))
    # The inner mean E[f(c x1 + sd2 Z)] bends within a few sd2 of c x1 = kink: add outer edges
    # there, or panels of width ~1 would miss that structure when sd2 is small (c near 1).
    outer = list(act.kinks)
    if c != 0.0:
        outer += [(b + t * sd2) / c for b in act.kinks for t in _BEND_OFFSETS]
    x1, w1 = _normal_rule(np.zeros(1), s, tuple(outer))
    x1, w1 = x1[0], w1[0]
    keep = w1 > 0
    x1, w1 = x1[keep], w1[keep]
    x2, w2 = _normal_rule(c * x1, sd2, act.kinks)
    inner = np.sum(w2 * f(x2), axis=1)
    return float(np.sum(w1 * f(x1) * inner))


def _arccos_kernels(c: float) -> tuple[float, float]:
    """Cho & Saul arc-cosine kernels: E[relu(u1)relu(u2)]/q and E[step(u1)step(u2)]."""
    c = min(1.0, max(-1.0, c))
    theta = math.acos(c)
    k1 = (math.sin(theta) + (math.pi - theta) * c) / (2.0 * math.pi)
    k0 = (math.pi - theta) / (2.0 * math.pi)
    return k1, k0


def e_phi_phi(act: Activation, q: float, c: float) -> float:
    """``E[phi(u1) phi(u2)]`` for ``u1, u2 ~ N(0, q)`` with correlation ``c`` (Poole 2016, eq. 5).

    >>> from gradmedic.theory import get_activation
    >>> round(e_phi_phi(get_activation("relu"), 1.0, 0.0), 12)     # E[relu(z)]^2 = 1/(2 pi)
    0.159154943092
    """
    if act.linear_slopes is not None:
        sp, sn = act.linear_slopes
        d = sp - sn  # phi(x) = sn x + d relu(x)
        k1, _ = _arccos_kernels(c)
        return q * (sn * sn * c + sn * d * c + d * d * k1)
    return _e_pair(act, act.phi, q, c)


def e_dphi_dphi(act: Activation, q: float, c: float) -> float:
    """``E[phi'(u1) phi'(u2)]`` for ``u1, u2 ~ N(0, q)`` with correlation ``c`` (Schoenholz 2017)."""
    if act.linear_slopes is not None:
        sp, sn = act.linear_slopes
        d = sp - sn  # phi'(x) = sn + d step(x)
        _, k0 = _arccos_kernels(c)
        return sn * sn + sn * d + d * d * k0
    return _e_pair(act, act.dphi, q, c)
