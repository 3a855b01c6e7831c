"""report.figures.gains: gains multiply along depth; on a plain chain the product equals the
measured end-to-end ratio."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from gradmedic.report.figures import gain_product_data, gain_product_figure
from report_util import synthetic_trace


def test_gain_product_equals_measured_end_to_end_ratio_on_a_chain(mlp_trace):
    data = gain_product_data(mlp_trace)
    assert len(data) == 23  # 12 Linear + 11 Sigmoid
    np.testing.assert_allclose(data["product"], data["measured"], rtol=1e-6)
    # eleven sigmoid layers: the gradient at the input is ~1e-10 of the output's
    assert 1e-12 < data["product"].iloc[0] < 1e-8
    # theory's product tracks the measurement within a factor 2 over 25 modules
    assert 0.5 < data["theory"].iloc[0] / data["measured"].iloc[0] < 2.0


def test_gain_product_figure_draws_the_numbers(mlp_trace):
    data = gain_product_data(mlp_trace)
    fig = gain_product_figure(mlp_trace)
    ax = fig.axes[0]
    product, measured, theory = ax.get_lines()[:3]
    np.testing.assert_allclose(product.get_ydata(), data["product"], rtol=1e-12)
    np.testing.assert_allclose(measured.get_ydata(), data["measured"], rtol=1e-12)
    assert theory.get_label() == "theory ∏ predicted α"
    assert ax.get_title().startswith(
        f"Gains multiply along depth (end to end: product {data['product'].iloc[0]:.3g}"
    )
    plt.close(fig)


def test_no_gains_no_figure():
    tr = synthetic_trace([1.0])
    assert gain_product_data(tr).empty
    assert gain_product_figure(tr) is None
