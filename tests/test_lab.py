"""Tests of the lab: registry, verdict logic on constructed numbers, pinned measurements, and a
tiny run of every experiment (files, verdict fields, results page)."""

from __future__ import annotations

import csv
import html
import json
import math

import pytest
import torch

from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.lab import (
    EXPERIMENTS,
    LabContext,
    chain,
    feedforward,
    get_experiment,
    inception,
    losses,
    recurrent,
    run_lab,
)
from gradmedic.lab.common import NormRecorder, first_last_ratio, flat_measures, per_layer_chi
from gradmedic.lab.registry import ExperimentResult, clean

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
]


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


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
    assert clean({"a": math.nan, "b": [math.inf, -math.inf], "c": torch.tensor(2.5)}) == {
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
    assert abs(mc - 0.5) < 4 * se and se == pytest.approx(0.5 / math.sqrt(20_000), rel=0.05)


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
    assert first_last_ratio([1e-3, 0.1, 1.0]) == pytest.approx(1e-3)
    assert math.isnan(first_last_ratio([1.0, 0.0]))
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
    assert feedforward.sample_cosine(model, x) == pytest.approx(math.sqrt(2) / 3, rel=1e-6)
    assert feedforward.sample_cosine(model, torch.ones(4, 2)) == pytest.approx(1.0, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# verdict logic on constructed numbers (one pass and one fail case each)


def test_judge_depth_chain():
    assert chain.judge_depth_chain(1e-12, 0.9**20, 1e-12)[0] is True
    ok, crit = chain.judge_depth_chain(2e-6, 0.9**20, 1e-12)
    assert ok is False and "relative error <= 1e-06 (max 2e-06)" in crit
    assert chain.judge_depth_chain(0.0, 0.1216, 0.0)[0] is False


def test_judge_activation_derivatives():
    assert chain.judge_activation_derivatives(0.25, 1.0, 3.9)[0] is True
    assert chain.judge_activation_derivatives(0.25, 1.0, 4.1)[0] is False
    assert chain.judge_activation_derivatives(0.2500001, 1.0, 0.0)[0] is False


def test_judge_saturation():
    assert feedforward.judge_saturation(0.12, 0.50, 0.01, 0.0)[0] is True
    assert feedforward.judge_saturation(0.25, 0.50, 0.01, 0.0)[0] is False
    assert feedforward.judge_saturation(0.12, 0.40, 0.01, 0.0)[0] is False
    ok, crit = feedforward.judge_saturation(0.12, 0.50, 0.01, 0.3)
    assert ok is False and "saturated fraction < 0.05 (measured 0.3)" in crit


def _deep(sig=2.30, fam=0.4, dead_relu=0.1, dead_leaky=0.0):
    loss = {a: 1.0 for a in feedforward.DEEP_ACTS}
    loss.update(sigmoid=sig, relu=fam, leaky_relu=fam, elu=fam)
    dead = {a: 0.0 for a in feedforward.DEEP_ACTS}
    dead.update(relu=dead_relu, leaky_relu=dead_leaky)
    return loss, dead


def test_judge_activations_deep():
    assert feedforward.judge_activations_deep(*_deep())[0] is True
    assert feedforward.judge_activations_deep(*_deep(sig=1.5))[0] is False  # sigmoid trains
    assert feedforward.judge_activations_deep(*_deep(fam=1.2))[0] is False  # margin missed
    ok, crit = feedforward.judge_activations_deep(*_deep(dead_relu=0.0))
    assert ok is False and "ReLU's is > 0 (measured 0)" in crit
    assert feedforward.judge_activations_deep(*_deep(dead_leaky=0.01))[0] is False


def _init_numbers(worst=0.05, he=0.3, default=2.3, crit=0.1):
    final = dict(default=default, xavier=2.3, kaiming=he, orthogonal=0.3, lsuv=0.3)
    return {"kaiming": worst, "default": 0.01}, final, dict(ordered=0.4, critical=crit, chaotic=0.2)


def test_judge_init():
    assert feedforward.judge_init(*_init_numbers())[0] is True
    assert feedforward.judge_init(*_init_numbers(worst=0.2))[0] is False
    assert feedforward.judge_init(*_init_numbers(he=1.5))[0] is False
    assert feedforward.judge_init(*_init_numbers(default=1.9))[0] is False
    assert feedforward.judge_init(*_init_numbers(crit=0.3))[0] is False


def test_judge_norm_residual():
    good = {"plain": 2.3, "batchnorm": 0.2, "layernorm": 0.3, "residual": 0.1,
            "zero-init-residual": 0.1}  # fmt: skip
    ok, crit = feedforward.judge_norm_residual(1e-9, good)
    assert ok is True
    assert crit.startswith("each net at its best learning rate of the common grid {0.001, 0.01}")
    assert feedforward.judge_norm_residual(1e-2, good)[0] is False
    assert feedforward.judge_norm_residual(1e-9, {**good, "layernorm": 1.2})[0] is False
    assert feedforward.judge_norm_residual(1e-9, {**good, "plain": 1.0})[0] is False


def test_judge_loss_pairing():
    assert losses.judge_loss_pairing(1e-7, 20.0, 60.0)[0] is True
    assert losses.judge_loss_pairing(1e-4, 20.0, 60.0)[0] is False
    assert losses.judge_loss_pairing(1e-7, math.nan, 60.0)[0] is False
    assert losses.judge_loss_pairing(1e-7, 20.0, 300.0)[0] is False


def test_judge_rnn_vs_gated():
    mse = {"rnn": 0.17, "lstm": 0.01, "gru": 0.02}
    mem = {"rnn": 1e-4, "lstm": 0.05, "gru": 0.5}
    assert recurrent.judge_rnn_vs_gated(mse, mem)[0] is True
    assert recurrent.judge_rnn_vs_gated({**mse, "rnn": 0.05}, mem)[0] is False
    assert recurrent.judge_rnn_vs_gated({**mse, "lstm": 0.12}, mem)[0] is False
    ok, crit = recurrent.judge_rnn_vs_gated(mse, {**mem, "lstm": 5e-3})
    assert ok is False and "LSTM 0.005" in crit


def test_judge_exploding():
    spike, div = {"rnn": math.inf, "mlp": 50.0}, {"rnn": True, "mlp": True}
    fin = {"rnn/agc": True, "mlp/agc": True}
    assert recurrent.judge_exploding(spike, div, fin)[0] is True
    assert recurrent.judge_exploding({**spike, "mlp": 3.0}, div, fin)[0] is False
    assert recurrent.judge_exploding(spike, {**div, "rnn": False}, fin)[0] is False
    ok, crit = recurrent.judge_exploding(spike, div, {**fin, "mlp/agc": False})
    assert ok is False and "non-finite: mlp/agc" in crit


def test_judge_inception():
    assert inception.judge_inception(1e-6, 1e-3, 4e-3)[0] is True
    assert inception.judge_inception(1e-6, 1e-3, 1.5e-3)[0] is False
    assert inception.judge_inception(5e-4, 1e-3, 4e-3)[0] is False


# ---------------------------------------------------------------------------------------------
# tiny runs of every experiment


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab")
    messages: list[str] = []
    run = run_lab(["all"], quick=True, tiny=True, out=out, seed=0, progress=messages.append)
    return run, out, messages


def test_tiny_run_writes_every_output(tiny_run):
    run, out, messages = tiny_run
    assert [r.name for r in run.results] == ORDER
    for r in run.results:
        assert r.error is None, (r.name, r.error, r.note)
        assert isinstance(r.passed, bool)
        assert r.criterion and r.measured and r.size == "tiny" and r.seconds > 0
        assert r.figure == out / r.name / "figure.png" and r.figure.stat().st_size > 5000
        assert r.table == out / r.name / "table.csv" and r.table.read_text().count("\n") >= 2
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= len(ORDER)
    for r in run.results:
        assert f"{r.name}: " in page and html.escape(r.source, quote=False) in page
    data = json.loads((out / "results.json").read_text())
    assert [d["name"] for d in data["results"]] == ORDER
    assert {d["verdict"] for d in data["results"]} <= {"pass", "fail"}
    assert data["meta"]["size"] == "tiny"
    assert messages[0].startswith("[1/10] depth-chain:")
    assert any("PASS in" in m or "FAIL in" in m for m in messages)


def test_tiny_run_numbers(tiny_run):
    run, _, _ = tiny_run
    res = {r.name: r for r in run.results}
    # the verdicts that are exact at any size pass already in the tiny run
    assert res["depth-chain"].passed and res["activation-derivatives"].passed
    assert res["loss-pairing"].passed
    assert res["depth-chain"].measured["alpha0.9_L20_measured"] == pytest.approx(0.121577, 1e-5)
    assert res["loss-pairing"].measured["monitor_first_nonfinite_module"] == "2"


def test_tiny_norm_residual_trains_every_net_at_every_lr(tiny_run):
    run, _, _ = tiny_run
    res = next(r for r in run.results if r.name == "normalisation-and-residual")
    rows = list(csv.DictReader(res.table.open()))
    assert [(r["case"], float(r["lr"])) for r in rows] == [
        (c, lr) for c in feedforward.NORM_CASES for lr in feedforward.NORM_LRS
    ]
    for case in feedforward.NORM_CASES:
        mine = [r for r in rows if r["case"] == case]
        best = min(mine, key=lambda r: float(r["final_loss"]))
        assert [r["best_lr"] for r in mine].count("True") == 1 and best["best_lr"] == "True"
        assert res.measured[f"{case}_final_loss"] == pytest.approx(float(best["final_loss"]))
        assert res.measured[f"{case}_best_lr"] == float(best["lr"])
    # the plain default-init net has collapsed every input onto one direction already
    assert res.measured["plain_sample_cosine_init"] > 0.99


def test_tiny_training_experiment_is_deterministic(tiny_run, tmp_path):
    run, _, _ = tiny_run
    again = run_lab(["normalisation-and-residual"], quick=True, tiny=True, out=tmp_path)
    first = next(r for r in run.results if r.name == "normalisation-and-residual")
    assert again.results[0].measured == first.measured
