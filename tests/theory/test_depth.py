"""Depth scales, phase and the predicted gradient ratio (theory.md section 1 depth-scale table, case 8).

Each test pins a number from /work/shared/reference/theory.md ('case N' = its "Reference
test cases").
"""

from __future__ import annotations

import math

import pytest

from gradmedic import theory as T

DEPTH_TABLE = [  # sw2, q*, chi1, c*, xi_q, xi_c, xi_grad
    (1.00, 0.19359, 0.75903, 1.0, 1.748, 3.627, 3.627),
    (1.50, 0.41804, 0.93864, 1.0, 1.683, 15.791, 15.791),
    (1.75, 0.56335, 0.99766, 1.0, 1.528, 426.2, 426.2),
    (2.00, 0.72176, 1.04767, 0.74408, 1.388, 25.213, -21.475),
    (2.50, 1.06396, 1.13352, 0.44680, 1.180, 11.796, -7.979),
    (3.00, 1.42801, 1.20893, 0.29932, 1.041, 9.051, -5.270),
]


@pytest.mark.parametrize(("sw2", "q", "chi", "c", "xq", "xc", "xg"), DEPTH_TABLE)
def test_depth_scale_table_tanh(
    sw2: float, q: float, chi: float, c: float, xq: float, xc: float, xg: float
) -> None:
    d = T.depth_scales("tanh", sw2, 0.05)
    # The table gives 5 significant digits for q*, chi1, c* and 4-5 for the depth scales, so
    # 1e-3 relative (looser than the rounding) is a check of the formulas, not of the rounding.
    assert d.q_star == pytest.approx(q, rel=1e-4)
    assert d.chi1 == pytest.approx(chi, rel=1e-4)
    assert d.c_star == pytest.approx(c, abs=1e-4)
    assert d.xi_q == pytest.approx(xq, rel=1e-3)
    # Near the critical line (sw2 = 1.75, chi1 = 0.99766) xi = -1/log(chi1) ~ 1/(1 - chi1)
    # amplifies the 5e-6 rounding of chi1 into +-0.2% of xi: allow 5e-3 there.
    rel = 5e-3 if sw2 == 1.75 else 1e-3
    assert d.xi_c == pytest.approx(xc, rel=rel)
    assert d.xi_grad == pytest.approx(xg, rel=rel)
    assert T.xi_q("tanh", sw2, 0.05) == d.xi_q
    assert T.xi_c("tanh", sw2, 0.05) == d.xi_c
    assert T.xi_grad("tanh", sw2, 0.05) == d.xi_grad
    assert T.fixed_point_c("tanh", sw2, 0.05) == d.c_star
    expected_phase = "ordered" if chi < 1 else "chaotic"
    assert T.phase("tanh", sw2, 0.05) == expected_phase


def test_xi_q_is_slope_of_length_map() -> None:
    """xi_q^-1 = -log(chi1 + sw2 E[phi'' phi]): check against a finite difference of the map."""
    sw2, sb2 = 2.0, 0.05
    q = T.fixed_point_q("tanh", sw2, sb2)
    h = 1e-5
    slope = (T.length_map(q + h, "tanh", sw2, sb2) - T.length_map(q - h, "tanh", sw2, sb2)) / (
        2 * h
    )
    assert T.xi_q("tanh", sw2, sb2) == pytest.approx(-1 / math.log(slope), rel=1e-7)
    a = T.get_activation("tanh")
    phi_dd = T.gaussian_expectation(lambda x: a.d2phi(x) * a.phi(x), q)
    assert T.chi1("tanh", sw2, sb2) + sw2 * phi_dd == pytest.approx(slope, rel=1e-8)


@pytest.mark.parametrize(
    ("sw2", "expected"),
    [(1 / 3, 5.2e-12), (1.0, 4.3e-5), (2.0, 1.0)],  # case 8: sqrt(chi1)^29
)
def test_predicted_gradient_ratio_case_8(sw2: float, expected: float) -> None:
    r = T.predicted_gradient_ratio("relu", sw2, 0.0, 30)
    assert r.norm_ratio == pytest.approx(expected, rel=0.01)
    assert r.norm_ratio == pytest.approx(math.sqrt(sw2 / 2) ** 29, rel=1e-12)
    assert r.sq_norm_ratio == pytest.approx((sw2 / 2) ** 29, rel=1e-12)
    assert r.layer_gain == pytest.approx(math.sqrt(sw2 / 2), rel=1e-15)
    assert 10**r.log10_norm_ratio == pytest.approx(r.norm_ratio, rel=1e-9)
    assert T.expected_layer_gain("relu", sw2, 0.0) == pytest.approx(r.layer_gain, rel=1e-15)


def test_predicted_gradient_ratio_depth_one_and_underflow() -> None:
    assert T.predicted_gradient_ratio("tanh", 0.5, 0.0, 1).norm_ratio == 1.0
    deep = T.predicted_gradient_ratio("relu", 0.1, 0.0, 5000)
    assert deep.sq_norm_ratio == 0.0
    assert deep.log10_norm_ratio == pytest.approx(0.5 * 4999 * math.log10(0.05), rel=1e-12)


def test_phase_tolerance() -> None:
    assert T.phase("relu", 2.0, 0.0) == "critical"
    assert T.phase("relu", 2.001, 0.0) == "critical"  # chi1 = 1.0005
    assert T.phase("relu", 2.01, 0.0) == "chaotic"
    assert T.phase("relu", 1.99, 0.0) == "ordered"
    assert T.phase("relu", 2.01, 0.0, tol=0.01) == "critical"
    assert T.phase("tanh", T.critical_sigma_w2("tanh", 0.1), 0.1) == "critical"
