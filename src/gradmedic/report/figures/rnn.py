"""Gradient through time in recurrent layers: ``‖∂L/∂x_t‖`` and ``‖∂L/∂h_t‖`` against t.

A vanishing RNN shows the norm falling exponentially from the last step backwards
(Pascanu et al. 2013). ``None`` for a trace without a time profile (any non-recurrent model).

Example::

    >>> from gradmedic.trace import read_trace                 # doctest: +SKIP
    >>> fig = rnn_time_figure(read_trace("run/trace.sqlite"))   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gradmedic.report.figures.style import CYCLE, log_axis, new_figure, plain, positive

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradmedic.trace import Trace

__all__ = ["rnn_time_figure"]


def rnn_time_figure(trace: Trace, step: int | None = None) -> Figure | None:
    """RNN gradient through time: ``‖∂L/∂x_t‖`` (and ``‖∂L/∂h_t‖`` when recorded) against t.

    With the loss at the last step (adding/copy tasks), a vanishing RNN shows the norm falling
    exponentially from right to left (Pascanu et al. 2013); the dotted line marks 10⁻³ of the
    largest value, the memory-horizon threshold. Without a finite value the panel says
    "no finite values".
    """
    f = trace.frame
    f = f[f["quantity"].isin(["input_grad_t", "hidden_grad_t"])]
    if f.empty:
        return None
    if step is None:
        step = int(f["step"].min())
    f = f[f["step"] == step]
    if f.empty:
        return None
    fig, (ax,) = new_figure(9.0, 4.4)
    peak = 0.0
    drawn = []
    for i, ((module, param, qty), g) in enumerate(f.groupby(["module", "parameter", "quantity"])):
        g = g.sort_values("idx")
        vals = positive(g["value"])
        drawn.append(vals)
        if np.isfinite(vals).any():
            peak = max(peak, float(np.nanmax(vals)))
        what = "‖∂L/∂x_t‖ (input)" if qty == "input_grad_t" else f"‖∂L/∂h_t‖ ({plain(param)})"
        ax.plot(
            g["idx"].astype(float),
            vals,
            "-" if qty == "hidden_grad_t" else "--",
            color=CYCLE[i % len(CYCLE)],
            label=f"{plain(module)}: {what}",
        )
    if peak > 0:
        ax.axhline(peak * 1e-3, color="#555", ls=":", lw=1, label="10⁻³ of the largest")
        drawn.append([peak * 1e-3])
    log_axis(ax, *drawn, what="gradient through time")
    ax.set_xlabel("time step t")
    ax.set_ylabel("gradient norm (log scale)")
    ax.set_title(f"Gradient reaching each time step (step {step})")
    ax.legend(loc="best")
    return fig
