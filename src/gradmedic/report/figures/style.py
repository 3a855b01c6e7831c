r"""The house style of the report's figures: colours, figure factory, log-safe values, ticks.

Text drawn from a trace (module names, run names) goes through :func:`plain`: it is shown
as written, never read as mathtext (``a$x^2$``, ``$\frac$``) or as control characters. A
panel whose numbers are all NaN, Inf or (on a log axis) zero says so in words
(:func:`log_axis`, :func:`no_finite_values`) instead of failing to draw.

Every figure is built by :func:`new_figure` on ``matplotlib.figure.Figure`` with the Agg
canvas, never through pyplot: figures do not join pyplot's global registry, do not switch a
notebook's backend, and cannot leak if a caller forgets to close them. Colours are the
colour-blind-safe Okabe-Ito palette.

Example::

    >>> fig, axes = new_figure(4.0, 3.0, nrows=2, sharex=True)
    >>> len(axes), positive([1.0, 0.0, -2.0]).tolist()[0]
    (2, 1.0)
    >>> plain("cost in $ and $x^2$")
    'cost in \\$ and \\$x^2\\$'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator

from gradmedic.report.values import visible

__all__ = [
    "COLOURS",
    "CYCLE",
    "LOG_RANGE",
    "NO_FINITE",
    "RC",
    "WEIGHT_TYPES",
    "layer_labels",
    "log_axis",
    "new_figure",
    "no_finite_values",
    "plain",
    "positive",
    "set_layer_ticks",
]

#: What a panel says when it has nothing it can draw.
NO_FINITE = "no finite values"
#: The widest range a log axis or colour scale is given: beyond it matplotlib's tick and
#: margin arithmetic overflows (``b ** decades``) on a small panel.
LOG_RANGE = (1e-200, 1e200)

#: Colours used across figures (colour-blind safe, Okabe-Ito).
COLOURS = {
    "signal": "#0072B2",
    "weight": "#E69F00",
    "gain": "#009E73",
    "theory": "#CC79A7",
    "spike": "#D55E00",
    "nonfinite": "#B3261E",
    "dead": "#56B4E9",
    "saturated": "#D55E00",
    "inactive": "#E69F00",
    "before": "#222222",
}
#: Line colours for several runs or series, in order.
CYCLE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]

#: Module types whose weight gradient the flow figure marks.
WEIGHT_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "RNN", "LSTM", "GRU", "Bilinear")
#: matplotlib settings of every figure.
RC = {
    "font.size": 9,
    "text.usetex": False,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def new_figure(width: float, height: float, nrows: int = 1, **kw: Any) -> tuple[Figure, Any]:
    """A ``width`` x ``height`` inch figure with ``nrows`` stacked axes (gridded), built in
    the house style on the Agg canvas, outside pyplot. Keywords go to ``Figure.subplots``
    (e.g. ``sharex=True``). Returns the figure and the array of axes."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, 1, squeeze=False, **kw)[:, 0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def positive(values: Any) -> np.ndarray:
    """``values`` as floats with zero, negative and non-finite entries masked as NaN (what a
    log axis can show)."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isfinite(v) & (v > 0), v, np.nan)


def plain(text: object) -> str:
    """``text`` as matplotlib draws it literally: control characters shown as escapes
    (:func:`gradmedic.report.values.visible`) and every ``$`` escaped, so mathtext never
    parses it (matplotlib shows ``\\$`` as ``$`` in text that is not math)."""
    return visible(text).replace("$", "\\$")


def layer_labels(modules: Sequence[str], types: Sequence[str], limit: int = 22) -> list[str]:
    r"""Tick labels ``"name (Type)"``, cut to ``limit`` characters with an ellipsis, as
    :func:`plain` text.

    >>> layer_labels(["0", "encoder.layers.11.linear", "a$x$"], ["Linear", "", "ReLU"])
    ['0 (Linear)', 'encoder.layers.11.lin…', 'a\\$x\\$ (ReLU)']
    """
    out = []
    for m, t in zip(modules, types, strict=True):
        text = f"{visible(m)} ({visible(t)})" if t else visible(m)
        out.append(plain(text if len(text) <= limit else text[: limit - 1] + "…"))
    return out


def no_finite_values(ax: Any, what: str = "", *, above_zero: bool = False) -> None:
    """Say in the middle of ``ax`` that it has :data:`NO_FINITE` to draw (``above_zero``:
    none above 0, for a log axis; ``what``: which numbers, after a colon), on a linear axis
    that cannot fail to draw."""
    ax.set_yscale("linear")
    ax.set_ylim(0, 1)
    ax.set_yticks([])  # a 0-1 scale here would read as data
    text = NO_FINITE + (" above 0" if above_zero else "") + (f": {what}" if what else "")
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777")


def log_axis(ax: Any, *values: Any, what: str = "") -> bool:
    """Put ``ax``'s y axis on a log scale fitted to the finite positive entries of
    ``values`` and return True; when there are none, :func:`no_finite_values` and return
    False. The axis spans at most :data:`LOG_RANGE` (entries beyond lie off the panel), with
    a fixed number of ticks, where matplotlib's tick and margin arithmetic stays finite."""
    v = np.concatenate([np.ravel(positive(x)) for x in values]) if values else np.array([])
    v = v[np.isfinite(v)]
    if v.size == 0:
        no_finite_values(ax, what, above_zero=True)
        return False
    floor, ceil = LOG_RANGE
    lo, hi = min(max(float(v.min()), floor), ceil), max(min(float(v.max()), ceil), floor)
    pad = min(max(1.5, (hi / lo) ** 0.05), 1e10)
    limits = (max(lo / pad, floor), min(hi * pad, ceil))
    if limits[1] <= limits[0]:
        limits = (floor, floor * 10) if lo <= floor else (ceil / 10, ceil)
    ax.set_ylim(*limits)  # before the scale: autoscaling over 1e300 overflows
    ax.set_yscale("log")
    ax.set_ylim(*limits)
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=9))
    return True


def set_layer_ticks(ax: Any, labels: Sequence[str], max_ticks: int = 32) -> None:
    """One x tick per module (at most ``max_ticks``, evenly thinned), labels rotated."""
    n = len(labels)
    every = max(1, math.ceil(n / max_ticks))
    pos = list(range(0, n, every))
    ax.set_xticks(pos)
    ax.set_xticklabels([labels[i] for i in pos], rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.5, n - 0.5)
