"""Training dynamics: the global gradient norm over steps (spikes and NaN/Inf events
marked, the loss below) and loss curves of several runs.

Spike markers use the one definition of a spike, :func:`gradmedic.trace.derived.spike_steps`
on :func:`gradmedic.trace.derived.global_grad_norm`, so the figure marks exactly the steps of
the diagnosis's ``gradient-spikes`` finding.

Example::

    >>> fig = loss_figure({"before": [2.3, 2.3, 2.2], "relu": [2.3, 0.9, 0.4]})
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['before', 'relu']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from gradmedic.report.figures.style import (
    COLOURS,
    CYCLE,
    log_axis,
    new_figure,
    no_finite_values,
    plain,
    positive,
)
from gradmedic.trace.derived import SPIKE_FACTOR, global_grad_norm, spike_steps

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradmedic.trace import Trace

__all__ = ["grad_norm_over_steps_figure", "loss_figure", "nonfinite_steps", "spike_markers"]


def nonfinite_steps(trace: Trace) -> list[int]:
    """Steps where a NaN/Inf appeared anywhere (forward, backward or the global check)."""
    f = trace.frame
    hits = f[f["quantity"].isin(["nonfinite", "nonfinite_forward", "nonfinite_backward"])]
    return sorted({int(s) for s in hits["step"]})


def spike_markers(trace: Trace) -> list[tuple[int, float]]:
    """``(step, global gradient norm)`` of every gradient spike: exactly the steps the
    diagnosis's ``gradient-spikes`` finding reports (:func:`gradmedic.trace.derived.spike_steps`
    on :func:`gradmedic.trace.derived.global_grad_norm`: at least
    :data:`~gradmedic.trace.derived.SPIKE_FACTOR` times a running baseline that spikes do not
    update, as in ZClip).
    """
    series = global_grad_norm(trace)
    value_at = dict(series)
    return [(s, value_at[s]) for s in spike_steps(series)]


def grad_norm_over_steps_figure(trace: Trace) -> Figure | None:
    """Global gradient norm over training steps, spikes and non-finite events marked.

    Spikes (▲) are :func:`spike_markers`, the steps of the diagnosis's ``gradient-spikes``
    finding. Steps where a NaN/Inf appeared (forward or backward) are red vertical lines. The
    loss is drawn below on the same steps. ``None`` when the trace has no global gradient norm.
    """
    series = global_grad_norm(trace)
    if not series:
        return None
    loss = trace.quantity("loss")
    loss = loss[loss["module"] == ""].sort_values("step")
    steps = np.array([s for s, _ in series])
    vals = np.array([v for _, v in series], dtype=float)
    nrows = 2 if not loss.empty else 1
    fig, axes = new_figure(9.0, 5.4 if nrows == 2 else 3.4, nrows=nrows, sharex=True)
    ax = axes[0]
    ax.plot(
        steps,
        positive(vals),
        "-",
        color=COLOURS["signal"],
        lw=1.2,
        label="‖∇θ L‖ (all parameters)",
    )
    spikes = spike_markers(trace)
    if spikes:
        ax.plot(
            [s for s, _ in spikes],
            [v for _, v in spikes],
            "^",
            ms=8,
            color=COLOURS["spike"],
            label=f"spike (≥ {SPIKE_FACTOR:g}× the running baseline)",
        )
    bad = nonfinite_steps(trace)
    for i, s in enumerate(bad):
        for a in axes:
            a.axvline(
                s,
                color=COLOURS["nonfinite"],
                lw=1.2,
                alpha=0.8,
                label="NaN/Inf" if i == 0 and a is ax else None,
            )
    log_axis(ax, vals, what="gradient norm")
    ax.set_ylabel("gradient norm (log)")
    title = "Gradient norm over training"
    if bad:
        title += f" (first NaN/Inf at step {bad[0]})"
    ax.set_title(title)
    ax.legend(loc="best")
    if nrows == 2:
        lv = loss["value"].to_numpy(dtype=float)
        axes[1].plot(loss["step"], np.where(np.isfinite(lv), lv, np.nan), "-", color="#333", lw=1.2)
        axes[1].set_ylabel("training loss")
        if not np.isfinite(lv).any():
            no_finite_values(axes[1], "loss")
    axes[-1].set_xlabel("training step")
    return fig


def loss_figure(
    curves: Mapping[str, Sequence[float]], *, title: str = "Training loss"
) -> Figure | None:
    """Loss against step for several runs (e.g. ``{"before": [...], "reinit(scheme=kaiming)": [...]}``).

    Log y-axis when every value is positive and they span more than 30×. A run that went
    non-finite ends with a red ✕ at its last finite value.
    """
    curves = {str(k): np.asarray(list(v), dtype=float) for k, v in curves.items() if len(v)}
    if not curves:
        return None
    fig, (ax,) = new_figure(9.0, 4.2)
    finite_all = np.concatenate([c[np.isfinite(c)] for c in curves.values()])
    finite_all = finite_all[np.abs(finite_all) < 1e300]  # beyond, matplotlib's margins overflow
    for i, (name, c) in enumerate(curves.items()):
        colour = (
            COLOURS["before"]
            if i == 0 and name.lower().startswith("before")
            else CYCLE[i % len(CYCLE)]
        )
        ok = np.isfinite(c)
        ax.plot(
            np.arange(len(c)),
            np.where(ok, c, np.nan),
            "-",
            lw=2 if colour == COLOURS["before"] else 1.3,
            color=colour,
            label=plain(name),
        )
        if not ok.all():
            j = int(np.argmin(ok))  # first non-finite
            y = (
                c[j - 1]
                if j > 0 and ok[j - 1]
                else (np.nanmax(finite_all) if finite_all.size else 1.0)
            )
            ax.plot([j], [y], "x", ms=10, mew=2, color=COLOURS["nonfinite"])
    if finite_all.size and (finite_all > 0).all() and finite_all.max() / finite_all.min() > 30:
        log_axis(ax, finite_all)
    elif not finite_all.size:
        no_finite_values(ax, "loss")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(loc="best")
    return fig
