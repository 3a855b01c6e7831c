"""Tests for gradmedic.theory: each pins a number from /work/shared/reference/theory.md.

Section and case numbers refer to that file ("case N" = its "Reference test cases").
"""

from __future__ import annotations

import doctest
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradmedic import theory as T
from gradmedic.errors import ConfigError, GradmedicError, UnknownNameError

SRC = Path(__file__).resolve().parents[1] / "src"

# --------------------------------------------------------------------------------------------
# Section 1: critical line for tanh (case 4) and its q*-parametrisation
# --------------------------------------------------------------------------------------------

TANH_CRITICAL = [  # sb2, critical sw2, q* on the line (case 4, abs 1e-4)
    (0.0, 1.000000, 0.0),
    (0.01, 1.424205, 0.273301),
    (0.05, 1.760955, 0.570048),
    (0.1, 1.986073, 0.805799),
    (0.3, 2.505127, 1.461169),
]


@pytest.mark.parametrize(("sb2", "sw2", "q_star"), TANH_CRITICAL)
def test_tanh_critical_sigma_w2_and_q_star(sb2: float, sw2: float, q_star: float) -> None:
    w = T.critical_sigma_w2("tanh", sb2)
    assert w == pytest.approx(sw2, abs=1e-4)
    assert T.fixed_point_q("tanh", w, sb2) == pytest.approx(q_star, abs=1e-4)
    assert T.chi1("tanh", w, sb2) == pytest.approx(1.0, abs=1e-8)


def test_critical_line_matches_critical_sigma_w2() -> None:
    pts = T.critical_line("tanh", [sb2 for sb2, _, _ in TANH_CRITICAL])
    for p, (sb2, sw2, q_star) in zip(pts, TANH_CRITICAL, strict=True):
        assert isinstance(p, T.CriticalPoint)
        assert p.sigma_b2 == sb2
        assert p.sigma_w2 == pytest.approx(sw2, abs=1e-4)
        assert p.q_star == pytest.approx(q_star, abs=1e-4)


@pytest.mark.parametrize(
    ("q", "sw2", "sb2", "tol_b"),
    [  # Section 1, "Line parametrised by q*" (6 decimals given, 4.7e-6 and 1.51803 fewer)
        (1 / 64, 1.030558, 4.7e-6, 1e-7),
        (0.25, 1.393962, 0.008125, 1e-6),
        (0.5, 1.687975, 0.038041, 1e-6),
        (1.0, 2.153303, 0.150965, 1e-6),
        (2.0, 2.861162, 0.512265, 1e-6),
        (4.0, 3.90700, 1.51803, 1e-5),
    ],
)
def test_critical_line_parametrised_by_q(q: float, sw2: float, sb2: float, tol_b: float) -> None:
    p = T.critical_point_at_q("tanh", q)
    assert p.sigma_w2 == pytest.approx(sw2, abs=1e-5)
    assert p.sigma_b2 == pytest.approx(sb2, abs=tol_b)
    # the two parametrisations describe the same line
    assert T.fixed_point_q("tanh", p.sigma_w2, p.sigma_b2) == pytest.approx(q, rel=1e-8)
    assert T.chi1("tanh", p.sigma_w2, p.sigma_b2) == pytest.approx(1.0, abs=1e-10)
    assert T.critical_line_from_q("tanh", [q]) == [p]


# --------------------------------------------------------------------------------------------
# Section 1: depth-scale table for tanh at sb2 = 0.05
# --------------------------------------------------------------------------------------------

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


def test_c_star_is_a_fixed_point_of_the_correlation_map() -> None:
    c = T.fixed_point_c("tanh", 2.5, 0.05)
    assert T.correlation_map(c, "tanh", 2.5, 0.05) == pytest.approx(c, abs=1e-12)
    # c = 1 is always fixed (up to the precision of q*)
    assert T.correlation_map(1.0, "tanh", 2.5, 0.05) == pytest.approx(1.0, abs=1e-12)


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


# --------------------------------------------------------------------------------------------
# Section 1: ReLU family closed forms, PyTorch inits (cases 3, 8)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Section 7: activations (case 14), SELU, gamma
# --------------------------------------------------------------------------------------------


