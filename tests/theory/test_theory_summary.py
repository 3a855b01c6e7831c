"""summary() and format_summary(): strict JSON, consistency with the parts, aligned text."""

from __future__ import annotations

import json
import math

import pytest

from gradmedic import theory as T


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
    assert d["q_star"] == "inf"
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
