"""Diagnosis: findings about gradient flow from a trace (``gradmedic.diagnose`` runs it; the
workflow that trains a model to get a trace is :mod:`gradmedic.workflows.checkup`).

>>> from gradmedic import diagnose                             # doctest: +SKIP
>>> from gradmedic.diagnosis import headline                  # doctest: +SKIP
>>> d = diagnose("run/trace.sqlite")                          # doctest: +SKIP
>>> print(headline(d))                                        # doctest: +SKIP
error: vanishing-gradient (signal ratio 6.1e-17 over 19 layers); 2 more findings
"""

from __future__ import annotations

from gradmedic.diagnosis.findings import (
    SEVERITIES,
    SLUGS,
    Diagnosis,
    Finding,
    Prescription,
    severity_rank,
)
from gradmedic.diagnosis.predict import (
    init_predictions,
    module_predicted_gain,
    module_predicted_slope,
)
from gradmedic.diagnosis.rules import run_rules
from gradmedic.diagnosis.static import output_kind, static_checks
from gradmedic.diagnosis.table import end_to_end, layer_table

__all__ = [
    "SEVERITIES",
    "SLUGS",
    "Diagnosis",
    "Finding",
    "Prescription",
    "end_to_end",
    "headline",
    "init_predictions",
    "layer_table",
    "module_predicted_gain",
    "module_predicted_slope",
    "output_kind",
    "run_rules",
    "severity_rank",
    "static_checks",
]


def headline(diagnosis: Diagnosis) -> str:
    """One line: the worst finding and how many more, or that the run looks healthy.

    >>> headline(Diagnosis([]))
    'healthy: no findings'
    """
    if not diagnosis.findings:
        return "healthy: no findings"
    worst = diagnosis.findings[0]
    for f in diagnosis.findings:
        if severity_rank(f.severity) > severity_rank(worst.severity):
            worst = f
    rest = len(diagnosis.findings) - 1
    more = f"; {rest} more finding{'s' if rest != 1 else ''}" if rest else ""
    return f"{worst.severity}: {worst.slug} ({worst.title}){more}"