def test_derivative_values_case_14() -> None:
    sig, tanh, gelu, silu = (T.get_activation(n) for n in ("sigmoid", "tanh", "gelu", "silu"))
    assert float(sig.dphi(0.0)) == pytest.approx(0.25, abs=1e-12)
    assert sig.dphi_extrema().max_value == pytest.approx(0.25, abs=1e-5)
    assert sig.gamma == 0.25
    assert float(tanh.dphi(0.0)) == 1.0
    assert tanh.dphi_extrema().max_value == pytest.approx(1.0, abs=1e-5)
    assert tanh.gamma == 1.0
    assert float(gelu.dphi(0.0)) == pytest.approx(0.5, abs=1e-12)
    assert float(silu.dphi(0.0)) == pytest.approx(0.5, abs=1e-12)
    g = gelu.dphi_extrema()
    assert g.max_value == pytest.approx(1.128904, abs=1e-5)
    assert g.argmax == pytest.approx(1.414214, abs=1e-5)
    assert g.min_value == pytest.approx(-0.128904, abs=1e-5)
    assert g.argmin == pytest.approx(-1.414214, abs=1e-5)
    assert gelu.gamma == pytest.approx(1.128904, abs=1e-5)
    s = silu.dphi_extrema()
    assert s.max_value == pytest.approx(1.099839, abs=1e-5)
    assert s.argmax == pytest.approx(2.399357, abs=1e-5)
    assert s.min_value == pytest.approx(-0.099839, abs=1e-5)
    assert s.argmin == pytest.approx(-2.399357, abs=1e-5)
    assert silu.gamma == pytest.approx(1.099839, abs=1e-5)
    x = np.linspace(-5, 5, 11)
    for act in (gelu, silu):  # phi'(x) + phi'(-x) = 1 (section 7 table)
        np.testing.assert_allclose(act.dphi(x) + act.dphi(-x), 1.0, atol=1e-12)


@pytest.mark.parametrize("name", T.activation_names())
def test_closed_form_derivatives_match_finite_differences(name: str) -> None:
    act = T.get_activation(name)
    x = np.array([-3.1, -1.7, -0.6, -0.2, 0.3, 0.7, 1.4, 2.9])  # away from every kink
    h = 1e-6
    np.testing.assert_allclose(
        act.dphi(x), (act.phi(x + h) - act.phi(x - h)) / (2 * h), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        act.d2phi(x), (act.dphi(x + h) - act.dphi(x - h)) / (2 * h), rtol=1e-5, atol=1e-7
    )


def test_gamma_values() -> None:
    assert T.get_activation("relu").gamma == 1.0
    assert T.get_activation("leaky_relu(0.2)").gamma == 1.0
    assert T.get_activation("elu(alpha=2)").gamma == 2.0
    assert T.get_activation("selu").gamma == pytest.approx(1.0507009873554805 * 1.6732632423543772)
    assert T.get_activation("hardtanh").gamma == 1.0


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


# --------------------------------------------------------------------------------------------
# User callables, name parsing, errors
# --------------------------------------------------------------------------------------------


def test_callable_activation_matches_builtin_tanh() -> None:
    act = T.Activation.from_callable(np.tanh, name="my_tanh")
    for sw2, sb2 in [(2.0, 0.05), (25 / 9, 0.0), (1.5, 0.3)]:
        assert T.chi1(act, sw2, sb2) == pytest.approx(T.chi1("tanh", sw2, sb2), abs=1e-6)
    assert T.chi1(np.tanh, 2.0, 0.05) == pytest.approx(T.chi1("tanh", 2.0, 0.05), abs=1e-6)
    assert act.gamma == pytest.approx(1.0, abs=1e-8)
    assert T.critical_sigma_w2(act, 0.05) == pytest.approx(1.760955, abs=1e-4)


def test_callable_scalar_function_is_vectorised() -> None:
    act = T.Activation.from_callable(math.tanh, name="scalar_tanh")
    assert T.chi1(act, 2.0, 0.05) == pytest.approx(T.chi1("tanh", 2.0, 0.05), abs=1e-6)


