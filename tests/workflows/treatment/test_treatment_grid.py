"""The learning-rate grid, its pruning rules and the budget parser."""

from __future__ import annotations

import math
import time

import pytest

from gradmedic.errors import ConfigError
from gradmedic.workflows.treatment.grid import (
    FIRST_WAVE,
    LR_FACTORS,
    StopRule,
    next_factors,
    parse_budget,
    run_status,
)


def test_the_grid_is_the_documented_one():
    assert LR_FACTORS == (0.1, 0.3, 1.0, 3.0, 10.0)
    assert FIRST_WAVE == (0.3, 1.0, 3.0)


def test_the_grid_extends_past_the_best_edge_only():
    learning = dict.fromkeys(FIRST_WAVE, "learning")
    # best inside what was tried: done
    assert next_factors(learning, {0.3: 2.0, 1.0: 1.0, 3.0: 1.5}) == []
    # best at the top: one more up; at the bottom: one more down
    assert next_factors(learning, {0.3: 2.0, 1.0: 1.5, 3.0: 1.0}) == [10.0]
    assert next_factors(learning, {0.3: 1.0, 1.0: 1.5, 3.0: 2.0}) == [0.1]
    # at the end of the grid nothing is left
    five = {**learning, 10.0: "learning"}
    assert next_factors(five, {0.3: 2.0, 1.0: 1.5, 3.0: 1.2, 10.0: 1.0}) == []
    # the first wave is not complete yet: wait
    assert next_factors({0.3: "learning", 1.0: "learning"}, {0.3: 1.0, 1.0: 2.0}) == []


def test_without_a_learning_rate_diverged_goes_down_and_stalled_goes_up():
    assert next_factors(dict.fromkeys(FIRST_WAVE, "diverged"), {}) == [0.1]
    assert next_factors(dict.fromkeys(FIRST_WAVE, "stalled"), {}) == [10.0]
    # stalled at low rates, diverged at high: the grid holds no learning rate; stop
    mixed = {0.3: "stalled", 1.0: "stalled", 3.0: "diverged"}
    assert next_factors(mixed, {}) == []
    # a diverged top is never followed by a higher rate, even when it is the only one left
    assert next_factors({0.3: "learning", 1.0: "learning", 3.0: "diverged"}, {0.3: 2, 1: 1}) == []


def _feed(rule: StopRule, losses: list[float]) -> int:
    for step, v in enumerate(losses):
        if rule(step, v):
            return step
    return -1


def test_stop_rule_stops_divergence_and_the_budget():
    div = StopRule()
    assert _feed(div, [2.0, 3.0, 8.1, 1.0]) == 2 and div.reason == "diverged at step 2"
    nan = StopRule()
    assert _feed(nan, [2.0, math.nan]) == 1 and nan.reason == "diverged at step 1"
    flat = StopRule()
    assert _feed(flat, [2.0] * 20) == -1 and flat.reason is None
    # the user's own run is never stopped for diverging, but the budget stops it too
    primary = StopRule(prune=False)
    assert _feed(primary, [2.0, 100.0, math.nan] + [2.0] * 17) == -1
    late = StopRule(deadline=time.time() - 1, prune=False)
    assert _feed(late, [2.0, 1.0]) == 0 and late.reason == "budget at step 0"


def test_run_status_learning_stalled_diverged():
    # 20 steps: first and last tenth are two steps each
    falling = [2.0 - 0.01 * i for i in range(20)]  # 1.995 -> 1.815: 9% down
    assert run_status(falling) == "learning"
    assert run_status([2.3] * 18 + [2.29, 2.29]) == "stalled"  # 0.4% down: a plateau
    assert run_status([2.3] * 18 + [2.33, 2.33]) == "diverged"  # 1.3% above the first loss
    assert run_status(falling, stopped="diverged at step 9") == "diverged"
    assert run_status(falling, nonfinite=1) == "diverged"
    assert run_status([math.nan, 1.0]) == "diverged" and run_status([]) == "diverged"


def test_budget_parser():
    assert parse_budget("5m") == 300.0 and parse_budget(" 90 s") == 90.0
    assert parse_budget("1.5h") == 5400.0 and parse_budget(42) == 42.0
    assert parse_budget(None) is None and parse_budget("none") is None and parse_budget(0) is None
    for bad in ("5 minutes", "-3s", "soon"):
        with pytest.raises(ConfigError, match=r"e\.g\."):
            parse_budget(bad)
