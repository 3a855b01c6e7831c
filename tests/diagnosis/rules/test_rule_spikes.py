"""The spike rule: gradient-norm spikes (gradmedic.trace.derived.spike_steps), judged by what
the loss does after them."""

from __future__ import annotations

import re

from diagnosis_util import SPIKE_LOSSES_JUMP, SPIKE_NORMS, finding, spike_trace
from gradmedic.diagnosis import Diagnosis, Finding
from gradmedic.diagnosis.finding import NOTHING_MEASURABLE
from gradmedic.trace.schema import Quantity
from gradmedic.workflows.checkup import diagnose


def judged(d: Diagnosis) -> list[Finding]:
    """The findings besides "nothing measurable" (a trace of global norms has no layer rows)."""
    return [f for f in d.findings if f.slug != NOTHING_MEASURABLE]


def test_gradient_spike_that_throws_the_loss_off_is_a_warning():
    spike = next(f for f in judged(diagnose(spike_trace(SPIKE_LOSSES_JUMP, SPIKE_NORMS))))
    assert (spike.slug, spike.severity, spike.step) == ("gradient-spikes", "warning", 5)
    assert spike.evidence["loss_jumped_after"] == [5]
    assert spike.evidence["spike_steps"] == [5]
    # median of the ten norms is 1.0; the spike is 40x it.
    assert spike.evidence["median_grad_norm"] == 1.0
    assert spike.evidence["max_grad_norm"] == 40.0
    assert spike.evidence["baseline_grad_norm"] == 1.012  # EMA of steps 0-4, 1.2 clipped at z=3
    assert spike.title == "Gradient-norm spikes (40x the running baseline)"
    assert str(spike.prescriptions[0]) == "clip-grad-norm(max_norm=1.0)"


def test_gradient_spike_the_loss_shrugs_off_is_only_a_note():
    losses = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4]
    found = judged(diagnose(spike_trace(losses, SPIKE_NORMS)))
    assert [(f.slug, f.severity) for f in found] == [("gradient-spikes", "info")]


def test_a_loss_that_stops_being_finite_makes_the_spike_harmful():
    losses = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, float("nan"), 2.0, 2.0, 2.0]
    spike = finding(diagnose(spike_trace(losses, SPIKE_NORMS)), "gradient-spikes")
    assert (spike.severity, spike.evidence["loss_jumped_after"]) == ("warning", [5])


def test_the_first_step_is_never_a_spike():
    norms = [40.0, 1.1, 0.9, 1.0, 1.2, 1.0, 1.0, 1.1, 0.9, 1.0]
    assert judged(diagnose(spike_trace([2.0] * 10, norms))) == []


def test_a_huge_spike_factor_prints_in_scientific_notation():
    norms = [1.0, 1.1, 0.9, 1.0, 1.2, 270291418831.0, 1.0, 1.1, 0.9, 1.0]
    found = diagnose(spike_trace([2.0] * 10, norms)).findings
    spike = next(f for f in found if f.slug == "gradient-spikes")
    assert re.search(r"\(?\d\.\de\+\d\dx", spike.title), spike.title  # e.g. 2.7e+11x
    assert not re.search(r"\d{5,}x", spike.title + spike.cause)


def test_a_steady_geometric_growth_is_a_divergence_not_a_spike_and_gets_no_absurd_clip():
    # x7e3 per step from the first step (field case 02): no stationary median to clip at.
    norms = [5.8e11 * 7.0e3**k for k in range(8)]
    losses = [4e17 * 5e7**k for k in range(4)] + [float("inf")] * 4
    f = finding(diagnose(spike_trace(losses, norms)), "gradient-spikes")
    assert f.severity == "warning"
    assert f.title == "Gradient norm diverges: 7.0e+03x per step"
    assert f.evidence["growth_per_step"] == 7000.0
    assert f.evidence["growth_from_step"] == 0
    assert not any(p.remedy == "clip-grad-norm" for p in f.prescriptions)
    # no weight layer in this trace: no quadratic model, a tenfold cut
    assert [str(p) for p in f.prescriptions] == ["lower-lr(factor=0.1)"]


def test_growth_after_a_stationary_start_clips_at_the_norm_before_it():
    norms = [1.0, 1.1, 0.9, 1.0, 1.0, 30.0, 900.0, 27000.0, 8.1e5, 2.4e7]
    (f,) = judged(diagnose(spike_trace([2.0] * 10, norms)))
    assert f.evidence["growth_from_step"] == 4
    clip = next(p for p in f.prescriptions if p.remedy == "clip-grad-norm")
    assert clip.params == {"max_norm": 1.0}  # the median of steps 0-3


def test_spike_only_traces_are_not_judged_per_layer():
    d = diagnose(spike_trace(SPIKE_LOSSES_JUMP, SPIKE_NORMS))
    assert d.outcome == NOTHING_MEASURABLE
    assert d.exit_status("warning") == 1  # the spike is a warning: findings first
    assert d.exit_status(None) == 3
    assert str(Quantity.GRAD_NORM_TOTAL) in d.findings[0].evidence["quantities"]