@pytest.mark.parametrize(
    ("spec", "kwargs", "expected_spec", "slope_at_minus_one"),
    [
        ("leaky_relu", {}, "leaky_relu(negative_slope=0.01)", 0.01),
        ("leaky_relu(0.2)", {}, "leaky_relu(negative_slope=0.2)", 0.2),
        ("leaky_relu(slope=0.3)", {}, "leaky_relu(negative_slope=0.3)", 0.3),
        ("LeakyReLU", {"negative_slope": 0.1}, "leaky_relu(negative_slope=0.1)", 0.1),
        ("elu(alpha=0.5)", {}, "elu(alpha=0.5)", 0.5 * math.exp(-1)),
        ("elu", {"alpha": 0.5}, "elu(alpha=0.5)", 0.5 * math.exp(-1)),
        ("hardtanh(-2, 2)", {}, "hardtanh(min_val=-2, max_val=2)", 1.0),
        ("hardtanh(min=-0.5, max=0.5)", {}, "hardtanh(min_val=-0.5, max_val=0.5)", 0.0),
        (" Tanh ", {}, "tanh", 1 - math.tanh(1) ** 2),
        ("swish", {}, "silu", float(T.get_activation("silu").dphi(-1.0))),
    ],
)
def test_activation_name_parsing(
    spec: str, kwargs: dict, expected_spec: str, slope_at_minus_one: float
) -> None:
    act = T.get_activation(spec, **kwargs)
    assert act.spec == expected_spec
    assert float(act.dphi(-1.0)) == pytest.approx(slope_at_minus_one, rel=1e-12)
    assert T.get_activation(act.spec) == act  # round trip; equal activations hash alike
    assert hash(T.get_activation(act.spec)) == hash(act)


def test_unknown_activation_message() -> None:
    with pytest.raises(UnknownNameError) as info:
        T.get_activation("tanhh")
    assert str(info.value) == (
        "unknown activation 'tanhh'; did you mean 'tanh'? Valid names: elu, gelu, hardswish, "
        "hardtanh, leaky_relu, linear, mish, relu, selu, sigmoid, silu, softplus, softsign, tanh"
    )
    assert isinstance(info.value, GradmedicError)
    with pytest.raises(UnknownNameError, match="unknown activation 'swishy'"):
        T.chi1("swishy", 1.0, 0.0)


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        ("leaky_relu(0.2", {}, "could not parse activation"),
        ("elu(alpha=x)", {}, "could not read 'x'"),
        ("elu(beta=1)", {}, "takes alpha; got 'beta'"),
        ("relu(1)", {}, "takes no parameters"),
        ("elu(alpha=0.5)", {"alpha": 0.2}, "given twice"),
        ("elu(alpha=-1)", {}, "alpha must be > 0"),
        ("hardtanh(1, -1)", {}, "min_val < max_val"),
        ("hardtanh(min_val=-2, 2)", {}, "could not place"),
    ],
)
def test_bad_activation_specs(spec: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        T.get_activation(spec, **kwargs)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: T.chi1("tanh", -1.0, 0.0), "sigma_w2 must be > 0"),
        (lambda: T.chi1("tanh", float("nan"), 0.0), "sigma_w2 must be a finite number"),
        (lambda: T.chi1("tanh", 1.0, -0.1), "sigma_b2 must be >= 0"),
        (lambda: T.summary("tanh", 1.0, 0.0, 0), "depth must be an integer >= 1"),
        (lambda: T.predicted_gradient_ratio("tanh", 1.0, 0.0, 2.5), "depth must be an integer"),
        (lambda: T.e_dphi_sq("tanh", -1.0), "q must be >= 0"),
        (lambda: T.correlation_map(1.5, "tanh", 1.0, 0.0), r"c must lie in \[-1, 1\]"),
        (lambda: T.pascanu_bound(np.ones((2, 3))), "square matrix"),
        (lambda: T.gaussian_expectation(np.tanh, 1.0, method="simpson"), "method must be"),
    ],
)
def test_bad_values_raise_config_error(call, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()


# --------------------------------------------------------------------------------------------
# Section 5: Pascanu et al. 2013
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Phase, summary, formatting
# --------------------------------------------------------------------------------------------


def test_phase_tolerance() -> None:
    assert T.phase("relu", 2.0, 0.0) == "critical"
    assert T.phase("relu", 2.001, 0.0) == "critical"  # chi1 = 1.0005
    assert T.phase("relu", 2.01, 0.0) == "chaotic"
    assert T.phase("relu", 1.99, 0.0) == "ordered"
    assert T.phase("relu", 2.01, 0.0, tol=0.01) == "critical"
    assert T.phase("tanh", T.critical_sigma_w2("tanh", 0.1), 0.1) == "critical"


def test_summary_is_strict_json_and_consistent() -> None:
    d = T.summary("tanh", 2.0, 0.05, 30)
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text) == d
    assert d["activation"] == "tanh"
    assert (d["sigma_w2"], d["sigma_b2"], d["depth"]) == (2.0, 0.05, 30)
    assert d["q_star"] == pytest.approx(0.72176, rel=1e-4)
    assert d["chi1"] == pytest.approx(1.04767, rel=1e-4)
    assert d["xi_c"] == pytest.approx(25.213, rel=1e-3)
    assert d["xi_grad"] == pytest.approx(-21.475, rel=1e-3)
    assert d["six_xi_c"] == pytest.approx(6 * d["xi_c"])
    assert d["phase"] == "chaotic"
    assert d["critical_sigma_w2"] == pytest.approx(1.760955, abs=1e-4)
    assert d["norm_ratio"] == pytest.approx(math.sqrt(d["chi1"]) ** 29, rel=1e-12)
    assert d["sq_norm_ratio"] == pytest.approx(d["chi1"] ** 29, rel=1e-12)
    assert d["trainable"] is True
    assert T.summary("tanh", 2.0, 0.05, 200)["trainable"] is False  # 200 > 6 xi_c = 151
    for key in ("xi_q", "c_star", "layer_gain", "notes", "non_finite"):
        assert key in d


