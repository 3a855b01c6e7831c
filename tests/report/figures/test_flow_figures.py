"""report.figures.flow: the gradient-flow figure and the layer x step heatmap plot the trace's
numbers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from gradmedic.report.figures import gradient_flow_figure, layer_snapshot, signal_heatmap_figure
from report_util import synthetic_trace


def test_gradient_flow_figure_plots_the_trace_numbers(mlp_trace):
    fig = gradient_flow_figure(mlp_trace)
    snap = layer_snapshot(mlp_trace)
    top, bottom = fig.axes[:2]
    assert top.get_yscale() == "log"
    assert top.get_ylabel() == "L2 norm (log scale)"
    signal = top.get_lines()[0]
    np.testing.assert_allclose(signal.get_ydata(), snap["signal_out"], rtol=1e-12)
    later = [ln for ln in top.get_lines() if ln.get_label() == "backward signal, step 3"]
    assert len(later) == 1  # the last recorded step, overlaid faintly
    gain = bottom.get_lines()[0]
    np.testing.assert_allclose(gain.get_ydata(), snap["gain"], rtol=1e-12)
    labels = [t.get_text() for t in bottom.get_xticklabels()]
    assert labels[0] == "0 (Linear)" and labels[1] == "1 (Sigmoid)"
    assert "step 0" in top.get_title()
    plt.close(fig)


def test_signal_heatmap_uses_log_colours(mlp_trace):
    fig = signal_heatmap_figure(mlp_trace)
    ax = fig.axes[0]
    img = ax.get_images()[0]
    assert type(img.norm).__name__ == "LogNorm"
    table = mlp_trace.pivot("signal_out")
    assert img.get_array().shape == (table.shape[1], table.shape[0])  # modules x steps
    assert img.norm.vmin == pytest.approx(table.to_numpy().min())
    assert ax.get_xlabel() == "training step"
    plt.close(fig)


def test_no_per_layer_data_gives_no_figure():
    tr = synthetic_trace([1.0, 2.0])
    assert gradient_flow_figure(tr) is None
    assert signal_heatmap_figure(tr) is None
