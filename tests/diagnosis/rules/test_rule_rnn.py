"""The RNN rule: Pascanu, Mikolov & Bengio's (2013) bound, the time profile and its horizon."""

from __future__ import annotations

import torch

from diagnosis_util import finding, run
from gradmedic.diagnosis.rules.rnn import memory_horizon

torch.set_num_threads(1)


def test_rnn_evidence_pascanu_and_horizon():
    f = finding(run("rnn:hidden=32,radius=3", "adding-50"), "rnn-exploding")
    # radius 3 -> largest singular value >= 3 > 1/gamma = 1: necessary condition for exploding.
    assert f.evidence["pascanu_verdict"] == "exploding-possible"
    assert f.evidence["pascanu_lambda1"] >= 3.0
    assert f.evidence["peak_over_last"] >= 1e3
    assert [str(p) for p in f.prescriptions] == [
        "clip-grad-norm(max_norm=1.0)",
        "orthogonal-recurrent",
    ]
    v = finding(run("rnn:hidden=32", "adding-200"), "rnn-long-range-vanishing")
    assert v.evidence["seq_len"] == 200
    assert v.evidence["memory_horizon"] < 200
    assert str(v.prescriptions[0]) == "replace-rnn(to=lstm)"
    lstm = finding(run("lstm:hidden=32,forget_bias=0", "adding-100"), "rnn-long-range-vanishing")
    assert str(lstm.prescriptions[0]) == "forget-bias(value=1.0)"


def test_memory_horizon_counts_steps_above_the_fall():
    # From the last step back: 1.0, 0.5, 2e-3 stay above 1e-3 x 1.0; 5e-4 does not.
    assert memory_horizon([1e-5, 5e-4, 2e-3, 0.5, 1.0]) == 3
    assert memory_horizon([0.9, 1.0]) == 2  # never falls: the whole sequence
    assert memory_horizon([0.01, 1.0], fall=0.5) == 1
