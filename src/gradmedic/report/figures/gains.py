"""Gains multiply along depth: the product of per-module gains against the measured
end-to-end ratio (article 1.1: ``0.9**20 ≈ 0.12``), with theory's product overlaid.

On a plain chain the product and the measured ratio coincide (the chain rule); a skip
connection or auxiliary head makes them part. :func:`gain_product_data` holds the numbers,
:func:`gain_product_figure` draws them (``None`` when the trace has no gains).

Example::

    >>> from gradmedic.trace import read_trace                          # doctest: +SKIP
    >>> gain_product_data(read_trace("run/trace.sqlite"))["product"][0]  # doctest: +SKIP
    1.2e-10
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gradmedic.report.figures.data import first_step, layer_snapshot
from gradmedic.report.figures.style import (
    COLOURS,
    layer_labels,
    log_axis,
    new_figure,
    no_finite_values,
    positive,
    set_layer_ticks,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradmedic.trace import Trace

__all__ = ["gain_product_data", "gain_product_figure"]


def gain_product_data(trace: Trace, step: int | None = None) -> pd.DataFrame:
    """The numbers behind :func:`gain_product_figure`, one row per module with a gain.

    Columns: ``module``, ``type``, ``product`` = ``∏_{k ≥ l} α_k`` (chain rule, from module l to
    the output), ``measured`` = ``‖∂L/∂x_l‖ / ‖∂L/∂y_out‖`` (``y_out``: the output of the last
    such module) and ``theory`` = ``∏_{k ≥ l}`` predicted α_k (NaN past a module without a
    prediction).
    """
    snap = layer_snapshot(trace, step)
    snap = snap[snap["gain"].notna() & snap["signal_in"].notna()]
    if snap.empty:
        return pd.DataFrame(columns=["module", "type", "product", "measured", "theory"])
    out_signal = float(snap["signal_out"].iloc[-1])
    gains = snap["gain"].to_numpy(dtype=float)
    pred = snap["predicted_gain"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        measured = snap["signal_in"].to_numpy(dtype=float) / out_signal
        product = np.cumprod(gains[::-1])[::-1]
        theory = np.cumprod(pred[::-1])[::-1]  # NaN propagates: no prediction past a gap
    return pd.DataFrame(
        {
            "module": snap["module"].to_numpy(),
            "type": snap["type"].to_numpy(),
            "product": product,
            "measured": measured if out_signal > 0 else np.nan,
            "theory": theory,
        }
    )


def gain_product_figure(trace: Trace, step: int | None = None) -> Figure | None:
    """Product of per-module gains against the measured end-to-end ratio.

    For module l the measured ratio is ``‖∂L/∂x_l‖ / ‖∂L/∂y_out‖`` (how far the gradient at
    the network output has shrunk or grown by the time it reaches l's input); the product is
    ``∏_{k ≥ l} α_k``. On a plain chain the two curves coincide (the chain rule); where a skip
    connection or auxiliary head bypasses modules the measured ratio departs from the product.
    Theory's product (where every module from l to the output has a prediction) is overlaid.
    Numbers: :func:`gain_product_data`. When no product or ratio is finite and positive the
    panel says "no finite values"; ``None`` when the trace has no gains.
    """
    snap = gain_product_data(trace, step)
    if snap.empty:
        if first_step(trace, "gain") is None:
            return None
        fig, (ax,) = new_figure(9.5, 4.6)  # gains were recorded, none of them finite
        no_finite_values(ax, "gains")
        ax.set_title("Gains multiply along depth")
        return fig
    product = snap["product"].to_numpy(dtype=float)
    measured = snap["measured"].to_numpy(dtype=float)
    theory = snap["theory"].to_numpy(dtype=float)
    if not np.isfinite(measured).any():
        measured = None
    x = np.arange(len(snap))
    fig, (ax,) = new_figure(9.5, 4.6)
    ax.plot(x, positive(product), "-o", ms=3, color=COLOURS["gain"], label="product of gains ∏α_k")
    if measured is not None:
        ax.plot(
            x,
            positive(measured),
            "--s",
            ms=3,
            color=COLOURS["signal"],
            label="measured ratio ‖∂L/∂x_l‖ / ‖∂L/∂y_out‖",
        )
    if np.isfinite(theory).any():
        ax.plot(
            x, positive(theory), ":", lw=2, color=COLOURS["theory"], label="theory ∏ predicted α"
        )
    ax.axhline(1.0, color="#555", lw=1, ls="--")
    curves = [c for c in (product, measured, theory) if c is not None]
    if np.isfinite(np.concatenate([positive(c) for c in curves])).any():
        log_axis(ax, *curves, [1.0])
    else:
        log_axis(ax, *curves, what="gains")
    ax.set_ylabel("ratio to the output gradient (log)")
    ax.set_xlabel("module l (model order: input → output)")
    end = f"end to end: product {product[0]:.3g}"
    if measured is not None:
        end += f", measured {measured[0]:.3g}"
    if np.isfinite(theory[0]):
        end += f", theory {theory[0]:.3g}"
    ax.set_title(f"Gains multiply along depth ({end})")
    ax.legend(loc="best")
    set_layer_ticks(ax, layer_labels(list(snap["module"]), list(snap["type"])))
    return fig
