"""report.figures.rnn: the gradient reaching each time step of a recurrent layer."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from gradmedic.report.figures import rnn_time_figure


def test_rnn_time_figure(rnn_trace, mlp_trace):
    assert rnn_time_figure(mlp_trace) is None
    fig = rnn_time_figure(rnn_trace)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time step t"
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == [
        "rnn: ‖∂L/∂x_t‖ (input)",
        "rnn: ‖∂L/∂h_t‖ (layer0)",
        "10⁻³ of the largest",
    ]
    f = rnn_trace.frame
    ref = f[(f["quantity"] == "input_grad_t") & (f["step"] == 0)].sort_values("idx")
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), ref["value"], rtol=1e-12)
    assert len(ref) == 20
    peak = max(np.nanmax(ln.get_ydata()) for ln in ax.get_lines()[:2])
    assert ax.get_lines()[2].get_ydata()[0] == peak * 1e-3
    plt.close(fig)


def test_rnn_time_figure_at_a_step_without_a_profile(rnn_trace):
    assert rnn_time_figure(rnn_trace, step=7) is None  # only step 0 was recorded
    fig = rnn_time_figure(rnn_trace, step=0)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "Gradient reaching each time step (step 0)"
    assert [ln.get_linestyle() for ln in ax.get_lines()[:2]] == ["--", "-"]  # input, hidden
    plt.close(fig)
