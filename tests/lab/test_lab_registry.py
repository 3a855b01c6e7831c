"""Tests of the lab registry (names, order, sizes, JSON) and of the pinned measurements the
experiments rest on."""

from __future__ import annotations

import math

import pytest
import torch

from gradmedic._json import to_jsonable
from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.lab import (
    EXPERIMENTS,
    LabContext,
    chain,
    get_experiment,
    losses,
    normalisation,
    run_lab,
)
from gradmedic.lab.common import NormRecorder, flat_measures, per_layer_chi
from gradmedic.lab.registry import ExperimentResult

ORDER = [
    "depth-chain",
    "activation-derivatives",
    "saturation-over-training",
    "activations-deep",
    "loss-pairing",
    "rnn-vs-gated",
    "inception-aux",
    "init",
    "exploding-and-clipping",
    "normalisation-and-residual",
    "transformer-proxy",
]


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_lists_the_ten_experiments_in_article_order():
    assert list(EXPERIMENTS) == ORDER
    for exp in EXPERIMENTS.values():
        assert exp.title and exp.claim.endswith(".") and exp.source


def test_unknown_experiment_name_suggests_the_close_one():
    with pytest.raises(UnknownNameError) as err:
        get_experiment("depth-chian")
    assert str(err.value).startswith(
        "unknown experiment 'depth-chian'; did you mean 'depth-chain'?"
    )
    assert "Valid names: activation-derivatives, activations-deep, all, depth-chain" in str(
        err.value
    )


def test_run_lab_rejects_unknown_and_empty_names(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown experiment 'inception'; did you mean"):
        run_lab(["inception"], quick=True, out=tmp_path)
    with pytest.raises(ConfigError, match="no experiment given; name one or more"):
        run_lab([], quick=True, out=tmp_path)


def test_context_picks_by_size(tmp_path):
    assert LabContext(quick=True, tiny=True, out=tmp_path).pick(1, 2, 3) == 1
    assert LabContext(quick=True, out=tmp_path).pick(1, 2, 3) == 2
    assert LabContext(quick=False, out=tmp_path).pick(1, 2, 3) == 3


def test_clean_makes_json_strict():
    assert to_jsonable({"a": math.nan, "b": [math.inf, -math.inf], "c": torch.tensor(2.5)}) == {
        "a": "nan",
        "b": ["inf", "-inf"],
        "c": 2.5,
    }
    r = ExperimentResult("x", None, {}, "")
    assert r.verdict == "n/a"


# ---------------------------------------------------------------------------------------------
# pinned measurements


def test_depth_chain_matches_alpha_pow_L_and_the_article_case():
    ratios, products = chain.chain_ratios(0.9, 20, seed=0)
    assert ratios[19] == pytest.approx(0.121577, rel=1e-5)
    assert ratios[19] == pytest.approx(0.9**20, rel=1e-12)
    assert products[19] == pytest.approx(ratios[19], rel=1e-12)
    grow, _ = chain.chain_ratios(1.1, 20, seed=1)
    assert grow[19] == pytest.approx(6.727500, rel=1e-6)


def test_derivative_maxima_and_mc_second_moment():
    assert chain.derivative_maximum("sigmoid") == (0.25, 0.0)
    assert chain.derivative_maximum("tanh") == (1.0, 0.0)
    g, x = chain.derivative_maximum("gelu")
    assert g == pytest.approx(1.128904, abs=1e-5) and x == pytest.approx(1.414, abs=1e-3)
    mc, se = chain.mc_dphi_sq("relu", 1.0, 20_000)
    # the Monitor's statistics use the leading STATS_MAX = 16,384 of the 20,000 entries
    assert abs(mc - 0.5) < 4 * se and se == pytest.approx(0.5 / math.sqrt(16_384), rel=0.05)


def test_loss_pairing_errors_at_extreme_logits():
    small = losses.bce_errors(1.0)
    assert small["unfused_err"] < 1e-6 and small["fused_err"] < 1e-6
    # sigmoid(30) rounds to 1 in float32: the confidently wrong logit gets a zero gradient
    mid = losses.bce_errors(30.0)
    assert mid["unfused_err"] == pytest.approx(1.0) and mid["unfused_zero_grads"] == 1
    assert mid["fused_err"] < 1e-6
    # log(softmax) underflows once the logit gap 2s passes ~104: NaN gradients, fused exact
    ce = losses.ce_errors(60.0)
    assert ce["unfused_err"] == math.inf and ce["unfused_nonfinite"] == 10
    assert ce["fused_err"] < 1e-6
    assert losses.first_broken([1.0, 30.0, 60.0], [1e-8, 0.6, math.inf]) == 30.0
    assert math.isnan(losses.first_broken([1.0], [0.1]))


def test_monitor_names_the_log_module_in_unfused_softmax():
    events = losses.monitor_unfused_ce(200.0)
    assert events[0]["kind"] == "nonfinite_forward" and events[0]["module"] == "2"


def test_profile_helpers():
    # squared ratio 0.25 between every pair of inner layers
    prof = [8.0, 4.0, 2.0, 1.0, 0.5, 0.25]
    assert per_layer_chi(prof, skip=0) == pytest.approx(4.0)


def test_flat_measures_names_each_case_field():
    rows = [{"case": "a", "x": 1.0, "y": 2}, {"case": "b", "x": 3.0, "y": 4}]
    assert flat_measures(rows, "case", {"loss": "x"}) == {"a_loss": 1.0, "b_loss": 3.0}


def test_norm_recorder_matches_the_global_norm_and_changes_nothing():
    lin = torch.nn.Linear(3, 2)
    lin.weight.grad = torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    lin.bias.grad = torch.tensor([12.0, 0.0])
    rec = NormRecorder()
    assert rec(list(lin.parameters())) == pytest.approx(13.0)  # sqrt(9 + 16 + 144)
    assert rec.norms == [pytest.approx(13.0)] and float(lin.bias.grad[0]) == 12.0


def test_sample_cosine_of_the_representation_before_the_output_layer():
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(2, 1))
    # three samples: (1, 0), (0, 1), (1, 1): cosines 0, 1/sqrt2, 1/sqrt2 -> mean sqrt2/3
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert normalisation.sample_cosine(model, x) == pytest.approx(math.sqrt(2) / 3, rel=1e-6)
    assert normalisation.sample_cosine(model, torch.ones(4, 2)) == pytest.approx(1.0, rel=1e-6)
