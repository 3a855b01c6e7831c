"""Activation health per layer: saturated and dead fractions, and the mean slope φ'.

The measured mean slope is drawn against theory's ``E[φ'(√q z)]`` at the measured
pre-activation scale q (:func:`gradmedic.theory.gains.module_predicted_slope`); sigmoid's
slope is at most 0.25 (article 1.2). ``None`` when the trace recorded no activation.

Example::

    >>> from gradmedic.trace import read_trace                    # doctest: +SKIP
    >>> fig = activation_figure(read_trace("run/trace.sqlite"))    # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gradmedic.diagnosis.table import module_infos
from gradmedic.report.figures.data import as_float, first_step, layer_snapshot
from gradmedic.report.figures.style import COLOURS, layer_labels, new_figure, set_layer_ticks
from gradmedic.theory.gains import module_predicted_slope

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradmedic.trace import Trace

__all__ = ["activation_figure"]


def activation_figure(trace: Trace, step: int | None = None) -> Figure | None:
    """Saturated and dead fractions per activation layer, and the mean slope φ'.

    Top: fraction of units saturated (``|φ'| < 1%`` of its maximum) and dead (zero for the whole
    batch), 0 to 1. Bottom: measured mean ``φ'(x)`` with theory's ``E[φ'(√q z)]`` under the
    measured pre-activation scale q. Sigmoid's slope is at most 0.25 (article 1.2).
    """
    if step is None:
        step = first_step(trace, "saturated_frac")
    if step is None:
        return None
    snap = layer_snapshot(trace, step)
    snap = snap[snap["saturated_frac"].notna() | snap["dead_frac"].notna()]
    if snap.empty:
        return None
    info = module_infos(trace)
    x = np.arange(len(snap))
    fig, (ax, ax2) = new_figure(9.5, 5.8, nrows=2, sharex=True)
    w = 0.4
    ax.bar(
        x - w / 2,
        snap["saturated_frac"].fillna(0),
        w,
        color=COLOURS["saturated"],
        label="saturated (|φ'| < 1% of max)",
    )
    ax.bar(
        x + w / 2, snap["dead_frac"].fillna(0), w, color=COLOURS["dead"], label="dead (0 on batch)"
    )
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction of units")
    ax.set_title(f"Activation health per layer (step {step})")
    ax.legend(loc="best")
    ax2.plot(x, snap["dphi_mean"], "-o", ms=3, color=COLOURS["gain"], label="measured mean φ'(x)")
    expected = [
        as_float(module_predicted_slope(info.get(m, {}), None if pd.isna(q) else float(q)))
        for m, q in zip(snap["module"], snap["preact_ms"], strict=True)
    ]
    if np.isfinite(np.asarray(expected, dtype=float)).any():
        ax2.plot(
            x, expected, "x", ms=6, mew=1.5, color=COLOURS["theory"], label="theory E[φ'(√q z)]"
        )
    ax2.set_ylabel("mean slope φ'(x)")
    ax2.set_xlabel("activation module (model order: input → output)")
    ax2.set_ylim(bottom=0)
    ax2.legend(loc="best")
    set_layer_ticks(ax2, layer_labels(list(snap["module"]), list(snap["type"])))
    return fig
