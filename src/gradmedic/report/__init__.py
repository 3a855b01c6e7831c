"""Reports people can read: one HTML file, the same content as JSON, a terminal view and the
notebook view.

One package serves ``diagnose``, ``treat`` and the lab:

* :class:`Report` (``document.py``) - the report document: findings first, then headings,
  text, embedded figures, tables and verdicts; ``to_html()`` (self-contained, escaped,
  printable), ``to_dict()`` (strict JSON), ``write(path)``, and ``_repr_html_`` for Jupyter.
  Its blocks (``blocks.py``) render through Jinja2 templates shipped as package data
  (``templates/``, loaded by ``templating.py``); numbers are formatted by ``values.py``.
* ``figures/`` - the standard matplotlib figures of a :class:`~gradmedic.trace.Trace`
  (gradient flow, signal heatmap, gain product, activation health, RNN time profile, gradient
  norm over steps, before/after overlays); each returns ``None`` when the trace lacks its data
  and says "no finite values" in a panel whose numbers are all NaN, Inf or zero.
* ``layers.py`` - :func:`layer_table`, the per-layer table of every view (saturated units for
  activations that saturate on both tails, inactive ones for the ReLU family), and
  :func:`~gradmedic.report.layers.activation_summary` (mean and worst layer of each share).
* ``diagnosis.py`` - :func:`write_diagnosis_report`, :func:`diagnosis_report` and
  :func:`diagnosis_json`: a diagnosis plus its trace as a report. A figure that fails
  becomes a note in the report, never an exception.
* ``notebook.py`` - :func:`html_of` / :func:`show`: the HTML of a diagnosis, a finding or a
  report for Jupyter; :func:`findings_html`: finding cards alone.
* ``terminal.py`` - :func:`print_diagnosis`: rich tables coloured by severity.
* ``values.py`` - number formatting, and :func:`~gradmedic.report.values.visible` /
  :func:`~gradmedic.report.values.module_label`: names from the model or a shared trace are
  shown as text (control characters escaped, the root module by the model's class).

Example::

    >>> from gradmedic.report import Report
    >>> rep = Report("My run")
    >>> rep.add_text("Nothing to see yet.")
    >>> "<h1>My run</h1>" in rep.to_html()
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradmedic.report.document import Report
from gradmedic.report.notebook import findings_html, html_of, show
from gradmedic.report.values import format_value

__all__ = [
    "Report",
    "activation_figure",
    "diagnosis_json",
    "diagnosis_report",
    "findings_html",
    "format_value",
    "gain_product_figure",
    "grad_norm_over_steps_figure",
    "gradient_flow_figure",
    "html_of",
    "layer_table",
    "loss_figure",
    "print_diagnosis",
    "rnn_time_figure",
    "show",
    "signal_heatmap_figure",
    "treatment_figures",
    "write_diagnosis_report",
]

_LAZY = {
    "activation_figure": "figures",
    "gain_product_figure": "figures",
    "grad_norm_over_steps_figure": "figures",
    "gradient_flow_figure": "figures",
    "loss_figure": "figures",
    "rnn_time_figure": "figures",
    "signal_heatmap_figure": "figures",
    "treatment_figures": "figures",
    "diagnosis_json": "diagnosis",
    "diagnosis_report": "diagnosis",
    "layer_table": "layers",
    "write_diagnosis_report": "diagnosis",
    "print_diagnosis": "terminal",
}

if TYPE_CHECKING:  # pragma: no cover
    from gradmedic.report.diagnosis import (
        diagnosis_json,
        diagnosis_report,
        write_diagnosis_report,
    )
    from gradmedic.report.figures import (
        activation_figure,
        gain_product_figure,
        grad_norm_over_steps_figure,
        gradient_flow_figure,
        loss_figure,
        rnn_time_figure,
        signal_heatmap_figure,
        treatment_figures,
    )
    from gradmedic.report.layers import layer_table
    from gradmedic.report.terminal import print_diagnosis


def __getattr__(name: str) -> Any:
    # matplotlib and rich are imported only when a figure or the terminal view is asked for
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'gradmedic.report' has no attribute {name!r}")
