"""Activation health per layer: the zero-slope share (saturated or inactive), the dead share,
and the mean slope φ'.

The zero-slope share (``saturated_frac`` in the trace: ``|φ'|`` below 1% of its maximum) is
called *saturated* for activations whose slope vanishes on both tails (sigmoid, tanh,
softsign, hardtanh: the module's ``tails`` fact is ``"both"``) and *inactive* for the others,
the ReLU family above all (:func:`gradmedic.report.layers.zero_slope_name`). The measured mean slope is drawn against
theory's ``E[φ'(√q z)]`` at the measured pre-activation scale q
(:func:`gradmedic.theory.gains.module_predicted_slope`); sigmoid's slope is at most 0.25
(article 1.2). ``None`` when the trace recorded no activation.

Example::

    >>> from gradmedic.trace import read_trace                    # doctest: +SKIP
    >>> fig = activation_figure(read_trace("run/trace.sqlite"))    # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gradmedic.diagnosis.table import module_infos
from gradmedic.report.figures.data import (
    as_float,
    first_step,
    layer_snapshot,
    recorded_modules,
)
from gradmedic.report.figures.style import (
    COLOURS,
    layer_labels,
    new_figure,
    no_finite_values,
    set_layer_ticks,
)
from gradmedic.report.layers import zero_slope_name
from gradmedic.theory.gains import module_predicted_slope

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradmedic.trace import Trace

__all__ = ["activation_figure", "fractions"]

_QUANTITIES = ("saturated_frac", "dead_frac")


def fractions(values: Any) -> np.ndarray:
    """Shares of units as bar heights: finite values clipped to 0..1, NaN where not finite."""
    v = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(v), np.clip(v, 0.0, 1.0), np.nan)


def activation_figure(trace: Trace, step: int | None = None) -> Figure | None:
    """Zero-slope and dead fractions per activation layer, and the mean slope φ'.

    Top: fraction of units saturated (``|φ'| < 1%`` of its maximum, for activations that
    saturate on both tails) or inactive (the same share for the ReLU family), and dead (zero
    for the whole batch), 0 to 1. Bottom: measured mean ``φ'(x)`` with theory's
    ``E[φ'(√q z)]`` under the measured pre-activation scale q. Sigmoid's slope is at most 0.25
    (article 1.2). A panel without a finite value says "no finite values".
    """
    if step is None:
        step = first_step(trace, "saturated_frac")
    if step is None:
        step = first_step(trace, "dead_frac")
    if step is None:
        return None
    snap = layer_snapshot(trace, step)
    snap = snap[snap["module"].isin(recorded_modules(trace, step, _QUANTITIES))]
    if snap.empty:
        return None
    info = module_infos(trace)
    names = [zero_slope_name(info.get(m)) for m in snap["module"]]
    x = np.arange(len(snap))
    fig, (ax, ax2) = new_figure(9.5, 5.8, nrows=2, sharex=True)
    w = 0.4
    zero = fractions(snap["saturated_frac"])
    dead = fractions(snap["dead_frac"])
    for kind, label in (
        ("saturated", "saturated (|φ'| < 1% of max, both tails)"),
        ("inactive", "inactive (φ' < 1% of max, ReLU family)"),
    ):
        mine = np.array([n == kind for n in names])
        if mine.any():
            heights = np.where(mine, np.nan_to_num(zero), 0.0)
            ax.bar(x - w / 2, heights, w, color=COLOURS[kind], label=label)
    ax.bar(x + w / 2, np.nan_to_num(dead), w, color=COLOURS["dead"], label="dead (0 on batch)")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction of units")
    ax.set_title(f"Activation health per layer (step {step})")
    if np.isfinite(zero).any() or np.isfinite(dead).any():
        ax.legend(loc="best")
    else:
        no_finite_values(ax, "unit fractions")
        ax.set_ylim(0, 1.02)
    slope = snap["dphi_mean"].to_numpy(dtype=float)
    slope = np.where(np.isfinite(slope), slope, np.nan)
    ax2.plot(x, slope, "-o", ms=3, color=COLOURS["gain"], label="measured mean φ'(x)")
    expected = np.asarray(
        [
            as_float(module_predicted_slope(info.get(m, {}), None if pd.isna(q) else float(q)))
            for m, q in zip(snap["module"], snap["preact_ms"], strict=True)
        ],
        dtype=float,
    )
    expected = np.where(np.isfinite(expected), expected, np.nan)
    if np.isfinite(expected).any():
        ax2.plot(
            x, expected, "x", ms=6, mew=1.5, color=COLOURS["theory"], label="theory E[φ'(√q z)]"
        )
    ax2.set_ylabel("mean slope φ'(x)")
    ax2.set_xlabel("activation module (model order: input → output)")
    both = np.concatenate([slope[np.isfinite(slope)], expected[np.isfinite(expected)]])
    if both.size:
        lo, hi = float(both.min()), float(both.max())
        pad = 0.1 * (hi - lo)  # Python floats: an overflow gives inf, not an error
        bottom, top = lo - pad, hi + pad
        bottom, top = (bottom, top) if np.isfinite([bottom, top]).all() else (lo, hi)
        ax2.set_ylim(min(0.0, bottom), max(top, 1e-3))
        ax2.legend(loc="best")
    else:
        no_finite_values(ax2, "slopes")
    set_layer_ticks(ax2, layer_labels(list(snap["module"]), list(snap["type"])))
    return fig
