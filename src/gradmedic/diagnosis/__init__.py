"""Diagnosis: findings about gradient flow from a trace (``gradmedic.diagnose`` runs it; the
workflow that trains a model to get a trace is :mod:`gradmedic.workflows.checkup`).

The rules (:mod:`gradmedic.diagnosis.rules`, one module each, thresholds in
:mod:`gradmedic.diagnosis.thresholds`) register themselves in
:mod:`gradmedic.diagnosis.registry`, read a :class:`~gradmedic.diagnosis.context.Context` and
return :class:`~gradmedic.diagnosis.finding.Finding` s; :data:`SLUGS` is what they declare.

>>> from gradmedic import diagnose                             # doctest: +SKIP
>>> from gradmedic.diagnosis import headline                  # doctest: +SKIP
>>> d = diagnose("run/trace.sqlite")                          # doctest: +SKIP
>>> print(headline(d))                                        # doctest: +SKIP
error: vanishing-gradient (signal ratio 6.1e-17 over 19 layers); 2 more findings
"""

from __future__ import annotations

from gradmedic.diagnosis import rules
from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import (
    SEVERITIES,
    Diagnosis,
    Finding,
    Prescription,
    severity_rank,
)
from gradmedic.diagnosis.registry import RuleRun, registered, rule, run_rules, slugs
from gradmedic.diagnosis.static import output_kind, static_checks
from gradmedic.diagnosis.table import end_to_end, layer_table
from gradmedic.theory.gains import (
    init_predictions,
    module_predicted_gain,
    module_predicted_slope,
)

__all__ = [
    "SEVERITIES",
    "SLUGS",
    "Context",
    "Diagnosis",
    "Finding",
    "Prescription",
    "RuleRun",
    "end_to_end",
    "headline",
    "init_predictions",
    "layer_table",
    "module_predicted_gain",
    "module_predicted_slope",
    "output_kind",
    "registered",
    "rule",
    "rules",
    "run_rules",
    "severity_rank",
    "slugs",
    "static_checks",
]

#: Every finding slug the diagnosis can emit (stable: CI jobs and users match on them), as the
#: registered rules declare them (:func:`gradmedic.diagnosis.registry.slugs`).
SLUGS = slugs()


def headline(diagnosis: Diagnosis) -> str:
    """One line: the worst finding and how many more, that nothing measurable was recorded
    (never "healthy" then), or that the run looks healthy.

    >>> headline(Diagnosis([]))
    'healthy: no findings'
    >>> headline(Diagnosis([Finding("nothing-measurable", "warning", "nothing measurable: x", "")]))
    'nothing measurable: x'
    """
    if not diagnosis.findings:
        return "healthy: no findings"
    if len(diagnosis.findings) == 1 and diagnosis.unmeasurable is not None:
        return diagnosis.findings[0].title
    worst = diagnosis.findings[0]
    for f in diagnosis.findings:
        if severity_rank(f.severity) > severity_rank(worst.severity):
            worst = f
    rest = len(diagnosis.findings) - 1
    more = f"; {rest} more finding{'s' if rest != 1 else ''}" if rest else ""
    return f"{worst.severity}: {worst.slug} ({worst.title}){more}"
