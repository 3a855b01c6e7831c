"""Findings: what the diagnosis says, as plain data that people, reports and CI jobs all read.

A :class:`Finding` names one problem with a stable ``slug`` (e.g. ``vanishing-gradient``; the
full list is :data:`gradmedic.diagnosis.SLUGS`, taken from the rule registry), a ``severity``
(``info`` < ``warning`` < ``error``), the layers involved, the ``evidence`` (the measured
numbers, beside theory's prediction where there is one), the ``cause`` in one sentence, and
``prescriptions``: remedies by name with parameters, the names that :mod:`gradmedic.remedies`
implements (``swap-activation(to=leaky_relu)``, ``reinit(scheme=kaiming)``,
``clip-grad-norm(max_norm=1.0)``, ...). A :class:`Diagnosis` holds the findings of one run, the
per-layer table they were drawn from and the rules that could not run on the trace
(``skipped``). Rendering (terminal, HTML, notebook) lives in :mod:`gradmedic.report`.

Example::

    >>> f = Finding("poor-init", "warning", "Init off the critical scale", "sigma_w^2 = 1")
    >>> d = Diagnosis([f], skipped=[("rule_rnn", "no RNN time profile recorded")])
    >>> d.worst, d.slugs(), d.to_dict()["skipped"][0]["rule"]
    ('warning', ['poor-init'], 'rule_rnn')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradmedic.errors import ConfigError

__all__ = [
    "SEVERITIES",
    "Diagnosis",
    "Finding",
    "Prescription",
    "severity_rank",
]

SEVERITIES = ("info", "warning", "error")


def severity_rank(severity: str) -> int:
    """0 for info, 1 for warning, 2 for error.

    Raises :class:`~gradmedic.errors.ConfigError` for any other string.

    >>> severity_rank("warning")
    1
    """
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
    accepts; ``reason`` is one short phrase on why it helps.

    >>> str(Prescription("clip-grad-norm", {"max_norm": 1.0}))
    'clip-grad-norm(max_norm=1.0)'
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
    """One diagnosed problem (see the module docstring for the fields); ``step`` is the
    recorded step the evidence was taken at, None when it spans the run.

    Raises :class:`~gradmedic.errors.ConfigError` for an unknown ``severity``.
    """

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


@dataclass
class Diagnosis:
    """All findings of one run, the per-layer table they were drawn from, and the rules skipped.

    ``layers`` is one dict per hooked module in model order with the keys ``module``,
    ``type``, ``grad_norm``, ``grad_to_weight``, ``signal_out``, ``signal_in``, ``gain``,
    ``dphi_mean``, ``saturated_frac``, ``dead_frac`` (None where not measured), taken at
    the first recorded step (initialisation) unless stated in ``meta``. ``skipped`` lists
    ``(rule name, reason)`` for each rule that did not run because the trace lacks a quantity
    it needs (:func:`gradmedic.diagnosis.registry.run_rules`): no finding from such a rule
    means "not checked", not "healthy".
    """

    findings: list[Finding]
    layers: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

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
        """The findings' slugs in order (worst first)."""
        return [f.slug for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "layers": list(self.layers),
            "meta": dict(self.meta),
            "skipped": [{"rule": name, "reason": why} for name, why in self.skipped],
        }
