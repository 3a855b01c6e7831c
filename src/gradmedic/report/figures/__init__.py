"""The standard figures of a trace, readable at a glance: one module per figure family.

Every function takes a :class:`~gradmedic.trace.Trace` (so a report can be rebuilt from a saved
trace, without the model) and returns a matplotlib ``Figure``, or ``None`` when the trace lacks
the data the figure needs (e.g. :func:`rnn_time_figure` on an MLP). Log axes mask values that
are zero, negative or not finite.

* ``flow`` - :func:`gradient_flow_figure` (per-layer norms and gains) and
  :func:`signal_heatmap_figure` (layer x step);
* ``gains`` - :func:`gain_product_figure` and its numbers, :func:`gain_product_data`;
* ``activation`` - :func:`activation_figure` (saturated/dead fractions, mean slope);
* ``rnn`` - :func:`rnn_time_figure` (gradient through time);
* ``training`` - :func:`grad_norm_over_steps_figure` (spikes as the diagnosis defines them,
  NaN/Inf events) and :func:`loss_figure`;
* ``before_after`` - :func:`treatment_figures` for ``treat``;
* ``data`` - :func:`layer_snapshot` and :func:`predicted_gains`, the numbers drawn;
* ``style`` - colours, the figure factory (Agg canvas, never pyplot) and axis helpers.

Quantities (see :mod:`gradmedic.monitor`): the backward signal ``‖∂L/∂y_l‖`` at a module's
output (``signal_out``), ``‖∂L/∂x_l‖`` at its input (``signal_in``), the gain
``α_l = signal_in / signal_out``. Over a chain of L modules the gains multiply to the
end-to-end ratio (article 1.1: ``0.9**20 ≈ 0.12``).

Theory overlays (mean-field, Poole et al. 2016; Schoenholz et al. 2017, see
:mod:`gradmedic.theory`): a Linear/Conv layer with ``σ_w² = fan_in·Var(W)`` scales the norm of
the backward signal by ``√σ_w²`` (``‖Wᵀδ‖² ≈ fan_in·Var(W)·‖δ‖²``); an elementwise activation
by ``√E[φ'(h)²]`` with ``h ~ N(0, q)``, q the measured mean square of its pre-activation. Their
product per layer pair is ``√χ₁``.

Example::

    >>> from gradmedic.trace import read_trace                     # doctest: +SKIP
    >>> fig = gradient_flow_figure(read_trace("run/trace.sqlite"))  # doctest: +SKIP
    >>> fig.savefig("flow.png")                                     # doctest: +SKIP
"""

from __future__ import annotations

from gradmedic.report.figures.activation import activation_figure
from gradmedic.report.figures.before_after import treatment_figures
from gradmedic.report.figures.data import SNAPSHOT_COLUMNS, layer_snapshot, predicted_gains
from gradmedic.report.figures.flow import gradient_flow_figure, signal_heatmap_figure
from gradmedic.report.figures.gains import gain_product_data, gain_product_figure
from gradmedic.report.figures.rnn import rnn_time_figure
from gradmedic.report.figures.style import COLOURS
from gradmedic.report.figures.training import (
    grad_norm_over_steps_figure,
    loss_figure,
    spike_markers,
)

__all__ = [
    "COLOURS",
    "SNAPSHOT_COLUMNS",
    "activation_figure",
    "gain_product_data",
    "gain_product_figure",
    "grad_norm_over_steps_figure",
    "gradient_flow_figure",
    "layer_snapshot",
    "loss_figure",
    "predicted_gains",
    "rnn_time_figure",
    "signal_heatmap_figure",
    "spike_markers",
    "treatment_figures",
]
