"""Findings: what the diagnosis says, as plain data that people, reports and CI jobs all read.

A :class:`Finding` names one problem with a stable ``slug`` (e.g. ``vanishing-gradient``; the
full list is :data:`gradmedic.diagnosis.SLUGS`, taken from the rule registry), a ``severity``
(``info`` < ``warning`` < ``error``), the layers involved, the ``evidence`` (the measured
numbers, beside theory's prediction where there is one), the ``cause`` in one sentence, and
``prescriptions``: remedies by name with parameters, the names that :mod:`gradmedic.remedies`
implements (``swap-activation(to=leaky_relu)``, ``reinit(scheme=kaiming)``,
``clip-grad-norm(max_norm=1.0)``, ...), each with the effect predicted for it, or ``manual``
changes to the user's code or data that gradmedic cannot make (an epsilon in the loss). A
:class:`Diagnosis` holds the findings of one run, the per-layer table they were drawn from, the
rules that could not run on the trace (``skipped``) and its ``outcome``: ``findings``,
``healthy`` (no finding, and something was measured) or ``nothing-measurable`` (too little
recorded to judge; ``gradmedic diagnose`` exits 3). Rendering (terminal, HTML, notebook) lives
in :mod:`gradmedic.report`.

Example::

    >>> f = Finding("poor-init", "warning", "Init off the critical scale", "sigma_w^2 = 1")
    >>> d = Diagnosis([f], skipped=[("rule_rnn", "no RNN time profile recorded")])
    >>> d.worst, d.slugs(), d.to_dict()["skipped"][0]["rule"], d.outcome
    ('warning', ['poor-init'], 'rule_rnn', 'findings')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradmedic.errors import ConfigError

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_UNMEASURABLE",
    "NOTHING_MEASURABLE",
    "SEVERITIES",
    "Diagnosis",
    "Finding",
    "Prescription",
    "severity_rank",
]

SEVERITIES = ("info", "warning", "error")
#: The slug of the outcome "nothing measurable": the run yielded too little to judge gradient
#: flow (:mod:`gradmedic.diagnosis.rules.measurable`); never read as healthy.
NOTHING_MEASURABLE = "nothing-measurable"
#: Exit status of ``gradmedic diagnose`` when findings at ``--fail-on`` or worse exist.
EXIT_FINDINGS = 1
#: Exit status of ``gradmedic diagnose`` when nothing measurable was recorded (and no finding
#: at ``--fail-on`` or worse): too little evidence to call the run healthy or sick.
EXIT_UNMEASURABLE = 3


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
    accepts; ``plus`` are remedies applied with it as one combination (``str`` joins them with
    ``+``: ``swap-activation(to=leaky_relu)+reinit(scheme=kaiming)``); ``reason`` is one short
    phrase on why it helps; ``predicted`` the effect our theory or measurements predict
    (``log10_ratio``, ``ratio``, ``basis``, ...; :mod:`gradmedic.diagnosis.prescribe`).
    ``manual`` marks a change to the user's code or data that gradmedic cannot apply for them
    (an epsilon in the loss, standardised data): printed, never tried by ``treat``.

    >>> str(Prescription("clip-grad-norm", {"max_norm": 1.0}))
    'clip-grad-norm(max_norm=1.0)'
    >>> str(Prescription("swap-activation", {"to": "relu"}, plus=(Prescription("reinit"),)))
    'swap-activation(to=relu)+reinit'
    """

    remedy: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    plus: tuple[Prescription, ...] = ()
    predicted: dict[str, Any] = field(default_factory=dict)
    manual: bool = False

    def __str__(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        head = f"{self.remedy}({args})" if self.params else self.remedy
        return "+".join([head, *(str(p) for p in self.plus)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "remedy": self.remedy,
            "params": dict(self.params),
            "spec": str(self),
            "reason": self.reason,
            "predicted": dict(self.predicted),
            "manual": self.manual,
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

    @property
    def unmeasurable(self) -> str | None:
        """Why nothing measurable was recorded (the ``nothing-measurable`` finding's cause), or
        None when the run gave something to judge."""
        return next((f.cause for f in self.findings if f.slug == NOTHING_MEASURABLE), None)

    @property
    def outcome(self) -> str:
        """``nothing-measurable``, ``findings`` (some finding) or ``healthy`` (none)."""
        if self.unmeasurable is not None:
            return NOTHING_MEASURABLE
        return "findings" if self.findings else "healthy"

    def exit_status(self, fail_on: str | None = None) -> int:
        """The CLI's exit status: :data:`EXIT_FINDINGS` when a finding of ``fail_on`` or worse
        exists (the nothing-measurable outcome is not such a finding), else
        :data:`EXIT_UNMEASURABLE` when nothing measurable was recorded, else 0.

        >>> Diagnosis([Finding(NOTHING_MEASURABLE, "warning", "t", "c")]).exit_status("warning")
        3
        """
        hits = self.at_least(fail_on) if fail_on is not None else []
        if any(f.slug != NOTHING_MEASURABLE for f in hits):
            return EXIT_FINDINGS
        return EXIT_UNMEASURABLE if self.unmeasurable is not None else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "findings": [f.to_dict() for f in self.findings],
            "layers": list(self.layers),
            "meta": dict(self.meta),
            "skipped": [{"rule": name, "reason": why} for name, why in self.skipped],
        }
