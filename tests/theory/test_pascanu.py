"""Pascanu, Mikolov & Bengio 2013: the singular-value test for RNNs (theory.md section 5).

The numbers are those of theory.md section 5 (gamma = 1 for tanh, 1/4 for sigmoid).
"""

from __future__ import annotations

import numpy as np
import pytest

from gradmedic import theory as T


def _orthogonal(n: int, seed: int = 0) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def test_pascanu_verdicts() -> None:
    b = T.pascanu_bound(2.0 * _orthogonal(16), "tanh")
    assert b.verdict == "exploding-possible"
    assert b.lambda1 == pytest.approx(2.0, rel=1e-12)
    assert b.spectral_radius == pytest.approx(2.0, rel=1e-10)
    assert (b.gamma, b.inv_gamma) == (1.0, 1.0)
    assert b.eta == pytest.approx(2.0, rel=1e-12)
    b = T.pascanu_bound(0.5 * np.eye(8), "tanh")
    assert b.verdict == "vanishing-sufficient"
    assert b.lambda1 == pytest.approx(0.5)
    assert T.pascanu_bound(_orthogonal(8), "tanh").verdict == "boundary"


def test_pascanu_sigmoid_threshold_is_four() -> None:
    """Hochreiter & Schmidhuber 1997 / Pascanu: with sigmoid, gamma = 1/4 and 1/gamma = 4."""
    b = T.pascanu_bound(3.9 * np.eye(4), "sigmoid")
    assert (b.gamma, b.inv_gamma, b.verdict) == (0.25, 4.0, "vanishing-sufficient")
    assert T.pascanu_bound(4.1 * np.eye(4), "sigmoid").verdict == "exploding-possible"
    assert T.pascanu_bound(4.0 * np.eye(4), "sigmoid").verdict == "boundary"


def test_pascanu_uses_largest_singular_value_not_spectral_radius() -> None:
    W = np.array([[0.0, 3.0], [0.0, 0.0]])  # nilpotent: spectral radius 0, lambda1 = 3
    b = T.pascanu_bound(W, "tanh")
    assert b.spectral_radius == 0.0
    assert b.lambda1 == pytest.approx(3.0)
    assert b.verdict == "exploding-possible"
