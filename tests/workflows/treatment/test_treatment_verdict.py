"""The noise band, the loss trend and the verdict line, word for word."""

from __future__ import annotations

import math

from gradmedic.workflows.treatment.choice import UNTREATED
from gradmedic.workflows.treatment.verdict import NoiseBand, steps_to, verdict_line


def _row(name, health, loss, first=2.3, lr=0.01, **kw):
    row = {"name": name, "health": health, "final_loss": loss, "first_loss": first, "lr": lr}
    row.update(status="learning", nonfinite=0, error=None, steps=100)
    row["first_last_signal_ratio"] = 10.0**-health if math.isfinite(health) else math.nan
    return {**row, **kw}


BAND = NoiseBand.of([2.305, 2.31, 2.3], lr=0.01, seeds=[0, 1, 2])
BASE = _row(UNTREATED, 24.7, 2.305)


def test_band_and_trend():
    assert (BAND.low, BAND.high) == (2.3, 2.31)
    assert NoiseBand.of([1.0, math.inf], lr=1, seeds=[0, 1]).high == math.inf
    # the line is at 1.01 after 100 steps and falls 0.01 a step: 51 more
    assert steps_to([2.0 - 0.01 * i for i in range(100)], 0.5) == 151
    assert steps_to([1.0] * 50 + [0.9] * 50, 0.95) == 100  # already there
    assert steps_to([2.0, 1.0] + [1.0 + 0.001 * i for i in range(20)], 0.5) is None  # rising
    assert steps_to([1.0, 0.9], 0.5) is None  # too short to fit


def test_cured_says_by_how_much_and_from_what_health():
    best = _row("swap+kaiming", 0.24, 1.6, first=2.38, lr=0.1)
    line = verdict_line("cured", best, [BASE, best], BAND, BASE, False, 100, {})
    assert line == (
        "cured: swap+kaiming at lr 0.1: loss 2.38 -> 1.6 (0.7 below the untreated noise band "
        "2.3-2.31 (3 seeds at lr 0.01)), gradient health 24.7 -> 0.24 decades from 1"
    )


def test_improved_says_what_is_missing_and_the_trend():
    lstm = _row("lstm", 7.46, 2.2)
    line = verdict_line("improved", lstm, [BASE, lstm], BAND, BASE, False, 100, {})
    assert line.endswith(
        "; not cured within 100 steps: its gradient health stays 7.46 decades from 1, which "
        "more steps do not change"
    )
    ortho = _row("ortho", 1.0, 2.302)
    curve = [2.4 - 0.0005 * i for i in range(100)]  # 2.3505 at step 99, -0.0005 per step
    line = verdict_line("improved", ortho, [BASE, ortho], BAND, BASE, False, 100, {"ortho": curve})
    assert line == (
        "improved: ortho at lr 0.01: loss 2.3 -> 2.302, gradient health 24.7 -> 1 decades from 1; "
        "not cured within 100 steps: its loss does not get below the untreated noise band "
        "2.3-2.31 (3 seeds at lr 0.01); its loss trend suggests about 201 steps to get there"
    )


def test_no_cure_names_the_best_candidate_and_never_keeps_a_broken_run():
    near = _row("near", 3.0, 2.301, first=2.4)
    line = verdict_line(
        "no cure", BASE, [BASE, near], BAND, BASE, False, 100, {"near": [2.301] * 9}
    )
    assert line.startswith("no cure within 100 steps: the best candidate, near at lr 0.01: loss")
    assert line.endswith("more steps alone will not get it there")
    nan = _row(UNTREATED, math.inf, math.inf, first=math.nan, nonfinite=10, steps=10)
    line = verdict_line("no cure", nan, [nan], None, nan, True, 10, {})
    assert line == (
        "no cure within 10 steps: your run at lr 0.01 is non-finite on 10 of 10 steps; the "
        "diagnosis names no remedy gradmedic can apply to this model (see the changes to make "
        "by hand)"
    )
    line = verdict_line("no cure", BASE, [BASE], BAND, BASE, False, 100, {}, healthy=True)
    assert line.startswith("nothing to cure: the diagnosis of the untreated model found no ")
    assert line.endswith("decades from 1), so no remedy was tried")
    line = verdict_line("no cure", nan, [nan], None, nan, True, 10, {}, healthy=True)
    assert line.startswith("no cure within 10 steps: your run at lr 0.01 is non-finite")
    failed = _row("clip", 1.0, math.inf, status="diverged")
    line = verdict_line("no cure", nan, [nan, failed], None, nan, True, 10, {})
    assert line.endswith("no candidate trained to a finite, falling loss at any rate of the grid")
    assert "keep" not in line


def test_a_diverging_run_cured_by_its_learning_rate_alone():
    yours = _row(UNTREATED, 0.86, 183.0, first=3.9, lr=1.0, status="diverged")
    base = _row(UNTREATED, 0.86, 3.3, first=3.9, lr=0.1)
    line = verdict_line("cured", base, [base], BAND, yours, True, 30, {})
    assert line == (
        "cured by the learning rate alone: your run at lr 1 diverges (loss 3.9 -> 183); at lr "
        "0.1 the untreated model trains (loss 3.9 -> 3.3, gradient health 0.86 decades from 1) "
        "and no remedy beat that beyond the noise band"
    )
