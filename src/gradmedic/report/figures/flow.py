"""Gradient flow along depth: per-layer norms and gains, and the layer x step heatmap.

The backward signal ``‖∂L/∂y_l‖`` at a module's output (``signal_out``), ``‖∂L/∂x_l‖`` at its
input (``signal_in``) and the gain ``α_l = signal_in / signal_out``; theory's mean-field gain
(:mod:`gradmedic.theory`) is overlaid where there is one. Each function returns ``None`` when
the trace lacks the data.

Example::

    >>> from gradmedic.trace import read_trace                     # doctest: +SKIP
    >>> fig = gradient_flow_figure(read_trace("run/trace.sqlite"))  # doctest: +SKIP
    >>> fig.savefig("flow.png")                                     # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import LogLocator

from gradmedic.diagnosis.table import module_infos
from gradmedic.report.figures.data import (
    first_step,
    last_step,
    layer_snapshot,
    recorded_modules,
)
from gradmedic.report.figures.style import (
    COLOURS,
    LOG_RANGE,
    WEIGHT_TYPES,
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

__all__ = ["gradient_flow_figure", "signal_heatmap_figure"]

_FLOW_QUANTITIES = ("grad_norm", "signal_out", "signal_in", "gain")


def gradient_flow_figure(trace: Trace, step: int | None = None) -> Figure | None:
    """Per-layer gradient flow: weight-gradient and backward-signal norms, and the gain.

    Top: ``‖∂L/∂W_l‖`` and ``‖∂L/∂y_l‖`` per module on a log axis, input left, output right;
    a healthy net keeps them within a decade or two, a vanishing one slopes down to the left.
    Bottom: the gain ``α_l`` per module with theory's prediction (× markers) and the line
    α = 1. ``step=None``: the first recorded step, with the last recorded step overlaid faintly.
    A panel with only NaN/Inf/zero values says "no finite values"; ``None`` when the trace
    has no per-layer numbers.
    """
    first = step if step is not None else first_step(trace, "signal_out")
    if first is None:
        first = first_step(trace, "grad_norm")
    if first is None:
        return None
    snap = layer_snapshot(trace, first)
    snap = snap[snap["module"].isin(recorded_modules(trace, first, _FLOW_QUANTITIES))]
    if snap.empty:
        return None
    last = last_step(trace, "signal_out") if step is None else None
    later = None
    if last is not None and last != first:
        later = layer_snapshot(trace, last).set_index("module").reindex(snap["module"])
    x = np.arange(len(snap))
    fig, (ax, ax2) = new_figure(9.5, 6.2, nrows=2, sharex=True)
    ax.plot(
        x,
        positive(snap["signal_out"]),
        "-o",
        ms=3,
        color=COLOURS["signal"],
        label=f"backward signal ‖∂L/∂y‖ (step {first})",
    )
    has_w = snap["type"].isin(WEIGHT_TYPES) | snap["grad_norm"].notna()
    ax.plot(
        x[has_w.to_numpy()],
        positive(snap.loc[has_w, "weight_grad_norm"]),
        "s",
        ms=5,
        color=COLOURS["weight"],
        label=f"weight gradient ‖∂L/∂W‖ (step {first})",
    )
    if later is not None:
        ax.plot(
            x,
            positive(later["signal_out"]),
            "-",
            color=COLOURS["signal"],
            alpha=0.35,
            label=f"backward signal, step {last}",
        )
    log_axis(
        ax,
        snap["signal_out"],
        snap.loc[has_w, "weight_grad_norm"],
        later["signal_out"] if later is not None else [],
        what="gradient norms",
    )
    ax.set_ylabel("L2 norm (log scale)")
    ax.set_title(f"Gradient flow per layer, input → output (step {first})")
    ax.legend(loc="best")
    gain = positive(snap["gain"])
    ax2.plot(x, gain, "-o", ms=3, color=COLOURS["gain"], label="measured gain α = ‖∂L/∂x‖/‖∂L/∂y‖")
    pred = positive(snap["predicted_gain"])
    if np.isfinite(pred).any():
        ax2.plot(x, pred, "x", ms=6, mew=1.5, color=COLOURS["theory"], label="theory (mean field)")
    ax2.axhline(1.0, color="#555", lw=1, ls="--", label="α = 1 (signal kept)")
    both = np.concatenate([gain[np.isfinite(gain)], pred[np.isfinite(pred)]])
    if both.size == 0:
        no_finite_values(ax2, "gains")
        ax2.set_ylabel("gain α per module")
    elif max(both.max(), 1.0) / min(both.min(), 1.0) > 30:  # log only when gains span decades
        log_axis(ax2, both, [1.0])
        ax2.set_ylabel("gain α per module (log)")
    else:
        ax2.set_ylim(0, 1.1 * max(both.max(), 1.0))
        ax2.set_ylabel("gain α per module")
    ax2.set_xlabel("module (model order: input → output)")
    ax2.legend(loc="best")
    set_layer_ticks(ax2, layer_labels(list(snap["module"]), list(snap["type"])))
    return fig


def signal_heatmap_figure(trace: Trace) -> Figure | None:
    """Layer × step heatmap of the backward signal ``‖∂L/∂y_l‖`` on a log colour scale.

    Rows are modules (input at the top), columns recorded steps; a vanishing net shows a dark
    band at the top that stays dark while training, an exploding one bright rows or steps.
    Cells that are NaN, Inf or zero are left blank; when all are, the panel says "no finite
    values". ``None`` when the trace recorded no backward signal.
    """
    f = trace.quantity("signal_out")
    if f.empty:
        return None
    # like Trace.pivot, but a module whose every value is NaN keeps its row
    table = f.groupby(["step", "module"])["value"].last().unstack("module")
    order = {str(m): i for i, m in enumerate(trace.modules["name"])}
    table = table[sorted(table.columns, key=lambda m: order.get(str(m), len(order)))]
    data = positive(table.to_numpy().T)  # modules x steps
    finite = data[np.isfinite(data)]
    info = module_infos(trace)
    modules = [str(c) for c in table.columns]
    labels = layer_labels(modules, [info.get(m, {}).get("type", "") for m in modules])
    steps = list(table.index)
    height = min(9.0, 2.2 + 0.14 * len(modules))
    fig, (ax,) = new_figure(9.5, height)
    ax.grid(False)
    extent = (steps[0] - 0.5, steps[-1] + 0.5, len(modules) - 0.5, -0.5)
    img = None
    if finite.size:
        vmin = min(max(float(finite.min()), LOG_RANGE[0]), LOG_RANGE[1] / 10)
        vmax = max(min(float(finite.max()), LOG_RANGE[1]), vmin * 10)
        img = ax.imshow(
            np.ma.masked_invalid(data),
            aspect="auto",
            interpolation="nearest",
            cmap="viridis",
            norm=LogNorm(vmin=vmin, vmax=vmax),
            extent=extent,
        )
    else:
        no_finite_values(ax, "backward signal")
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    every = max(1, math.ceil(len(modules) / 40))
    ax.set_yticks(range(0, len(modules), every))
    ax.set_yticklabels(labels[::every], fontsize=7)
    ax.set_xlabel("training step")
    ax.set_ylabel("module (input at top)")
    ax.set_title("Backward signal ‖∂L/∂y‖ per module and step (log colour scale)")
    if img is not None:
        cb = fig.colorbar(img, ax=ax)
        cb.locator = LogLocator(base=10, numticks=9)
        cb.set_label("‖∂L/∂y‖ (log scale)")
    return fig
