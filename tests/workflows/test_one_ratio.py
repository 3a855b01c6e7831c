"""One end-to-end backward-signal ratio: treat's health, diagnose's ratio and the lab's ratio
are the same number on the same run (gradmedic.trace.derived.signal_ratio)."""

from __future__ import annotations

import math

import pytest

from gradmedic.diagnosis import end_to_end
from gradmedic.lab.common import ProfiledRun, linear_names, signal_profile
from gradmedic.trace.derived import health, signal_ratio
from gradmedic.workflows.train import TrainConfig, train
from gradmedic.workflows.treatment import run_metrics
from gradmedic.zoo import build_model, load_data


@pytest.fixture(scope="module")
def run():
    data = load_data("digits")
    model = build_model("mlp:depth=6,width=32,act=sigmoid", data.info, seed=0)
    result = train(model, data, TrainConfig(steps=4, lr=0.1, every=1, seed=0))
    return model, result


def test_treat_diagnose_and_lab_report_the_same_ratio(run):
    model, result = run
    trace = result.trace
    assert trace.signal_steps() == [0, 1, 2, 3]  # every step recorded
    diagnosed = end_to_end(trace).ratio
    layers = linear_names(model)
    lab = ProfiledRun(result, model, layers, signal_profile(trace, layers)).ratio
    row = run_metrics(result)
    # six sigmoid layers, PyTorch's default init: five crossings of sigma'(.) <= 1/4 times a
    # weight gain below 1 leave the input end 5.3e-5 of the output end's signal (seed 0)
    assert diagnosed == pytest.approx(5.29e-5, rel=0.01)
    assert row["first_last_signal_ratio"] == diagnosed
    assert lab == diagnosed
    assert signal_ratio(trace) == diagnosed
    assert row["health"] == health(diagnosed) == pytest.approx(-math.log10(diagnosed))


def test_the_profile_is_not_the_ratio_but_agrees_on_a_plain_chain(run):
    model, result = run
    profile = signal_profile(result.trace, linear_names(model))
    assert len(profile) == 6
    # first / last Linear of a plain MLP are the first / last weighted layers: same ends
    assert profile[0] / profile[-1] == pytest.approx(end_to_end(result.trace).ratio, rel=1e-12)
