"""report.figures.style: module names are text, never mathtext or control characters, in every
figure; log axes fit any values or say that there are none to draw."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from matplotlib.cbook import is_math_text
from matplotlib.text import Text

from gradmedic.report.blocks import figure_png
from gradmedic.report.figures import (
    activation_figure,
    gain_product_figure,
    gradient_flow_figure,
    rnn_time_figure,
    signal_heatmap_figure,
)
from gradmedic.report.figures.style import LOG_RANGE, log_axis, new_figure, plain
from report_util import layer_trace

# names that mathtext would typeset ('a$x^2$'), refuse ('$\frac$' raises ValueError), or
# that hold TeX specials and a control character
NAMES = {"a$x^2$": "Linear", "$\\frac$": "ReLU", "x_y": "Sigmoid", "back\\slash\x1b": "RNN"}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a$x^2$", "a\\$x^2\\$"),
        ("$\\frac$", "\\$\\frac\\$"),
        ("x_y", "x_y"),
        ("back\\slash", "back\\slash"),
        ("\x1b]0;t\x07", "\\x1b]0;t\\x07"),
    ],
)
def test_plain_escapes_dollars_and_control_characters(text, shown):
    assert plain(text) == shown
    assert not is_math_text(plain(text))


def _named_trace():
    rows = []
    for step in (0, 1):
        for name in NAMES:
            rows += [(step, name, "", q, None, 0.5) for q in ("signal_out", "signal_in", "gain")]
        rows += [(step, "$\\frac$", "", q, None, 0.25) for q in ("saturated_frac", "dead_frac")]
        rows += [(step, "back\\slash\x1b", "", "input_grad_t", t, 1.0 + t) for t in range(3)]
    return layer_trace(rows, NAMES)


def test_module_names_are_text_in_every_figure():
    trace = _named_trace()
    figures = [
        f(trace)
        for f in (
            gradient_flow_figure,
            signal_heatmap_figure,
            gain_product_figure,
            activation_figure,
            rnn_time_figure,
        )
    ]
    flow_ticks = [t.get_text() for t in figures[0].axes[1].get_xticklabels()]
    assert flow_ticks == [
        "a\\$x^2\\$ (Linear)",
        "\\$\\frac\\$ (ReLU)",
        "x_y (Sigmoid)",
        "back\\slash\\x1b (RNN)",
    ]
    heat_ticks = [t.get_text() for t in figures[1].axes[0].get_yticklabels()]
    assert heat_ticks == flow_ticks
    legend = [t.get_text() for t in figures[4].axes[0].get_legend().get_texts()]
    assert legend[0] == "back\\slash\\x1b: ‖∂L/∂x_t‖ (input)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph (a raw control character) warns
        for fig in figures:
            named = [
                t.get_text()
                for t in fig.findobj(Text)
                if any(n in t.get_text() for n in ("frac", "x^2", "slash"))
            ]
            assert named and not any(is_math_text(s) for s in named)
            _, width, _ = figure_png(fig, dpi=30)  # mathtext would raise on '$\frac$'
            assert width > 0


def test_log_axis_fits_the_finite_positive_values():
    _, (ax,) = new_figure(4.0, 3.0)
    assert log_axis(ax, [0.01, 0.0, math.nan], [100.0, -1.0, math.inf]) is True
    pad = (1e4) ** 0.05
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.get_ylim(), (0.01 / pad, 100.0 * pad))


def test_log_axis_without_positive_values_says_so():
    _, (ax,) = new_figure(4.0, 3.0)
    assert log_axis(ax, [0.0, -2.0, math.nan], what="loss") is False
    assert ax.get_yscale() == "linear"
    assert [t.get_text() for t in ax.texts] == ["no finite values above 0: loss"]


def test_log_axis_keeps_to_the_drawable_range():
    fig, (ax,) = new_figure(4.0, 1.0)  # a short panel: few ticks, the hardest case
    assert log_axis(ax, [1e-300, 1e300]) is True
    assert ax.get_ylim() == LOG_RANGE
    assert figure_png(fig, dpi=30)[1] > 0
