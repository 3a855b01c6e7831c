"""The house style of the report's figures: colours, figure factory, log-safe values, ticks.

Every figure is built by :func:`new_figure` on ``matplotlib.figure.Figure`` with the Agg
canvas, never through pyplot: figures do not join pyplot's global registry, do not switch a
notebook's backend, and cannot leak if a caller forgets to close them. Colours are the
colour-blind-safe Okabe-Ito palette.

Example::

    >>> fig, axes = new_figure(4.0, 3.0, nrows=2, sharex=True)
    >>> len(axes), positive([1.0, 0.0, -2.0]).tolist()[0]
    (2, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "COLOURS",
    "CYCLE",
    "RC",
    "WEIGHT_TYPES",
    "layer_labels",
    "new_figure",
    "positive",
    "set_layer_ticks",
]

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
    "before": "#222222",
}
#: Line colours for several runs or series, in order.
CYCLE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]

#: Module types whose weight gradient the flow figure marks.
WEIGHT_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "RNN", "LSTM", "GRU", "Bilinear")
#: matplotlib settings of every figure.
RC = {
    "font.size": 9,
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


def layer_labels(modules: Sequence[str], types: Sequence[str], limit: int = 22) -> list[str]:
    """Tick labels ``"name (Type)"``, cut to ``limit`` characters with an ellipsis.

    >>> layer_labels(["0", "encoder.layers.11.linear"], ["Linear", ""])
    ['0 (Linear)', 'encoder.layers.11.lin…']
    """
    out = []
    for m, t in zip(modules, types, strict=True):
        text = f"{m} ({t})" if t else m
        out.append(text if len(text) <= limit else text[: limit - 1] + "…")
    return out


def set_layer_ticks(ax: Any, labels: Sequence[str], max_ticks: int = 32) -> None:
    """One x tick per module (at most ``max_ticks``, evenly thinned), labels rotated."""
    n = len(labels)
    every = max(1, math.ceil(n / max_ticks))
    pos = list(range(0, n, every))
    ax.set_xticks(pos)
    ax.set_xticklabels([labels[i] for i in pos], rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.5, n - 0.5)
