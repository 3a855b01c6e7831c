"""treat end to end: the four required cases beat the untreated model; saving; errors.

Margins measured at the time of writing (seed 0, CPU), untreated -> chosen, first/last
backward-signal ratio at init and final loss (mean of the last 10% of steps):
sigmoid MLP 20x32 (40 SGD steps, lr 0.1): add-norm(kind=batch), 7.5e-17 -> 0.53
(16.1 -> 0.27 decades), loss 2.308 -> 1.751;
Xavier ReLU MLP 40x32 (40 momentum steps, lr 0.05): add-residual, 5.0e-7 -> 7.0
(6.30 -> 0.84 decades), loss 2.302 -> 1.165;
tanh RNN on adding-100, hidden 32 (60 Adam steps), ratio through time: replace-rnn(to=lstm),
4.5e-20 -> 9.8e-8 (19.35 -> 7.01 decades), loss 0.1586 -> 0.1532;
RNN with recurrent radius 3: replace-rnn(to=lstm), 1.2e+10 -> 9.8e-8 (10.07 -> 7.01 decades),
loss 0.2880 -> 0.1532.
"""

from __future__ import annotations

import json

import pytest
import torch

from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.remedies import apply
from gradmedic.workflows.train import TrainConfig
from gradmedic.workflows.treatment import treat
from gradmedic.zoo import build_model, load_data


def _check_beats(res, min_decades: float, min_loss_gain: float) -> None:
    base, best = res.untreated, res.best_row
    assert res.best != "untreated"
    assert best["nonfinite"] == 0
    assert res.margins["health_gain_decades"] >= min_decades
    assert best["health"] < base["health"]
    assert res.margins["loss_gain"] >= min_loss_gain
    assert best["final_loss"] < base["final_loss"]


def test_deep_sigmoid_mlp_treatment_beats_untreated(tmp_path):
    res = treat(
        "mlp:depth=20,width=32,act=sigmoid",
        "digits",
        config=TrainConfig(steps=40, lr=0.1, every=5),
        remedies=["swap-activation(to=leaky_relu)+reinit(scheme=kaiming)", "add-norm(kind=batch)"],
        out=tmp_path,
    )
    assert res.untreated["health"] == pytest.approx(16.12, abs=0.01)  # ratio 7.5e-17 at init
    assert res.best == "add-norm(kind=batch)"
    _check_beats(res, min_decades=10, min_loss_gain=0.2)
    # saved output: the transform re-applies to a fresh model and the weights load strictly
    transform = json.loads((tmp_path / "transform.json").read_text())
    assert transform["remedies"] == res.best_specs
    fresh = build_model("mlp:depth=20,width=32,act=sigmoid", load_data("digits").info, seed=1)
    fresh, _ = apply(fresh, transform["spec"])
    fresh.load_state_dict(torch.load(tmp_path / "best_model.pt"))
    data = json.loads((tmp_path / "treatment.json").read_text())
    assert data["best"] == res.best and len(data["rows"]) == 3
    assert data["report_path"] is None  # rendering is gradmedic.report.treatment's job
    assert not (tmp_path / "report.html").exists()
    assert f'apply(model, "{transform["spec"]}"' in res.advice


def test_deep_xavier_relu_mlp_treatment_beats_untreated():
    res = treat(
        "mlp:depth=40,width=32,act=relu,init=xavier",
        "digits",
        config=TrainConfig(steps=40, lr=0.05, optimizer="momentum", every=5),
        remedies=["reinit(scheme=lsuv)", "add-residual"],
    )
    # Xavier on equal widths: sw2 = 1, chi1 = 1/2 for ReLU -> about 2^-19.5 = 1e-6 over 39 layers
    assert 4 < res.untreated["health"] < 9
    _check_beats(res, min_decades=4, min_loss_gain=0.1)


def _treat_on_adding_100(model: str, remedies: list[str] | None = None):
    """``treat`` on the adding problem with T = 100 (1024 sequences, 60 Adam steps)."""
    return treat(
        model,
        load_data("adding-100", n=1024),
        config=TrainConfig(steps=60, batch_size=32, lr=0.01, optimizer="adam", every=5),
        remedies=remedies,
    )


def test_vanilla_rnn_on_adding_100_diagnosis_driven_treatment_beats_untreated():
    res = _treat_on_adding_100("rnn:hidden=32")
    assert "rnn-long-range-vanishing" in res.diagnosis.slugs()
    names = [r["name"] for r in res.rows]
    assert "replace-rnn(to=lstm)" in names
    assert any(n.startswith("skipped forget-bias(value=1.0)") for n in res.notes)
    _check_beats(res, min_decades=5, min_loss_gain=0.002)


def test_rnn_with_recurrent_radius_3_treatment_beats_untreated():
    res = _treat_on_adding_100(
        "rnn:hidden=32,radius=3", ["replace-rnn(to=lstm)", "clip-grad-norm(max_norm=1.0)"]
    )
    assert res.untreated["first_last_signal_ratio"] > 1e8  # exploding back through time
    clip = res.row("clip-grad-norm(max_norm=1.0)")
    assert clip["health"] == pytest.approx(res.untreated["health"])  # clipping leaves init alone
    assert res.best == "replace-rnn(to=lstm)"
    _check_beats(res, min_decades=2, min_loss_gain=0.05)
    with pytest.raises(ConfigError, match="no candidate 'agc'; candidates: untreated, replace"):
        res.row("agc")


def test_bad_remedies_fail_before_training_with_clear_messages():
    with pytest.raises(UnknownNameError, match="unknown remedy 'swap-activaton'; did you mean"):
        treat("mlp:depth=3,width=8", "digits", remedies=["swap-activaton"])
    with pytest.raises(ConfigError) as e:
        treat("mlp:depth=3,width=8", "digits", remedies=["forget-bias"])
    assert str(e.value).startswith(
        "remedy 'forget-bias' does not apply to Sequential: it has no nn.LSTM module with "
        "biases; remedies that apply: swap-activation, add-norm, reinit, add-aux-heads"
    )
    with pytest.raises(
        ConfigError, match=r"model must be an nn\.Module or a model spec string, got int"
    ):
        treat(42, "digits")
