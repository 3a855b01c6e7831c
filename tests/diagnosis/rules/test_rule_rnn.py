"""The RNN rule: Pascanu, Mikolov & Bengio's (2013) bound, the time profile and its horizon."""

from __future__ import annotations

import pytest
import torch

from diagnosis_util import event_trace, finding, run
from gradmedic.diagnosis.rules.rnn import memory_horizon
from gradmedic.diagnosis.rules.rnn_remedies import cell_path, forget_bias_for
from gradmedic.workflows.checkup import diagnose

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
    # a vanilla RNN has no forget gate: forget-bias only after replace-rnn, as one combination
    # with the bias that keeps the cell path above 1e-3 over T = 200: b_f = 3 keeps 6.3e-5,
    # b_f = 4 keeps 0.982^199 = 2.7e-2
    assert [str(p) for p in v.prescriptions] == [
        "replace-rnn(to=lstm)",
        "replace-rnn(to=lstm)+forget-bias(value=4.0)",
        "orthogonal-recurrent",
    ]
    assert v.prescriptions[1].predicted["cell_path"] == pytest.approx(0.027, rel=1e-3)
    lstm = finding(run("lstm:hidden=32,forget_bias=0", "adding-100"), "rnn-long-range-vanishing")
    # T = 100: b_f = 1 keeps 0.731^99 = 3.4e-14 of the cell path; b_f = 3 keeps 8.1e-3
    assert str(lstm.prescriptions[0]) == "forget-bias(value=3.0)"
    assert lstm.prescriptions[0].predicted["cell_path"] == pytest.approx(8.147e-3, rel=1e-3)


def test_memory_horizon_counts_steps_above_the_fall():
    # From the last step back: 1.0, 0.5, 2e-3 stay above 1e-3 x 1.0; 5e-4 does not.
    assert memory_horizon([1e-5, 5e-4, 2e-3, 0.5, 1.0]) == 3
    assert memory_horizon([0.9, 1.0]) == 2  # never falls: the whole sequence
    assert memory_horizon([0.01, 1.0], fall=0.5) == 1


def test_forget_bias_is_the_smallest_that_keeps_the_cell_path_above_1e_3():
    # sigmoid(b)^(T-1) >= 1e-3: T = 20 -> b = 1 (0.731^19 = 2.6e-3); T = 100 -> 3; T = 200 -> 4
    assert [forget_bias_for(t) for t in (2, 20, 100, 200)] == [1.0, 1.0, 3.0, 4.0]
    assert cell_path(1.0, 21) == pytest.approx(1.901e-3, rel=2e-4)  # theory.md case 20
    assert cell_path(2.0, 100) < 1e-3 <= cell_path(3.0, 100)


def _level_rnn_trace(nonlinearity: str, norms: list[float]):
    """A vanilla RNN (T = 100) whose W_hh contracts (rho 0.5) with a level time profile (a loss
    at every step) and the given global gradient norms per step."""
    info = {"mode": "RNN", "nonlinearity": nonlinearity, "whh_radius": 0.5, "whh_sigma_max": 1.5}
    mods = [("", "Net", None, {}), ("rnn", "RNN", None, info)]
    rows = [(0, "rnn", "layer0", "hidden_grad_t", t, 1.0) for t in range(100)]
    rows += [(s, "", "", "grad_norm_total", None, v) for s, v in enumerate(norms)]
    return event_trace(mods, rows)


def test_the_theory_note_speaks_of_the_rnn_s_own_nonlinearity():
    f = finding(diagnose(_level_rnn_trace("relu", [1.0, 1.1, 0.9])), "rnn-long-range-vanishing")
    assert f.severity == "info" and "relu' is 1 on active units" in f.cause
    assert "tanh" not in f.cause


def test_an_rnn_whose_gradient_grows_gets_no_vanishing_note():
    grows = [1.0, 10.0, 100.0, 1e3, 1e4]  # x10 per step: the run explodes
    d = diagnose(_level_rnn_trace("relu", grows))
    assert "rnn-long-range-vanishing" not in d.slugs()
