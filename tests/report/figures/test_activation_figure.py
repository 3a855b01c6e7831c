"""report.figures.activation: saturated (both tails) or inactive (ReLU family) and dead
fractions, and the mean slope against theory."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from gradmedic.report.figures import activation_figure, layer_snapshot
from report_util import synthetic_trace


def test_activation_figure_shows_dead_relu_fractions(relu_trace):
    fig = activation_figure(relu_trace)
    snap = layer_snapshot(relu_trace)
    snap = snap[snap["dead_frac"].notna()]
    top = fig.axes[0]
    inactive_bars, dead_bars = top.containers  # ReLU units are inactive, never "saturated"
    np.testing.assert_allclose([b.get_height() for b in dead_bars], snap["dead_frac"])
    np.testing.assert_allclose([b.get_height() for b in inactive_bars], snap["saturated_frac"])
    assert [t.get_text() for t in top.get_legend().get_texts()] == [
        "inactive (φ' < 1% of max, ReLU family)",
        "dead (0 on batch)",
    ]
    assert top.get_ylim() == (0, 1.02)
    # ReLU: E[phi'] = 1/2 at any scale (theory markers on the bottom panel)
    theory_line = fig.axes[1].get_lines()[1]
    np.testing.assert_allclose(theory_line.get_ydata(), 0.5, rtol=1e-9)
    plt.close(fig)


def test_sigmoid_slope_is_at_most_a_quarter(mlp_trace):
    fig = activation_figure(mlp_trace)
    measured = fig.axes[1].get_lines()[0].get_ydata()
    assert len(measured) == 11 and np.all(np.asarray(measured) <= 0.25)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["saturated (|φ'| < 1% of max, both tails)", "dead (0 on batch)"]
    plt.close(fig)
    assert activation_figure(synthetic_trace([1.0])) is None


def test_activation_figure_titles_its_step(relu_trace):
    fig = activation_figure(relu_trace, step=2)
    top, bottom = fig.axes[:2]
    assert top.get_title() == "Activation health per layer (step 2)"
    assert top.get_ylabel() == "fraction of units"
    assert bottom.get_ylabel() == "mean slope φ'(x)"
    labels = [t.get_text() for t in bottom.get_xticklabels()]
    assert labels[0] == "1 (ReLU)" and len(labels) == 11
    plt.close(fig)
