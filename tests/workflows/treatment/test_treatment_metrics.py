"""The numbers treat compares runs by: health from the one end-to-end ratio, the ratio
through time for recurrent models, and rows for runs without a trace."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gradmedic.trace import Trace
from gradmedic.workflows.train import TrainResult
from gradmedic.workflows.treatment import run_metrics
from gradmedic.workflows.treatment.metrics import ratio_series, time_ratio


def _rnn_trace() -> Trace:
    rows = []
    for step, (first, last) in {0: (1e-6, 1.0), 5: (1e-4, 2.0), 10: (2.0, 1.0)}.items():
        for t, v in enumerate([first, 0.5, last]):
            rows.append((step, "rnn", "", "input_grad_t", t, v))
    rows.append((5, "", "", "nonfinite", 0, 1.0))
    frame = pd.DataFrame(rows, columns=["step", "module", "parameter", "quantity", "idx", "value"])
    modules = pd.DataFrame(
        [("rnn", "RNN", None, 0, 10, "{}")],
        columns=["name", "type", "activation", "ord", "n_params", "info"],
    )
    return Trace(frame, modules, {})


def test_recurrent_ratio_is_through_time_at_each_step():
    trace = _rnn_trace()
    assert time_ratio(trace) == pytest.approx(1e-6)
    assert time_ratio(trace, 5) == pytest.approx(5e-5)
    assert ratio_series(trace) == pytest.approx([1e-6, 5e-5, 2.0])
    row = run_metrics(TrainResult([2.0, 1.0, math.nan], [0.1, 0.3, 0.2], trace, diverged_at=2))
    assert row["first_last_signal_ratio"] == pytest.approx(1e-6)
    assert row["health"] == pytest.approx(6.0)
    assert row["signal_ratio_median"] == pytest.approx(5e-5)  # geometric median of 3 steps
    assert row["nonfinite"] == 2  # step 2's loss and step 5's gradient
    assert row["final_loss"] == math.inf and row["time_per_step"] == 0.2
    assert row["diverged_at"] == 2 and row["first_loss"] == 2.0


def test_a_run_without_a_trace_has_no_ratio_and_infinite_health():
    row = run_metrics(TrainResult([2.3, 2.1], [0.01, 0.01], None))
    assert math.isnan(row["first_last_signal_ratio"]) and row["health"] == math.inf
    assert math.isnan(row["saturated_frac"]) and row["nonfinite"] == 0
    assert row["final_loss"] == 2.1
