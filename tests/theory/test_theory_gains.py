"""Predicted per-module gains and init-time predictions from module-info dicts (theory.gains).

The numbers are mean-field ones: ``sqrt(sw2)`` per weight layer, ``sqrt(E[phi'(sqrt(q) z)^2])``
per activation, ``chi1`` per weight+activation pair (Schoenholz et al. 2017, Sec. 5).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradmedic.nn.taxonomy import module_category
from gradmedic.theory.gains import (
    init_predictions,
    module_predicted_gain,
    module_predicted_slope,
    theory_activation,
)


def _trapezoid(f, q: float) -> float:
    """E[f(sqrt(q) z)] by the trapezoid rule on z in [-12, 12] (exponentially accurate)."""
    z = np.linspace(-12.0, 12.0, 48001)
    return float(np.sum(f(math.sqrt(q) * z) * np.exp(-0.5 * z * z)) * (z[1] - z[0])) / math.sqrt(
        2 * math.pi
    )


@pytest.mark.parametrize(
    ("info", "spec"),
    [
        ({"activation": "softplus", "theory": "softplus(beta=2)"}, "softplus(beta=2)"),
        ({"activation": "gelu", "theory": None}, None),  # GELU(approximate="tanh")
        ({"activation": "relu", "theory": ""}, None),
        ({"activation": "tanh"}, "tanh"),  # traces written before the "theory" field
        ({"activation": "leaky_relu", "negative_slope": 0.2}, "leaky_relu(0.2)"),
        ({"activation": "elu"}, "elu(alpha=1.0)"),
        ({"activation": "prelu"}, None),
        ({"type": "Linear", "sw2": 2.0}, None),
    ],
)
def test_theory_activation(info: dict, spec: str | None) -> None:
    assert theory_activation(info) == spec


def test_module_predicted_gain() -> None:
    assert module_predicted_gain({"type": "Linear", "sw2": 2.0}, None) == math.sqrt(2.0)
    assert module_predicted_gain({"type": "Conv2d", "sw2": 0.25}, 7.0) == 0.5
    assert module_predicted_gain({"type": "ConvTranspose2d", "sw2": 1.0}, None) is None
    assert module_predicted_gain({"type": "LSTM", "sw2": 1.0}, 1.0) is None
    assert module_predicted_gain({"type": "Flatten"}, None) == 1.0
    assert module_predicted_gain({"type": "BatchNorm1d"}, 1.0) is None
    tanh = {"type": "Tanh", "activation": "tanh"}
    assert module_predicted_gain(tanh, 0.0) == 1.0
    for q in (None, -1.0, math.nan, math.inf):
        assert module_predicted_gain(tanh, q) is None
    sp = {"type": "Softplus", "activation": "softplus", "theory": "softplus(beta=2)"}
    ref = _trapezoid(lambda x: (1 / (1 + np.exp(-2 * x))) ** 2, 1.0)
    assert module_predicted_gain(sp, 1.0) == pytest.approx(math.sqrt(ref), abs=1e-10)
    assert module_predicted_gain(sp, 1.0) == pytest.approx(0.5904012, abs=1e-7)


def test_module_predicted_slope() -> None:
    assert module_predicted_slope({"type": "ReLU", "activation": "relu"}, 2.0) == 0.5
    ht = {"type": "Hardtanh", "activation": "hardtanh", "theory": "hardtanh(min_val=-2, max_val=2)"}
    assert module_predicted_slope(ht, 1.0) == pytest.approx(math.erf(math.sqrt(2)), abs=1e-13)
    assert module_predicted_slope({"type": "PReLU", "activation": "prelu"}, 1.0) is None
    assert module_predicted_slope({"type": "Linear", "sw2": 1.0}, 1.0) is None


def _mlp(*layers: dict) -> list[dict]:
    return [{"name": str(i), **info} for i, info in enumerate(layers)]


LIN = {"type": "Linear", "sw2": 1 / 3, "sb2": 0.0}  # PyTorch's default nn.Linear init
RELU = {"type": "ReLU", "activation": "relu"}


def test_init_predictions_multiplies_sqrt_chi1_over_the_pairs() -> None:
    p = init_predictions(_mlp(LIN, RELU, LIN, RELU, LIN), module_category)
    assert (len(p.pairs), p.n_weighted, p.normalised) == (2, 3, False)
    first = p.pairs[0]
    assert (first.weight, first.activation, first.act_spec) == ("0", "1", "relu")
    assert first.sw2 == 0.333333  # rounded to 6 decimals, the cache key
    assert first.chi1 == pytest.approx(0.333333 / 2, rel=1e-15)
    assert (first.critical_sw2, first.phase) == (2.0, "ordered")
    assert p.ratio == pytest.approx(0.333333 / 2, rel=1e-12)
    assert p.log10_ratio == pytest.approx(math.log10(0.333333 / 2), rel=1e-12)


def test_init_predictions_tanh_pair_with_bias() -> None:
    lin = {"type": "Linear", "sw2": 1.0, "sb2": 0.05}
    p = init_predictions(_mlp(lin, {"type": "Tanh", "activation": "tanh"}, lin), module_category)
    (pair,) = p.pairs
    assert pair.chi1 == pytest.approx(0.75903, abs=1e-5)  # theory.md depth-scale table
    assert pair.critical_sw2 == pytest.approx(1.760955, abs=1e-5)
    assert p.ratio == pytest.approx(math.sqrt(pair.chi1), rel=1e-12)


def test_init_predictions_normalised_and_unmodelled_pairs() -> None:
    bn = {"type": "BatchNorm1d"}
    p = init_predictions(_mlp(LIN, bn, RELU, LIN), module_category)
    assert (p.pairs, p.ratio, p.normalised, p.n_weighted) == ([], None, True, 2)
    prelu = {"type": "PReLU", "activation": "prelu"}
    p = init_predictions(_mlp(LIN, prelu, LIN, RELU, LIN), module_category)
    assert [(q.weight, q.activation) for q in p.pairs] == [("2", "3")]
    assert p.normalised is False


def test_init_predictions_reads_kinds_only_through_category() -> None:
    modules = _mlp(LIN, RELU, LIN)
    assert init_predictions(modules, lambda info: "other").n_weighted == 0
    everything_norm = init_predictions(modules, lambda info: "norm")
    assert (everything_norm.pairs, everything_norm.normalised) == ([], False)
