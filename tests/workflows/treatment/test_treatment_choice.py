"""The rule that picks the best candidate, its margins and the advice it prints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gradmedic.remedies import RemedyReport, make_clipper
from gradmedic.workflows.treatment.choice import UNTREATED, advice, choose, margins


def _row(name, health, loss, nonfinite=0):
    return {
        "name": name,
        "health": health,
        "final_loss": loss,
        "nonfinite": nonfinite,
        "error": None,
    }


def test_best_rule_tiers():
    base = _row(UNTREATED, 5.0, 2.0)
    # tier 1 beats a lower-loss candidate whose health is worse
    assert choose([base, _row("a", 1.0, 1.5), _row("b", 6.0, 0.1)]) == "a"
    # tier 2: health better, loss not: still preferred over tier 3
    assert choose([base, _row("a", 1.0, 2.5), _row("b", 5.0, 1.0)]) == "a"
    # tier 3: same health (clipping), lower loss; 0.1 decade worse still counts as "no worse"
    assert choose([base, _row("c", 5.05, 1.0)]) == "c"
    assert choose([base, _row("c", 5.2, 1.0)]) == UNTREATED
    # non-finite runs never win; nothing helps -> untreated
    assert choose([base, _row("d", 0.1, 0.1, nonfinite=3), _row("e", 7.0, 3.0)]) == UNTREATED
    # a non-finite baseline: any finite candidate improves health
    assert choose([_row(UNTREATED, 1.0, math.inf, 5), _row("f", 2.0, 2.0)]) == "f"
    # a failed candidate and a NaN health never win
    failed = {**_row("g", 0.1, 0.1), "error": "does not apply"}
    assert choose([base, failed, _row("h", math.nan, 1.0)]) == UNTREATED


def test_margins_are_best_minus_untreated():
    base = {**_row(UNTREATED, 16.0, 2.3), "first_last_signal_ratio": 1e-16}
    best = {**_row("add-norm", 0.25, 1.75), "first_last_signal_ratio": 0.56}
    m = margins(base, best)
    assert m["health_gain_decades"] == pytest.approx(15.75)
    assert m["loss_gain"] == pytest.approx(0.55) and m["loss_ratio"] == pytest.approx(1.75 / 2.3)
    assert (m["signal_ratio_untreated"], m["signal_ratio_best"]) == (1e-16, 0.56)


def test_advice_lines_for_loss_clipper_and_learning_rate():
    assert advice({"name": UNTREATED, "specs": []}, None, None).startswith(
        "No remedy beat the untreated model"
    )
    clip = make_clipper("clip-grad-norm(max_norm=0.5)")
    rep = RemedyReport("x", loss="bce-logits", grad_transform=clip, lr_factor=0.1)
    text = advice(
        {"name": "a+b", "specs": ["fix-loss", "clip-grad-norm(max_norm=0.5)"]}, Path("o"), rep
    )
    lines = text.splitlines()
    assert (
        lines[3]
        == 'model, report = apply(model, "fix-loss+clip-grad-norm(max_norm=0.5)", data_batch=(x, y))'
    )
    assert 'model.load_state_dict(torch.load("o/best_model.pt"))' in lines[5]
    assert "loss_fn = torch.nn.BCEWithLogitsLoss()" in lines
    assert "report.grad_transform(model.parameters())  # clip-grad-norm(max_norm=0.5)" in lines
    assert lines[-1] == "lr = lr * 0.1"
