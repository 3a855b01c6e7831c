"""The spike rule: gradient-norm spikes (gradmedic.trace.derived.spike_steps), judged by what
the loss does after them."""

from __future__ import annotations

from diagnosis_util import SPIKE_LOSSES_JUMP, SPIKE_NORMS, spike_trace
from gradmedic.workflows.checkup import diagnose


def test_gradient_spike_that_throws_the_loss_off_is_a_warning():
    spike = next(f for f in diagnose(spike_trace(SPIKE_LOSSES_JUMP, SPIKE_NORMS)).findings)
    assert (spike.slug, spike.severity, spike.step) == ("gradient-spikes", "warning", 5)
    assert spike.evidence["loss_jumped_after"] == [5]
    assert spike.evidence["spike_steps"] == [5]
    # median of the ten norms is 1.0; the spike is 40x it.
    assert spike.evidence["median_grad_norm"] == 1.0
    assert spike.evidence["max_grad_norm"] == 40.0
    assert spike.title == "Gradient-norm spikes (40x the median)"
    assert str(spike.prescriptions[0]) == "clip-grad-norm(max_norm=1.0)"


def test_gradient_spike_the_loss_shrugs_off_is_only_a_note():
    losses = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4]
    found = diagnose(spike_trace(losses, SPIKE_NORMS)).findings
    assert [(f.slug, f.severity) for f in found] == [("gradient-spikes", "info")]


def test_a_loss_that_stops_being_finite_makes_the_spike_harmful():
    losses = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, float("nan"), 2.0, 2.0, 2.0]
    (spike,) = diagnose(spike_trace(losses, SPIKE_NORMS)).findings
    assert (spike.severity, spike.evidence["loss_jumped_after"]) == ("warning", [5])


def test_the_first_step_is_never_a_spike():
    norms = [40.0, 1.1, 0.9, 1.0, 1.2, 1.0, 1.0, 1.1, 0.9, 1.0]
    assert diagnose(spike_trace([2.0] * 10, norms)).findings == []
