"""Built-in activation functions and their first two derivatives, for float64 numpy arrays.

Each function maps an array to an array of the same shape and never overflows (the sigmoid
family goes through ``logaddexp``). ``dX`` is ``X'`` and ``d2X`` is ``X''``; the derivatives are
exact closed forms except :func:`d2mish` (central difference of :func:`dmish`, step 1e-4).
References: GELU ``x Phi(x)`` (Hendrycks & Gimpel 2016), SiLU (Elfwing et al. 2018), Mish
(Misra 2019), hard-swish (Howard et al. 2019), ELU (Clevert et al. 2016).

Example::

    >>> float(dsigmoid(np.array(0.0))), float(dgelu(np.array(0.0)))
    (0.25, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Array = np.ndarray
Fn = Callable[[Array], Array]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def sigmoid(x: Array) -> Array:
    return np.exp(-np.logaddexp(0.0, -x))


def dsigmoid(x: Array) -> Array:
    return sigmoid(x) * sigmoid(-x)


def d2sigmoid(x: Array) -> Array:
    return dsigmoid(x) * (1.0 - 2.0 * sigmoid(x))


def dtanh(x: Array) -> Array:
    t = np.tanh(x)
    return 1.0 - t * t


def d2tanh(x: Array) -> Array:
    t = np.tanh(x)
    return -2.0 * t * (1.0 - t * t)


_erf_obj = np.frompyfunc(math.erf, 1, 1)


def norm_cdf(x: Array) -> Array:
    return 0.5 * (1.0 + np.asarray(_erf_obj(np.asarray(x) / _SQRT2), dtype=float))


def norm_pdf(x: Array) -> Array:
    return _INV_SQRT_2PI * np.exp(-0.5 * np.asarray(x) ** 2)


def gelu(x: Array) -> Array:
    return x * norm_cdf(x)


def dgelu(x: Array) -> Array:
    return norm_cdf(x) + x * norm_pdf(x)


def d2gelu(x: Array) -> Array:
    return norm_pdf(x) * (2.0 - x * x)


def silu(x: Array) -> Array:
    return x * sigmoid(x)


def dsilu(x: Array) -> Array:
    return sigmoid(x) + x * dsigmoid(x)


def d2silu(x: Array) -> Array:
    return dsigmoid(x) * (2.0 + x * (1.0 - 2.0 * sigmoid(x)))


def softsign(x: Array) -> Array:
    return x / (1.0 + np.abs(x))


def dsoftsign(x: Array) -> Array:
    return 1.0 / (1.0 + np.abs(x)) ** 2


def d2softsign(x: Array) -> Array:
    return -2.0 * np.sign(x) / (1.0 + np.abs(x)) ** 3


def softplus(x: Array) -> Array:
    return np.logaddexp(0.0, x)


def mish(x: Array) -> Array:
    return x * np.tanh(softplus(x))


def dmish(x: Array) -> Array:
    t = np.tanh(softplus(x))
    return t + x * sigmoid(x) * (1.0 - t * t)


def d2mish(x: Array) -> Array:
    h = 1e-4
    return (dmish(x + h) - dmish(x - h)) / (2 * h)


def hardswish(x: Array) -> Array:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def dhardswish(x: Array) -> Array:
    return np.where(x >= 3.0, 1.0, np.where(x <= -3.0, 0.0, (2.0 * x + 3.0) / 6.0))


def d2hardswish(x: Array) -> Array:
    return np.where((x > -3.0) & (x < 3.0), 1.0 / 3.0, 0.0)


def identity(x: Array) -> Array:
    return x + 0.0


def ones(x: Array) -> Array:
    return np.ones_like(x)


def zeros(x: Array) -> Array:
    return np.zeros_like(x)


def elu_parts(alpha: float, scale: float) -> tuple[Fn, Fn, Fn]:
    def phi(x: Array) -> Array:
        return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))

    def dphi(x: Array) -> Array:
        return scale * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))

    def d2phi(x: Array) -> Array:
        return scale * np.where(x > 0, 0.0, alpha * np.exp(np.minimum(x, 0.0)))

    return phi, dphi, d2phi
