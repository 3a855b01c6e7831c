"""The init gain of an activation: torch's calculate_gain where it has one, else the
Gauss-Hermite second-moment gain (checked against scipy quadrature)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from gradmedic.errors import UnknownNameError
from gradmedic.nn.init_gain import activation_gain


def _second_moment_gain(phi) -> float:
    def f(z):
        return phi(z) ** 2 * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)

    v, _ = integrate.quad(f, -40, 40, limit=200)
    return 1 / math.sqrt(v)


def test_torch_gains():
    assert activation_gain("relu") == pytest.approx(math.sqrt(2))
    assert activation_gain("tanh") == pytest.approx(5 / 3)
    assert activation_gain("selu") == pytest.approx(0.75)
    assert activation_gain("sigmoid") == 1.0 and activation_gain("linear") == 1.0
    assert activation_gain("leaky_relu(0.2)") == pytest.approx(math.sqrt(2 / 1.04))
    assert activation_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 1e-4)))


def test_quadrature_gains_match_scipy():
    assert activation_gain("relu6") == pytest.approx(math.sqrt(2), rel=1e-3)  # ≈ relu on N(0,1)
    assert activation_gain("softplus") == pytest.approx(
        _second_moment_gain(lambda z: np.log1p(np.exp(z))), rel=1e-6
    )
    assert activation_gain("elu(0.5)") == pytest.approx(
        _second_moment_gain(lambda z: np.where(z > 0, z, 0.5 * np.expm1(np.minimum(z, 0)))),
        rel=1e-5,  # the kink at 0 costs Gauss-Hermite a few digits
    )
    # RReLU in eval mode: the mean slope (1/8 + 1/3) / 2, so the leaky-ReLU second moment
    a = (1 / 8 + 1 / 3) / 2
    assert activation_gain("rrelu") == pytest.approx(math.sqrt(2 / (1 + a * a)), rel=1e-5)


def test_unknown_activation_lists_the_registry():
    with pytest.raises(UnknownNameError, match="unknown activation 'relux'; did you mean 'relu"):
        activation_gain("relux")
