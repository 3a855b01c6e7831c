"""Gaussian expectations: panel quadrature against closed forms and reference integrals (cases 26, section 7).

Each test pins a number from /work/shared/reference/theory.md ('case N' = its "Reference
test cases").
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradmedic import theory as T


def test_selu_self_normalises() -> None:
    """Klambauer et al. 2017: E[selu(z)] = 0 and E[selu(z)^2] = 1 for z ~ N(0, 1)."""
    selu = T.get_activation("selu")
    assert T.gaussian_expectation(selu.phi, 1.0, kinks=[0.0]) == pytest.approx(0.0, abs=1e-9)
    assert T.e_phi_sq(selu, 1.0) == pytest.approx(1.0, abs=1e-9)
    assert T.fixed_point_q("selu", 1.0, 0.0) == pytest.approx(1.0, abs=1e-9)


def test_relu_variance_case_26() -> None:
    relu = T.get_activation("relu")
    m1 = T.gaussian_expectation(relu.phi, 1.0, kinks=[0.0])
    assert T.e_phi_sq("relu", 1.0) - m1**2 == pytest.approx((1 - 1 / math.pi) / 2, abs=1e-12)
    assert T.e_phi_sq("relu", 1.0) - m1**2 == pytest.approx(0.340845, abs=1e-6)
    assert T.e_dphi_sq("relu", 1.0) == 0.5
    assert T.e_dphi("relu", 1.0) == 0.5


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "silu"])
@pytest.mark.parametrize("q", [0.05, 1.0, 5.0])
def test_panel_quadrature_for_smooth_activations(name: str, q: float) -> None:
    act = T.get_activation(name)
    f = lambda x: act.dphi(x) ** 2  # noqa: E731
    # reference: the trapezoid rule, exponentially accurate for analytic integrands on R
    z = np.linspace(-12.0, 12.0, 48001)
    ref = float(np.sum(f(math.sqrt(q) * z) * np.exp(-0.5 * z * z)) * (z[1] - z[0]))
    ref /= math.sqrt(2 * math.pi)
    assert T.gaussian_expectation(f, q) == pytest.approx(ref, abs=1e-10)
    assert T.e_dphi_sq(act, q) == pytest.approx(T.gaussian_expectation(f, q), abs=1e-15)
    # 200-node Gauss-Hermite (as used for theory.md) agrees at moderate q; for tanh at q = 5 it
    # is off by 2e-6 because sech^4(sqrt(q) z) is too narrow for its nodes near 0.
    hermite = T.gaussian_expectation(f, q, method="hermite", n_nodes=200)
    assert hermite == pytest.approx(ref, abs=1e-9 if q <= 1.0 else 1e-5)


def test_hardtanh_second_moment_exact() -> None:
    """E[clip(z, -1, 1)^2] = P(|z| > 1) + erf(1/sqrt 2) - 2 pdf(1), a kinked integrand."""
    exact = (1 - math.erf(1 / math.sqrt(2))) + math.erf(1 / math.sqrt(2))
    exact -= 2 * math.exp(-0.5) / math.sqrt(2 * math.pi)
    assert T.e_phi_sq("hardtanh", 1.0) == pytest.approx(exact, abs=1e-13)
