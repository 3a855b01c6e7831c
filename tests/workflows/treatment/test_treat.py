"""treat end to end: each candidate at its own rate, theory's pairing, the noise band, the
verdict, the saved transform, the budget, and bad input before any training.

Measured at the time of writing (seed 0, CPU, one torch thread per trial): the 20x32 sigmoid
MLP (default init, 40 SGD steps, your lr 0.01) is cured by
swap-activation(to=leaky_relu)+reinit(scheme=kaiming) at lr 0.1 (10x yours): loss 2.27 -> 2.00,
health 16.1 -> 0.40 decades, 0.31 below the untreated band 2.308-2.315 (the untreated model
stalls at every rate). The field cases (``tests/field/cases/``, copies of the shared field files) run at
fewer steps than their docstrings' commands.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.remedies import apply
from gradmedic.workflows.train import TrainConfig
from gradmedic.workflows.treatment import treat
from gradmedic.zoo import build_model, load_data

CASES = Path(__file__).parents[2] / "field" / "cases"  # the field cases, one copy


def _case(name: str, what: str) -> str:
    return f"{CASES / name}:{what}"


@pytest.fixture(scope="module")
def sigmoid(tmp_path_factory):
    out = tmp_path_factory.mktemp("treat")
    cfg = TrainConfig(steps=40, lr=0.01, every=5)
    return treat("mlp:depth=20,width=32,act=sigmoid", "digits", config=cfg, out=out)


def test_deep_sigmoid_mlp_is_cured_at_its_own_learning_rate(sigmoid):
    res = sigmoid
    assert res.verdict.startswith("cured: ")
    assert res.verdict_kind == "cured"
    names = [r["name"] for r in res.rows]
    # theory's pairing: the swap carries the init critical for the new activation
    assert "swap-activation(to=leaky_relu)+reinit(scheme=kaiming)" in names
    assert not any(n.startswith("swap-activation") and "reinit" not in n for n in names)
    base, best = res.untreated, res.best_row
    assert base["health"] == pytest.approx(16.1, abs=0.1)
    assert base["status"] == "stalled"
    assert best["health"] <= 2.0 and best["final_loss"] <= 0.9 * base["final_loss"]
    assert best["final_loss"] < res.band.low and res.margins["below_band"] > 0.3
    assert best["lr"] != 0.01  # the user's rate is not this candidate's best
    for row in res.rows:  # every candidate was searched over the grid, 3 to 4 rates each
        assert 3 <= len(row["rates"]) <= 4
        assert row["lr"] in {r["lr"] for r in row["rates"]}
    assert len(res.band.losses) == 3 and res.band.seeds == (0, 1, 2)


def test_the_saved_transform_is_exactly_what_was_verified(sigmoid):
    res, out = sigmoid, sigmoid.out
    transform = json.loads((out / "transform.json").read_text())
    assert transform["remedies"] == res.best_specs
    assert transform["lr"] == res.best_row["lr"]
    assert transform["verdict"] == res.verdict
    assert f"lr = {res.best_row['lr']:.3g}  # the verified learning rate" in transform["apply"]
    fresh = build_model("mlp:depth=20,width=32,act=sigmoid", load_data("digits").info, seed=1)
    fresh, _ = apply(fresh, transform["spec"])
    fresh.load_state_dict(torch.load(out / "best_model.pt"))
    data = json.loads((out / "treatment.json").read_text())
    assert list(data)[:2] == ["verdict", "verdict_kind"]
    assert data["best"] == res.best and data["band"]["low"] == res.band.low


def test_field_02_unscaled_regression_gets_a_finite_learning_treatment():
    f = "02_unscaled_regression_nan.py"
    res = treat(
        _case(f, "build_model"), _case(f, "build_data"), loss="mse", config=TrainConfig(steps=10)
    )
    assert res.yours["nonfinite"] > 0 and res.band is None  # NaN at every rate of the grid
    best = res.best_row
    assert res.best != "untreated" and best["nonfinite"] == 0
    assert best["final_loss"] < best["first_loss"]  # never a candidate whose loss rose
    assert res.verdict_kind in ("cured", "improved")
    assert "keep the model as it is" not in res.advice


def test_field_10_nan_born_in_attention_gets_an_honest_no_cure():
    f = "10_attention_all_padding_nan.py"
    cfg = TrainConfig(steps=6)
    res = treat(_case(f, "build_model"), _case(f, "build_data"), loss="ce", config=cfg)
    assert res.verdict.startswith("no cure within 6 steps: your run at lr 0.01 is non-finite")
    assert res.best == "untreated" and res.band is None
    assert all(r["status"] == "diverged" for r in res.untreated["rates"])
    assert [r["lr"] for r in res.untreated["rates"]] == [0.001, 0.003, 0.01, 0.03]
    assert "keep the model as it is" not in res.advice


def test_field_16_diverging_transformer_is_cured_by_a_lower_rate():
    f = "16_tiny_gpt_learning_rate.py"
    cfg = TrainConfig(steps=20, lr=1.0, optimizer="adam")
    res = treat(
        _case(f, "build_model"), _case(f, "build_data"), loss=_case(f, "build_loss"), config=cfg
    )
    assert res.yours["status"] == "diverged"
    assert res.verdict_kind == "cured"
    best = res.best_row
    assert best["lr"] <= 0.1 and best["final_loss"] < best["first_loss"]
    assert best["final_loss"] < res.band.low
    assert "keep the model as it is" not in res.advice


def test_a_spent_budget_reports_what_had_run():
    res = treat(
        "mlp:depth=12,width=16,act=sigmoid", "digits", config=TrainConfig(steps=20), budget=1e-6
    )
    assert res.config["budget_spent"] is True
    assert res.untreated["steps"] == 1  # the user's run stopped at its first step
    assert res.notes[0] == "the time budget ran out: the verdict is on what had run by then"
    assert all(r["error"] == "not run: the time budget was spent" for r in res.rows[1:])
    assert res.verdict.endswith(f"before {len(res.rows) - 1} candidate(s) ran")
    assert res.best == "untreated" and math.isnan(res.rows[1]["final_loss"])


def test_bad_input_fails_before_training_with_clear_messages():
    with pytest.raises(UnknownNameError, match="unknown remedy 'swap-activaton'; did you mean"):
        treat("mlp:depth=3,width=8", "digits", remedies=["swap-activaton"])
    with pytest.raises(ConfigError) as e:
        treat("mlp:depth=3,width=8", "digits", remedies=["forget-bias"])
    assert str(e.value).startswith(
        "remedy 'forget-bias' does not apply to Sequential: it has no nn.LSTM module"
    )
    with pytest.raises(
        ConfigError, match=r"model must be an nn\.Module or a model spec string, got int"
    ):
        treat(42, "digits")
    with pytest.raises(ConfigError, match="budget 'soon' is not a duration"):
        treat("mlp:depth=3,width=8", "digits", budget="soon")
