"""Activations: closed forms, derivative extrema, gamma, callables, spec parsing and errors.

Each test pins a number from /work/shared/reference/theory.md ('case N' = its "Reference
test cases").
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradmedic import theory as T
from gradmedic.errors import ConfigError, GradmedicError, UnknownNameError


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
        ("Leaky-ReLU(0.2)", {}, "leaky_relu(negative_slope=0.2)", 0.2),
        ("hardtanh(-2, max_val=3)", {}, "hardtanh(min_val=-2, max_val=3)", 1.0),
        ("elu(ALPHA=0.5)", {}, "elu(alpha=0.5)", 0.5 * math.exp(-1)),
        ("softplus(2)", {}, "softplus(beta=2)", 1 / (1 + math.exp(2))),
        ("softplus(beta=0.5)", {}, "softplus(beta=0.5)", 1 / (1 + math.exp(0.5))),
        ("softplus(beta=1)", {}, "softplus", 1 / (1 + math.e)),
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
        (
            "leaky_relu(0.2",
            {},
            r"cannot read activation 'leaky_relu\(0.2'; write it as name or name\(arg, key=value\)",
        ),
        ("", {}, "empty activation; write a name with optional arguments, e.g. 'tanh'"),
        ("elu(alpha=x)", {}, r"could not read 'x' in activation 'elu\(alpha=x\)' as a number"),
        ("elu(alpha=true)", {}, "could not read True"),
        ("elu(alpha=inf)", {}, "parameter 'alpha' must be a finite number; got inf"),
        ("leaky_relu(0.2, negative_slope=0.3)", {}, "'negative_slope' given twice"),
        ("hardtanh(min=-2, min_val=-3)", {}, "'min_val' given twice"),
        ("softplus(beta=0)", {}, "softplus needs beta > 0"),
        ("elu(beta=1)", {}, "takes alpha; got 'beta'"),
        ("relu(1)", {}, "takes no parameters"),
        ("elu(alpha=0.5)", {"alpha": 0.2}, "given twice"),
        ("elu(alpha=-1)", {}, "alpha must be > 0"),
        ("hardtanh(1, -1)", {}, "min_val < max_val"),
        ("hardtanh(-2, 2, 3)", {}, "takes min_val, max_val; could not place '3'"),
        ("hardtanh(min_val=-2, 2)", {}, "positional argument '2' after a keyword argument"),
    ],
)
def test_bad_activation_specs(spec: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        T.get_activation(spec, **kwargs)


def test_softplus_beta_closed_forms() -> None:
    """nn.Softplus(beta): phi = log(1 + e^(beta x)) / beta, phi' = sigmoid(beta x)."""
    act = T.get_activation("softplus(beta=2)")
    x = np.array([-30.0, -1.5, 0.0, 0.7, 30.0])
    np.testing.assert_allclose(act.phi(x), np.logaddexp(0.0, 2 * x) / 2, rtol=1e-15, atol=0)
    np.testing.assert_allclose(act.dphi(x), 1 / (1 + np.exp(-2 * x)), rtol=1e-14, atol=0)
    d2 = 2 / (2 + np.exp(2 * x) + np.exp(-2 * x))  # 2 sigmoid(2x) sigmoid(-2x)
    np.testing.assert_allclose(act.d2phi(x), d2, rtol=1e-12, atol=0)
    assert act.gamma == 1.0
    assert act != T.get_activation("softplus")
    # E[sigmoid(beta z)^2] (trapezoid rule on z in [-12, 12]; Monte Carlo with 4e6 samples gives
    # 0.26393 and 0.45114): a sharper softplus is closer to ReLU's 1/2
    for beta, expected in ((0.5, 0.2639556), (1.0, 0.2933790), (8.0, 0.4513498)):
        assert T.e_dphi_sq(f"softplus(beta={beta})", 1.0) == pytest.approx(expected, abs=1e-7)
