"""report.figures.training: the gradient norm over steps marks exactly the diagnosis's spikes
and the NaN/Inf steps; loss curves of several runs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from gradmedic.report.figures import grad_norm_over_steps_figure, loss_figure, spike_markers
from gradmedic.trace.derived import SPIKE_FACTOR
from gradmedic.workflows.checkup import diagnose
from report_util import synthetic_trace

# median 1.0: steps 4 (20x) and 9 (12x) are spikes; step 7 (8x) is not, though it is more
# than 5x the median of the 10 values before it (the figure's old, separate rule)
SPIKY = [1.0, 1.1, 0.9, 1.0, 20.0, 1.0, 1.2, 8.0, 1.0, 12.0, 0.9, 1.0]


def _marked(fig) -> list[tuple[int, float]]:
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_marker() == "^"]
    if not lines:
        return []
    (line,) = lines
    return list(zip(line.get_xdata(), line.get_ydata(), strict=True))


def test_spike_markers_are_the_spikes_the_diagnosis_reports():
    tr = synthetic_trace(SPIKY, loss=[2.0] * len(SPIKY))
    spikes = next(f for f in diagnose(tr).findings if f.slug == "gradient-spikes")
    fig = grad_norm_over_steps_figure(tr)
    marked = _marked(fig)
    assert [s for s, _ in marked] == spikes.evidence["spike_steps"] == [4, 9]
    assert [v for _, v in marked] == [20.0, 12.0]
    assert marked == spike_markers(tr)
    label = next(ln.get_label() for ln in fig.axes[0].get_lines() if ln.get_marker() == "^")
    assert label == f"spike (≥ {SPIKE_FACTOR:g}× the running baseline)"
    plt.close(fig)


def test_no_spikes_no_markers_and_no_finding():
    calm = [1.0, 1.1, 0.9, 1.0, 8.0, 1.0]
    tr = synthetic_trace(calm, loss=[2.0] * len(calm))
    assert "gradient-spikes" not in diagnose(tr).slugs()
    fig = grad_norm_over_steps_figure(tr)
    assert _marked(fig) == [] and spike_markers(tr) == []
    plt.close(fig)


def test_grad_norm_figure_marks_nonfinite_steps():
    vals = [1.0, 1.2, 0.9, 1.1, 20.0, 1.0, 1.0, float("nan"), 1.0]
    tr = synthetic_trace(vals, nonfinite_at=(7,), loss=[2.0] * 9)
    fig = grad_norm_over_steps_figure(tr)
    ax = fig.axes[0]
    assert _marked(fig) == [(4, 20.0)]
    vlines = [ln for ln in ax.get_lines() if ln.get_label() == "NaN/Inf"]
    assert len(vlines) == 1 and list(vlines[0].get_xdata()) == [7, 7]
    assert ax.get_title() == "Gradient norm over training (first NaN/Inf at step 7)"
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "training loss"
    plt.close(fig)
    assert grad_norm_over_steps_figure(synthetic_trace([])) is None


def test_without_a_loss_the_figure_has_one_panel():
    fig = grad_norm_over_steps_figure(synthetic_trace([1.0, 2.0, 3.0]))
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "training step"
    plt.close(fig)


def test_loss_figure_log_scale_and_nonfinite_marker():
    fig = loss_figure(
        {"before": [2.3, 2.3, 2.3], "relu": [2.3, 0.5, 0.01], "nan": [2.0, float("inf")]}
    )
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"  # 2.3 / 0.01 > 30
    cross = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert (
        len(cross) == 1
        and list(cross[0].get_xdata()) == [1]
        and list(cross[0].get_ydata()) == [2.0]
    )
    assert [ln.get_label() for ln in ax.get_lines()[:2]] == ["before", "relu"]
    assert ax.get_lines()[0].get_color() == "#222222"  # "before" in black
    plt.close(fig)
    assert loss_figure({}) is None


@pytest.mark.parametrize(("values", "scale"), [([1.0, 0.5], "linear"), ([3.0, 0.05], "log")])
def test_loss_figure_uses_a_log_axis_only_over_decades(values, scale):
    fig = loss_figure({"run": values})
    assert fig.axes[0].get_yscale() == scale
    plt.close(fig)
