"""Recurrent networks: Pascanu's singular-value test for vanishing and exploding gradients.

Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural networks" (ICML 2013,
Sec. 3.1): with ``gamma = sup |phi'|``, a largest singular value ``lambda1 < 1/gamma`` of
``W_rec`` is sufficient for vanishing long-term gradients and ``lambda1 > 1/gamma`` is necessary
for exploding ones.

Example::

    >>> b = pascanu_bound(2.0 * np.eye(3), "tanh")
    >>> b.verdict, b.eta
    ('exploding-possible', 2.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gradmedic.errors import ConfigError
from gradmedic.theory._checks import _finite
from gradmedic.theory.depth import CRITICAL_TOL
from gradmedic.theory.registry import ActivationLike, as_activation

__all__ = ["PascanuBound", "pascanu_bound"]


@dataclass(frozen=True)
class PascanuBound:
    """Pascanu et al. 2013 (Sec. 3.1) test of a recurrent matrix ``W_rec`` with activation phi.

    ``dx_t/dx_k = prod W_rec^T diag(phi'(x_{i-1}))`` has norm at most ``eta^(t-k)`` with
    ``eta = lambda1 * gamma``. ``lambda1 < 1/gamma`` is *sufficient* for vanishing long-term
    gradients; ``lambda1 > 1/gamma`` is *necessary* (not sufficient) for exploding ones.

    Fields: ``lambda1`` (largest singular value), ``spectral_radius`` (largest |eigenvalue|,
    the sharper criterion for a linear RNN), ``gamma = sup|phi'|``, ``inv_gamma``,
    ``eta = lambda1 * gamma`` and ``verdict`` in ``{"vanishing-sufficient",
    "exploding-possible", "boundary"}``.
    """

    lambda1: float
    spectral_radius: float
    gamma: float
    inv_gamma: float
    eta: float
    verdict: Literal["vanishing-sufficient", "exploding-possible", "boundary"]


def pascanu_bound(
    W_rec: Any, act: ActivationLike = "tanh", *, rtol: float = CRITICAL_TOL
) -> PascanuBound:
    """Classify a recurrent weight matrix with Pascanu's singular-value conditions.

    ``verdict`` is ``"boundary"`` when ``|lambda1 - 1/gamma| <= rtol / gamma`` (e.g. an orthogonal
    matrix with tanh), otherwise ``"vanishing-sufficient"`` (``lambda1 < 1/gamma``) or
    ``"exploding-possible"`` (``lambda1 > 1/gamma``).

    Example::

        >>> pascanu_bound(0.5 * np.eye(4), "tanh").verdict
        'vanishing-sufficient'
        >>> pascanu_bound(3.0 * np.eye(4), "sigmoid").verdict     # 3 < 1/gamma = 4
        'vanishing-sufficient'
    """
    a = as_activation(act)
    try:
        W = np.asarray(W_rec, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"W_rec must be a square numeric matrix ({exc})") from exc
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise ConfigError(
            f"W_rec must be a square matrix (hidden x hidden, e.g. rnn.weight_hh_l0); "
            f"got shape {W.shape}"
        )
    if not np.all(np.isfinite(W)):
        raise ConfigError("W_rec contains NaN or inf; check the model's weights")
    rtol = _finite(rtol, "rtol", "a relative tolerance")
    lam1 = float(np.linalg.norm(W, 2))
    rho = float(np.max(np.abs(np.linalg.eigvals(W))))
    g = a.gamma
    inv = 1.0 / g
    verdict: Literal["vanishing-sufficient", "exploding-possible", "boundary"]
    if abs(lam1 - inv) <= rtol * inv:
        verdict = "boundary"
    elif lam1 < inv:
        verdict = "vanishing-sufficient"
    else:
        verdict = "exploding-possible"
    return PascanuBound(
        lambda1=lam1, spectral_radius=rho, gamma=g, inv_gamma=inv, eta=lam1 * g, verdict=verdict
    )
