"""report.figures.before_after: the untreated model against each remedy."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from gradmedic.report.figures import treatment_figures
from report_util import synthetic_trace


def test_treatment_figures_overlay_before_and_after(mlp_trace, relu_trace):
    pairs = treatment_figures(mlp_trace, {"swap-activation(to=relu)": relu_trace})
    assert len(pairs) == 2
    (flow, cap1), (loss, cap2) = pairs
    assert "Weight-gradient norm per layer" in cap1 and "Training loss" in cap2
    lines = flow.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["before (untreated)", "swap-activation(to=relu)"]
    assert lines[0].get_color() == "#222222"
    assert len(lines[0].get_xdata()) == 12  # 12 Linear layers
    f = mlp_trace.frame
    w0 = f[
        (f.step == 0) & (f.module == "0") & (f.parameter == "weight") & (f.quantity == "grad_norm")
    ]
    assert lines[0].get_ydata()[0] == pytest.approx(float(w0["value"].iloc[0]))
    assert len(loss.axes[0].get_lines()) == 2
    plt.close("all")


def test_traces_without_layers_or_losses_give_no_figures():
    assert treatment_figures(synthetic_trace([1.0]), {}) == []
    pairs = treatment_figures(synthetic_trace([1.0, 1.0], loss=[2.0, 1.0]), {})
    assert [caption.split(" ")[0] for _, caption in pairs] == ["Training"]
    plt.close("all")
