"""Before/after overlays for ``treat``: the untreated model against each remedy.

Two figures: the weight-gradient norm per weight layer at the first recorded step (a fix for
a vanishing gradient lifts the left end of the curve) and the training loss over the same
seeded steps; the untreated model is drawn bold and black, each remedy in colour.

Example::

    >>> from gradmedic.trace import read_trace                               # doctest: +SKIP
    >>> pairs = treatment_figures(read_trace("before/trace.sqlite"),
    ...                           {"reinit": read_trace("after/trace.sqlite")})  # doctest: +SKIP
    >>> [caption[:22] for _, caption in pairs]                               # doctest: +SKIP
    ['Weight-gradient norm p', 'Training loss over the']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from gradmedic.diagnosis.table import module_infos
from gradmedic.report.figures.data import first_step, module_order
from gradmedic.report.figures.style import COLOURS, CYCLE, log_axis, new_figure, plain, positive
from gradmedic.report.figures.training import loss_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradmedic.trace import Trace

__all__ = ["treatment_figures"]


def _weight_layer_norms(trace: Trace) -> tuple[list[str], np.ndarray] | None:
    step = first_step(trace, "grad_norm")
    if step is None:
        return None
    f = trace.frame
    w = f[(f["step"] == step) & (f["parameter"] == "weight") & (f["quantity"] == "grad_norm")]
    info = module_infos(trace)
    w = w[[("Norm" not in info.get(m, {}).get("type", "")) for m in w["module"]]]
    if w.empty:
        return None
    order = {m: i for i, m in enumerate(module_order(trace))}
    w = w.assign(o=[order.get(m, len(order)) for m in w["module"]]).sort_values("o")
    return list(w["module"]), w["value"].to_numpy(dtype=float)


def _trace_losses(trace: Trace) -> list[float]:
    loss = trace.quantity("loss")
    loss = loss[loss["module"] == ""].sort_values("step")
    return [float(v) for v in loss["value"]]


def treatment_figures(
    before_trace: Trace, after_traces: Mapping[str, Trace]
) -> list[tuple[Figure, str]]:
    """Before/after overlays for ``treat``: a list of ``(figure, caption)`` pairs.

    1. Weight-gradient norm per weight layer (Linear/Conv/RNN, norms excluded) at the first
       recorded step, the untreated model in bold black, each remedy in colour: a fix for a
       vanishing gradient lifts the left end of the curve.
    2. Training loss over recorded steps, same colours.

    Use as ``for fig, caption in treatment_figures(before, after): report.add_figure(fig, caption)``.
    """
    out: list[tuple[Figure, str]] = []
    runs: dict[str, Trace] = {"before (untreated)": before_trace, **dict(after_traces)}
    flows = {name: _weight_layer_norms(tr) for name, tr in runs.items()}
    if any(v is not None for v in flows.values()):
        fig, (ax,) = new_figure(9.5, 4.6)
        for i, (name, fl) in enumerate(flows.items()):
            if fl is None:
                continue
            _, vals = fl
            bold = i == 0
            ax.plot(
                np.arange(1, len(vals) + 1),
                positive(vals),
                "-o",
                ms=3 if not bold else 4,
                lw=2.2 if bold else 1.3,
                color=COLOURS["before"] if bold else CYCLE[(i - 1) % len(CYCLE)],
                label=plain(name),
            )
        log_axis(ax, *[fl[1] for fl in flows.values() if fl is not None], what="gradient norms")
        ax.set_xlabel("weight layer (1 = nearest the input)")
        ax.set_ylabel("‖∂L/∂W‖ at the first step (log)")
        ax.set_title("Weight-gradient norm per layer, before and after each remedy")
        ax.legend(loc="best")
        out.append(
            (
                fig,
                "Weight-gradient norm per layer at initialisation, untreated model (black) against "
                "each remedy: a flatter curve means the gradient reaches the early layers.",
            )
        )
    losses = {name: _trace_losses(tr) for name, tr in runs.items()}
    fig = loss_figure(
        {k: v for k, v in losses.items() if v}, title="Training loss, before and after"
    )
    if fig is not None:
        out.append(
            (fig, "Training loss over the same seeded run for the untreated model and each remedy.")
        )
    return out
