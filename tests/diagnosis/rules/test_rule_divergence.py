"""The divergence rule and the spike baseline it sits beside: a loss that rises well above its
best (or goes NaN after rising) is a divergence dated where the rise began; a lone spike after
flat norms is a spike, not a divergence."""

from __future__ import annotations

import math

from diagnosis_util import event_trace, finding, spike_trace
from gradmedic.diagnosis import Diagnosis
from gradmedic.diagnosis.rules.divergence import loss_divergence, lr_cut
from gradmedic.trace.derived import spike_steps
from gradmedic.workflows.checkup import diagnose

NAN = math.nan


def _slugs(d: Diagnosis) -> dict[str, str]:
    return {f.slug: f.severity for f in d.findings}


def test_a_loss_climbing_far_above_its_best_diverges_from_where_it_rose():
    losses = [3.9, 3.7, 3.6, 4.0, 9.0, 30.0, 80.0, 150.0, 260.0, 240.0]
    norms = [0.8, 0.7, 0.8, 1.5, 4.0, 9.0, 20.0, 30.0, 60.0, 80.0]
    f = finding(diagnose(spike_trace(losses, norms)), "divergence")
    assert (f.severity, f.step) == ("warning", 4)  # 9.0 is the first >= 1.5 x the best 3.6
    assert f.evidence["best_step"] == 2 and f.evidence["best_loss"] == 3.6
    assert f.evidence["peak_loss"] == 260.0
    assert str(f.prescriptions[0]) == "lower-lr(factor=0.1)"  # no update ratios: tenfold
    assert [p.remedy for p in f.prescriptions] == ["lower-lr", "lr-warmup", "zclip"]


def test_nan_at_step_3_after_a_growing_norm_is_dated_before_the_nan():
    losses = [2.0, 2.1, 2.2, NAN, NAN, NAN]
    norms = [1.0, 3.0, 10.0, NAN, NAN, NAN]
    d = diagnose(spike_trace(losses, norms))
    f = finding(d, "divergence")
    assert f.step == 3 and f.evidence["nonfinite_step"] == 3
    assert loss_divergence([(0, 2.0), (1, 2.1), (2, 2.2), (3, NAN)]) is None  # no growth given


def test_a_healthy_noisy_loss_and_a_recovered_jump_are_not_divergence():
    assert loss_divergence([(s, 2.3 - 0.1 * s + 0.3 * (s % 2)) for s in range(20)]) is None
    jumped = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 9.5, 6.0, 4.0, 3.0]  # tail median 4.0 < 3 x 1.8
    assert loss_divergence(list(enumerate(jumped))) is None


def test_a_lone_spike_after_a_dip_in_flat_norms_is_a_spike_not_a_growth():
    norms = [1.0, 1.1, 1.0, 0.4, 1.0, 40.0, 1.0, 1.1, 0.9, 1.0]
    d = diagnose(spike_trace([2.0] * 10, norms))
    f = finding(d, "gradient-spikes")
    assert f.title.startswith("Gradient-norm spikes")  # not "Gradient norm diverges"
    assert "divergence" not in _slugs(d)


def test_the_spike_baseline_is_not_inflated_by_spikes_or_smaller_outliers():
    norms = [1.0, 1.1, 0.9, 1.0, 20.0, 1.0, 1.2, 8.0, 1.0, 12.0, 0.9, 1.0]
    assert spike_steps(list(enumerate(norms))) == [4, 9]  # the median rule missed none, ...
    grown = [1.0, 1.0, 1.1, 0.9, 1.0, 30.0, 35.0, 40.0, 45.0, 50.0, 60.0]
    # ... but a median of norms that already grew (35) hides them; the baseline does not
    assert spike_steps(list(enumerate(grown))) == [5, 6, 7, 8, 9, 10]


def test_the_lr_cut_brings_the_largest_update_ratio_to_1e_3():
    assert lr_cut({"a": 0.5, "b": 1e-3}) == 0.001
    assert lr_cut({"a": 0.02}) == 0.03
    assert lr_cut({}) == 0.1


def test_update_ratios_name_the_layers_and_size_the_cut():
    mods = [("", "Sequential", None, {}), ("0", "Linear", None, {}), ("1", "Linear", None, {})]
    rows = []
    for s, loss in enumerate([2.0, 1.9, 1.8, 3.0, 8.0, 20.0, 40.0]):
        rows.append((s, "", "", "loss", None, loss))
        rows.append((s, "", "", "grad_norm_total", None, 1.0))
        rows.append((s, "0", "weight", "update_ratio", None, 0.2))
        rows.append((s, "1", "weight", "update_ratio", None, 0.004))
    f = finding(diagnose(event_trace(mods, rows)), "divergence")
    assert f.layers == ["0"] and f.evidence["update_ratio"] == {"0": 0.2}
    assert f.evidence["lr_factor"] == 0.003 and f.step == 3  # 3.0 >= 1.5 x the best 1.8
