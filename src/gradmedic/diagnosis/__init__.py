"""Diagnosis: findings about gradient flow, from a trace or from a model and data.

>>> from gradmedic.diagnosis import diagnose, headline        # doctest: +SKIP
>>> d = diagnose("run/trace.sqlite")                          # doctest: +SKIP
>>> print(headline(d))                                        # doctest: +SKIP
error: vanishing-gradient (signal ratio 6.1e-17 over 19 layers); 2 more findings
"""

from __future__ import annotations

from .engine import diagnose, init_findings, model_infos
from .findings import SEVERITIES, SLUGS, Diagnosis, Finding, Prescription, severity_rank
from .predict import init_predictions, module_predicted_gain, module_predicted_slope
from .rules import run_rules
from .static import output_kind, static_checks
from .table import end_to_end, layer_table

__all__ = [
    "SEVERITIES",
    "SLUGS",
    "Diagnosis",
    "Finding",
    "Prescription",
    "diagnose",
    "end_to_end",
    "headline",
    "init_findings",
    "init_predictions",
    "layer_table",
    "model_infos",
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
