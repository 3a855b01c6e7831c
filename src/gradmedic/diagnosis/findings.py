"""Findings: what the diagnosis says, in a form people, reports and CI jobs can all read.

A :class:`Finding` names one problem with a stable ``slug`` (e.g. ``vanishing-gradient``), a
``severity`` (``info`` < ``warning`` < ``error``), the layers involved, the ``evidence`` (the
measured numbers, beside theory's prediction where there is one), the ``cause`` in one
sentence, and ``prescriptions``: remedies by name with parameters, the names that
:mod:`gradmedic.remedies` implements (``swap-activation(to=leaky_relu)``, ``reinit(scheme=kaiming)``,
``clip-grad-norm(max_norm=1.0)``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradmedic.errors import ConfigError

__all__ = [
    "SEVERITIES",
    "SLUGS",
    "Diagnosis",
    "Finding",
    "Prescription",
    "severity_rank",
]

SEVERITIES = ("info", "warning", "error")

#: Finding slugs the diagnosis can emit (stable: CI jobs and users match on them).
SLUGS = (
    "vanishing-gradient",
    "exploding-gradient",
    "saturating-activation",
    "dead-relu",
    "poor-init",
    "unstable-loss-pairing",
    "nonfinite-gradient",
    "rnn-long-range-vanishing",
    "rnn-exploding",
    "gradient-spikes",
    "stalled-learning",
)


def severity_rank(severity: str) -> int:
    """0 for info, 1 for warning, 2 for error."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ConfigError(
            f"unknown severity '{severity}'; use one of: {', '.join(SEVERITIES)}"
        ) from None


@dataclass(frozen=True)
class Prescription:
    """A remedy by name with its parameters, e.g. ``Prescription("reinit", {"scheme": "kaiming"})``.

    ``str(p)`` gives the spec form ``reinit(scheme=kaiming)`` that ``gradmedic treat --remedy``
    accepts.
    """

    remedy: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def __str__(self) -> str:
        if not self.params:
            return self.remedy
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.remedy}({args})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "remedy": self.remedy,
            "params": dict(self.params),
            "spec": str(self),
            "reason": self.reason,
        }


@dataclass
class Finding:
    """One diagnosed problem (see the module docstring for the fields)."""

    slug: str
    severity: str
    title: str
    cause: str
    layers: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    prescriptions: list[Prescription] = field(default_factory=list)
    step: int | None = None

    def __post_init__(self) -> None:
        severity_rank(self.severity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "severity": self.severity,
            "title": self.title,
            "cause": self.cause,
            "layers": list(self.layers),
            "evidence": dict(self.evidence),
            "prescriptions": [p.to_dict() for p in self.prescriptions],
            "step": self.step,
        }

    def _repr_html_(self) -> str:
        """Jupyter view: the report's HTML card(s), styles scoped (owned by gradmedic.report)."""
        from gradmedic.report.builder import findings_html

        return findings_html(self)


@dataclass
class Diagnosis:
    """All findings of one run plus the per-layer table they were drawn from.

    ``layers`` is one dict per hooked module in model order with the keys ``module``,
    ``type``, ``grad_norm``, ``grad_to_weight``, ``signal_out``, ``signal_in``, ``gain``,
    ``dphi_mean``, ``saturated_frac``, ``dead_frac`` (None where not measured), taken at
    the first recorded step (initialisation) unless stated in ``meta``.
    """

    findings: list[Finding]
    layers: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def worst(self) -> str | None:
        """The highest severity among the findings, or None when there are none."""
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=severity_rank)

    def at_least(self, severity: str) -> list[Finding]:
        """Findings of ``severity`` or worse."""
        r = severity_rank(severity)
        return [f for f in self.findings if severity_rank(f.severity) >= r]

    def slugs(self) -> list[str]:
        return [f.slug for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "layers": list(self.layers),
            "meta": dict(self.meta),
        }

    def _repr_html_(self) -> str:
        """Jupyter view: the report's HTML card(s), styles scoped (owned by gradmedic.report)."""
        from gradmedic.report.builder import findings_html

        return findings_html(self)
