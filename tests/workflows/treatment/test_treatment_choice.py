"""The rule that picks the best candidate, the kind of verdict, and the margins."""

from __future__ import annotations

import math

import pytest

from gradmedic.workflows.treatment.choice import (
    UNTREATED,
    broken,
    choose,
    classify,
    eligible,
    margins,
)


def _row(name, health, loss, first=2.3, status="learning", nonfinite=0, lr=0.01):
    return {
        "name": name,
        "health": health,
        "final_loss": loss,
        "first_loss": first,
        "status": status,
        "nonfinite": nonfinite,
        "error": None,
        "lr": lr,
        "first_last_signal_ratio": 10**-health if math.isfinite(health) else math.nan,
    }


def test_eligible_means_finite_and_learning():
    assert eligible(_row("a", 1.0, 2.0))
    assert not eligible(_row("a", 1.0, 2.4))  # final above first: never best
    assert not eligible(_row("a", 1.0, 2.0, status="stalled"))
    assert not eligible(_row("a", 1.0, 2.0, nonfinite=1))
    assert not eligible({**_row("a", 1.0, 2.0), "error": "does not apply"})
    assert broken(_row("a", 1.0, math.inf, status="diverged")) and broken(
        _row("a", 1, 2, nonfinite=3)
    )
    assert not broken(_row("a", 1.0, 2.29, status="not learning"))


def test_tiers_cured_then_improved_by_loss_then_by_health():
    base = _row(UNTREATED, 5.0, 2.0)
    band_low = 1.9
    cured, loss_only = _row("cured", 1.0, 1.5), _row("loss", 6.0, 0.5)
    health_only = _row("health", 0.5, 1.95)
    assert classify(cured, band_low, 5.0) == "cured"
    assert classify(loss_only, band_low, 5.0) == "improved"
    assert classify(health_only, band_low, 5.0) == "improved"
    assert classify(health_only, band_low, 1.0) == "no better"  # the untreated was healthy
    assert classify(_row("x", 1.0, 2.5), band_low, 5.0) == "not learning"
    assert choose([base, loss_only, cured, health_only], band_low) == ("cured", "cured")
    assert choose([base, health_only, loss_only], band_low) == ("loss", "improved")
    assert choose([base, health_only], band_low) == ("health", "improved")
    # inside the band and no healthier: no cure, the untreated model stays
    assert choose([base, _row("c", 5.0, 1.95)], band_low) == (UNTREATED, "no cure")


def test_a_candidate_whose_loss_rose_is_never_best():
    base = _row(UNTREATED, 5.0, 2.0)
    rose = _row("rose", 0.1, 2.4, first=2.3)
    assert choose([base, rose], 1.9) == (UNTREATED, "no cure")


def test_a_nan_or_diverging_untreated_run_loses_to_any_finite_learning_candidate():
    nan = _row(UNTREATED, math.inf, math.inf, first=math.nan, status="diverged", nonfinite=20)
    slow = _row("slow", 3.0, 2.2)  # unhealthy, barely learning: still beats a NaN run
    assert choose([nan, slow], None, yours_broken=True) == ("slow", "improved")
    assert choose([nan, slow, _row("ok", 0.5, 2.25)], None, True) == ("ok", "cured")
    # nothing learns either: an honest no cure, never a "keep it as it is" pick of a healthy row
    assert choose([nan, _row("bad", 0.5, math.inf, status="diverged")], None, True) == (
        UNTREATED,
        "no cure",
    )


def test_a_lower_rate_of_the_untreated_model_is_itself_the_treatment():
    base = _row(UNTREATED, 0.8, 3.3, first=3.9, lr=0.1)  # learns at 0.1, diverged at yours
    assert choose([base, _row("c", 0.8, 3.35, first=3.9)], 3.2, yours_broken=True) == (
        UNTREATED,
        "cured",
    )
    assert choose([base], 3.2, yours_broken=False) == (UNTREATED, "no cure")


def test_margins_are_best_minus_untreated():
    base = _row(UNTREATED, 16.0, 2.3, lr=0.01)
    best = _row("add-norm", 0.25, 1.75, lr=0.1)
    m = margins(base, best, band_low=2.25)
    assert m["health_gain_decades"] == pytest.approx(15.75)
    assert m["loss_gain"] == pytest.approx(0.55) and m["loss_ratio"] == pytest.approx(1.75 / 2.3)
    assert m["below_band"] == pytest.approx(0.5)
    assert (m["lr_untreated"], m["lr_best"]) == (0.01, 0.1)
    assert margins(base, best, None)["below_band"] is None
