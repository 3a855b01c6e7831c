"""Length map, q*, chi1 and the correlation map (theory.md section 1, case 3).

Each test pins a number from /work/shared/reference/theory.md ('case N' = its "Reference
test cases").
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradmedic import theory as T


@pytest.mark.parametrize("sw2", [1 / 3, 0.5, 1.0, 1.9, 2.0, 3.0])
@pytest.mark.parametrize("sb2", [0.0, 0.1])
def test_relu_chi1_is_half_sw2(sw2: float, sb2: float) -> None:
    assert T.chi1("relu", sw2, sb2) == pytest.approx(sw2 / 2, rel=1e-15)


def test_relu_reference_values_case_3() -> None:
    assert T.chi1("relu", 2.0, 0.0) == 1.0
    assert T.chi1("relu", 1.0, 0.0) == 0.5
    assert T.chi1("relu", 1 / 3, 0.0) == pytest.approx(1 / 6, rel=1e-15)  # PyTorch default
    a = 0.01
    assert T.chi1(f"leaky_relu({a})", 2 / (1 + a * a), 0.0) == pytest.approx(1.0, rel=1e-15)
    assert T.fixed_point_q("relu", 1.9, 0.1) == pytest.approx(2.0, rel=1e-12)
    assert T.critical_sigma_w2("relu", 0.0) == 2.0


@pytest.mark.parametrize("a", [0.01, 0.2, 0.5])
def test_leaky_relu_chi1(a: float) -> None:
    assert T.chi1(f"leaky_relu({a})", 1.5, 0.1) == pytest.approx(1.5 * (1 + a * a) / 2, rel=1e-14)


def test_relu_length_map_divergence_and_marginal_cases() -> None:
    assert T.fixed_point_q("relu", 2.5, 0.0) == math.inf
    assert T.fixed_point_q("relu", 2.0, 0.1) == math.inf  # q^l = q^{l-1} + sb2
    assert T.fixed_point_q("relu", 2.0, 0.0, q0=0.7) == 0.7  # every q is fixed under He init


def test_quadrature_agrees_with_relu_closed_forms() -> None:
    """A ReLU given as a plain callable (no closed form) goes through the quadrature."""
    relu = T.Activation.from_callable(lambda x: np.maximum(x, 0.0), "my_relu", kinks=[0.0])
    assert T.chi1(relu, 1.5, 0.1) == pytest.approx(0.75, abs=1e-9)
    assert T.fixed_point_q(relu, 1.5, 0.1) == pytest.approx(0.4, rel=1e-10)
    for c in (-0.5, 0.3, 0.9, 0.99999):
        assert T.correlation_map(c, relu, 1.5, 0.1) == pytest.approx(
            T.correlation_map(c, "relu", 1.5, 0.1), abs=1e-10
        )


def test_tanh_pytorch_gain_case() -> None:
    """calculate_gain('tanh') = 5/3 -> sw2 = 25/9: q* = 1.1785, chi1 = 1.2098 (section 1)."""
    assert T.fixed_point_q("tanh", 25 / 9, 0.0) == pytest.approx(1.1785, abs=1e-4)
    assert T.chi1("tanh", 25 / 9, 0.0) == pytest.approx(1.2098, abs=1e-4)
    assert T.phase("tanh", 25 / 9, 0.0) == "chaotic"


def test_tanh_no_bias_ordered_has_zero_q_star() -> None:
    assert T.fixed_point_q("tanh", 0.8, 0.0) == 0.0
    assert T.chi1("tanh", 0.8, 0.0) == pytest.approx(0.8, rel=1e-15)
    assert T.chi1("tanh", 1 / 3, 0.0) == pytest.approx(1 / 3, rel=1e-15)  # PyTorch default


def test_c_star_is_a_fixed_point_of_the_correlation_map() -> None:
    c = T.fixed_point_c("tanh", 2.5, 0.05)
    assert T.correlation_map(c, "tanh", 2.5, 0.05) == pytest.approx(c, abs=1e-12)
    # c = 1 is always fixed (up to the precision of q*)
    assert T.correlation_map(1.0, "tanh", 2.5, 0.05) == pytest.approx(1.0, abs=1e-12)


def test_tanh_correlation_map_agrees_with_tensor_gauss_hermite() -> None:
    sw2, sb2, c = 2.5, 0.05, 0.6
    q = T.fixed_point_q("tanh", sw2, sb2)
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / math.sqrt(2 * math.pi)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    u1 = math.sqrt(q) * z1
    u2 = math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    e = float(np.sum(np.outer(w, w) * np.tanh(u1) * np.tanh(u2)))
    assert T.correlation_map(c, "tanh", sw2, sb2) == pytest.approx((sw2 * e + sb2) / q, abs=1e-10)


@pytest.mark.parametrize(("sw2", "sb2"), [(0.5, 1e-20), (0.9, 1e-30), (0.99, 1e-12)])
def test_tiny_q_star_is_polished_from_the_bracket_at_zero(sw2: float, sb2: float) -> None:
    """tanh(x)^2 ~ x^2 for small x, so q* ~ sb2 / (1 - sw2). Forty iterations from q = 1 stop
    far above it; Brent's method (scipy.optimize.brentq) then finds it in [0, 1e-14]."""
    q = T.fixed_point_q("tanh", sw2, sb2)
    assert q == pytest.approx(sb2 / (1 - sw2), rel=1e-6)
    assert T.length_map(q, "tanh", sw2, sb2) == pytest.approx(q, rel=1e-12)


def test_q_star_from_below_is_polished_on_an_upward_bracket() -> None:
    """From q0 = 1e-8 the iterates grow by ~1.5 per layer and are still rising after forty."""
    assert T.fixed_point_q("tanh", 1.5, 0.0, q0=1e-8) == pytest.approx(0.28689423, abs=1e-8)
    assert T.fixed_point_q("tanh", 1.5, 0.0) == pytest.approx(0.28689423, abs=1e-8)