def test_summary_non_finite_values_are_named() -> None:
    d = T.summary("relu", 3.0, 0.1, 30)  # q* diverges
    json.dumps(d, allow_nan=False)
    assert d["q_star"] is None
    assert d["non_finite"]["q_star"] == "inf"
    assert d["non_finite"]["xi_c"] == "nan"
    assert d["chi1"] == 1.5
    assert d["trainable"] is False  # falls back to 6 |xi_grad| = 14.8 < 30
    crit = T.summary("tanh", 1.0, 0.0, 50)
    assert crit["phase"] == "critical"
    assert crit["non_finite"]["xi_c"] == "inf"
    assert crit["trainable"] is True


def test_format_summary_is_aligned_text() -> None:
    text = T.format_summary(T.summary("tanh", 2.0, 0.05, 30))
    lines = text.splitlines()
    assert lines[0].startswith("activation")
    assert "tanh" in lines[0] and "depth=30" in lines[0]
    assert "chaotic" in text and "1.04767" in text and "-21.48" in text
    col = {len(line) - len(line[len(line.split("  ")[0]) :].lstrip()) for line in lines}
    assert len(col) == 1  # every value starts in the same column
    assert "inf" in T.format_summary(T.summary("tanh", 1.0, 0.0, 10))


# --------------------------------------------------------------------------------------------
# Module hygiene
# --------------------------------------------------------------------------------------------


def test_import_gradmedic_theory_without_torch() -> None:
    """`import gradmedic.theory` through the package, with torch unavailable."""
    code = "import sys; sys.modules['torch'] = None; import gradmedic.theory; print('ok')"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_docstring_examples() -> None:
    result = doctest.testmod(T, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 20


@pytest.mark.parametrize(
    ("name", "dphi0", "gamma"),
    [("softplus", 0.5, 1.0), ("mish", 0.6, None), ("hardswish", 0.5, 1.5)],
)
def test_softplus_mish_hardswish_slopes_and_expectations(name, dphi0, gamma) -> None:
    act = T.get_activation(name)
    assert float(act.dphi(np.array(0.0))) == pytest.approx(dphi0, abs=1e-12)
    if gamma is not None:
        assert act.gamma == pytest.approx(gamma)
    z = np.random.default_rng(0).standard_normal(1_000_000)
    mc = np.mean(act.dphi(z) ** 2)
    assert T.e_dphi_sq(name, 1.0) == pytest.approx(mc, abs=5 * np.std(act.dphi(z) ** 2) / 1e3)
