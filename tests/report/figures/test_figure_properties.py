"""report.figures on any trace: every figure draws, or says "no finite values" in the panel,
whatever the trace holds (all-NaN, all-Inf, all-zero norms, one step, one layer, no
activations, no RNN, an empty frame, hostile module names). The figure functions are called
directly here, so a figure bug fails this test (the report would turn it into a note)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings

from gradmedic.report.blocks import figure_png
from gradmedic.report.figures import (
    activation_figure,
    gain_product_figure,
    grad_norm_over_steps_figure,
    gradient_flow_figure,
    loss_figure,
    rnn_time_figure,
    signal_heatmap_figure,
    treatment_figures,
)
from gradmedic.report.figures.style import LOG_RANGE
from report_util import layer_trace, synthetic_trace, traces

TRACE_FIGURES = (
    gradient_flow_figure,
    signal_heatmap_figure,
    gain_product_figure,
    activation_figure,
    rnn_time_figure,
    grad_norm_over_steps_figure,
)


def _drawn(fig) -> bool:
    """Render ``fig`` as the report does (small, to keep the test quick); False for None."""
    if fig is None:
        return False
    raw, width, height = figure_png(fig, dpi=24)
    assert raw[:4] == b"\x89PNG" and width > 0 and height > 0
    return True


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces())
def test_every_figure_draws_or_is_absent_for_any_trace(trace):
    for figure in TRACE_FIGURES:
        _drawn(figure(trace))
    for fig, caption in treatment_figures(trace, {"reinit": trace}):
        assert caption and _drawn(fig)
    values = [float(v) for v in trace.frame["value"][:6]]
    _drawn(loss_figure({"run": values, "other": values[::-1]}))


@pytest.mark.parametrize("value", [math.nan, math.inf, 0.0])
def test_a_gradient_norm_that_is_never_finite_and_positive_says_so(value):
    fig = grad_norm_over_steps_figure(synthetic_trace([value] * 3, loss=[math.nan] * 3))
    top, bottom = fig.axes
    assert _texts(top) == ["no finite values above 0: gradient norm"]
    assert _texts(bottom) == ["no finite values: loss"]
    assert top.get_yscale() == "linear"
    assert _drawn(fig)


def test_one_step_one_layer_all_nan_flow_and_heatmap_say_so():
    rows = [(0, "fc", "", q, None, math.nan) for q in ("signal_out", "signal_in", "gain")]
    tr = layer_trace(rows, {"fc": "Linear"})
    flow = gradient_flow_figure(tr)
    assert _texts(flow.axes[0]) == ["no finite values above 0: gradient norms"]
    assert _texts(flow.axes[1]) == ["no finite values: gains"]
    heat = signal_heatmap_figure(tr)
    assert _texts(heat.axes[0]) == ["no finite values: backward signal"]
    assert len(heat.axes) == 1  # no colour bar without a colour scale
    product = gain_product_figure(tr)
    assert _texts(product.axes[0]) == ["no finite values: gains"]
    assert all(_drawn(f) for f in (flow, heat, product))


def test_values_beyond_the_log_range_stay_drawable():
    rows = [(0, "fc", "", "signal_out", None, 1e300), (0, "fc", "", "signal_in", None, 1e-300)]
    rows.append((0, "fc", "", "gain", None, 1e-300 / 1e300))
    tr = layer_trace(rows, {"fc": "Linear"})
    fig = gradient_flow_figure(tr)
    lo, hi = fig.axes[0].get_ylim()
    assert (lo, hi) == (LOG_RANGE[1] / 1.5, LOG_RANGE[1])  # 1e300 lies above the panel
    assert _drawn(fig)


def test_an_activation_layer_without_finite_fractions_says_so():
    rows = [(0, "act", "", q, None, math.inf) for q in ("saturated_frac", "dead_frac")]
    rows.append((0, "act", "", "dphi_mean", None, math.nan))
    fig = activation_figure(layer_trace(rows, {"act": "ReLU"}))
    top, bottom = fig.axes
    assert _texts(top) == ["no finite values: unit fractions"]
    assert _texts(bottom) == ["no finite values: slopes"]
    assert _drawn(fig)


def test_a_loss_curve_without_a_finite_value_says_so():
    fig = loss_figure({"run": [math.nan, math.inf]})
    assert _texts(fig.axes[0]) == ["no finite values: loss"]
    assert _drawn(fig)
