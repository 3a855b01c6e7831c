"""What ``treat`` returns and saves: :class:`TreatmentResult`.

Output folder (``treat(..., out=folder)``), written by :meth:`TreatmentResult.save`:

- ``treatment.json``: :meth:`TreatmentResult.to_dict` (strict JSON, see :mod:`gradmedic._json`);
- ``best_model.pt``: the best candidate's ``state_dict`` after its verification run;
- ``transform.json``: exactly what was verified: the chosen remedy specs, re-appliable to
  your own model code with ``gradmedic.remedies.apply(model, spec)``, what the training loop
  needs (fused loss, clipper) and the learning rate it was verified at (``lr``, and ``lr_factor``
  relative to yours), with the Python lines (``apply``).

The HTML report is rendering, not workflow: ``gradmedic.report.treatment.
write_treatment_report(result)`` adds ``report.html`` to the same folder.

Example::

    >>> res = treat("mlp:depth=20,act=sigmoid", "digits", out="treat-out")   # doctest: +SKIP
    >>> res.verdict_kind, res.best_specs, res.best_row["lr"]                    # doctest: +SKIP
    ('cured', ['swap-activation(to=relu)', 'reinit(scheme=kaiming)'], 0.1)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradmedic._json import dumps, to_jsonable
from gradmedic.errors import ConfigError
from gradmedic.workflows.train import TrainResult
from gradmedic.workflows.treatment.choice import BEST_RULE
from gradmedic.workflows.treatment.verdict import NoiseBand

__all__ = ["TreatmentResult"]


@dataclass
class TreatmentResult:
    """What :func:`~gradmedic.workflows.treatment.treat` found.

    Attributes:
        rows: one dict per candidate at its own best rate (``untreated`` first): ``name``,
            ``specs``, ``lr`` and ``lr_factor`` (to the user's rate), ``rates`` (every rate
            tried: ``lr``, ``status``, ``final_loss``, ``stopped``), ``status`` (learning,
            stalled, diverged, failed, not run), ``stopped`` (why the run ended early),
            ``verdict`` (cured, improved, no better, not learning), ``below_band``,
            ``first_last_signal_ratio``, ``signal_ratio_median``, ``health``,
            ``saturated_frac``, ``dead_frac``, ``nonfinite``, ``first_loss``, ``final_loss``,
            ``time_per_step``, ``changes``, ``error`` (why a candidate could not run, else
            None); see :mod:`~gradmedic.workflows.treatment.metrics`.
        best: the name of the chosen candidate (``"untreated"`` when nothing helped).
        verdict: the verdict line (:func:`~gradmedic.workflows.treatment.verdict.verdict_line`);
            ``verdict_kind``: ``cured``, ``improved`` or ``no cure``.
        band: the untreated noise band (None when the untreated model learns at no rate).
        yours: the row of the untreated model at the user's own rate.
        diagnosis: the :class:`~gradmedic.diagnosis.Diagnosis` of the untreated run (None
            when the diagnosis failed).
        margins: :func:`~gradmedic.workflows.treatment.choice.margins` of best vs untreated.
        advice: Python lines that apply the chosen treatment to your own model.
        out: the output folder, when one was given.
        report_path: the HTML report, once ``gradmedic.report.treatment`` wrote one.
        models, results, reports: per candidate, the trained model, its
            :class:`~gradmedic.workflows.train.TrainResult` and its remedy report.
    """

    rows: list[dict[str, Any]]
    best: str
    verdict: str = ""
    verdict_kind: str = "no cure"
    band: NoiseBand | None = None
    yours: dict[str, Any] = field(default_factory=dict)
    diagnosis: Any = None
    margins: dict[str, float] = field(default_factory=dict)
    advice: str = ""
    rule: str = BEST_RULE
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    out: Path | None = None
    report_path: Path | None = None
    models: dict[str, nn.Module] = field(default_factory=dict, repr=False)
    results: dict[str, TrainResult] = field(default_factory=dict, repr=False)
    reports: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def best_row(self) -> dict[str, Any]:
        """The chosen candidate's row."""
        return self.row(self.best)

    @property
    def untreated(self) -> dict[str, Any]:
        """The untreated model's row (always the first)."""
        return self.rows[0]

    def row(self, name: str) -> dict[str, Any]:
        """The row of candidate ``name``; ConfigError listing the candidates if none."""
        for r in self.rows:
            if r["name"] == name:
                return r
        raise ConfigError(
            f"no candidate '{name}'; candidates: {', '.join(r['name'] for r in self.rows)}"
        )

    @property
    def best_specs(self) -> list[str]:
        """The chosen candidate's remedy specs (empty for the untreated model)."""
        return list(self.best_row["specs"])

    def to_dict(self) -> dict[str, Any]:
        """Everything but the models and traces, as plain JSON data."""
        diag = self.diagnosis.to_dict() if hasattr(self.diagnosis, "to_dict") else None
        return to_jsonable(
            {
                "verdict": self.verdict,
                "verdict_kind": self.verdict_kind,
                "best": self.best,
                "best_specs": self.best_specs,
                "rule": self.rule,
                "margins": self.margins,
                "band": self.band.to_dict() if self.band is not None else None,
                "rows": self.rows,
                "yours": self.yours,
                "advice": self.advice,
                "config": self.config,
                "notes": self.notes,
                "diagnosis": diag,
                "report_path": str(self.report_path) if self.report_path else None,
            }
        )

    def write_json(self) -> Path | None:
        """(Re)write ``treatment.json`` in :attr:`out`; None when there is no output folder."""
        if self.out is None:
            return None
        path = self.out / "treatment.json"
        path.write_text(dumps(self.to_dict(), indent=2))
        return path

    def save(self, out: Path) -> None:
        """Write ``best_model.pt``, ``transform.json`` and ``treatment.json`` into ``out``
        (created if needed) and remember it as :attr:`out`."""
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        if self.best in self.models:
            torch.save(self.models[self.best].state_dict(), out / "best_model.pt")
        rep = self.reports.get(self.best)
        transform = {
            "remedies": self.best_specs,
            "spec": "+".join(self.best_specs),
            "loss": getattr(rep, "loss", None),
            "grad_transform": getattr(getattr(rep, "grad_transform", None), "spec", None),
            "lr": self.best_row.get("lr"),
            "lr_factor": self.best_row.get("lr_factor", 1.0),
            "optimizer": self.config.get("optimizer"),
            "verdict": self.verdict,
            "changes": list(getattr(rep, "changes", [])),
            "apply": self.advice,
        }
        (out / "transform.json").write_text(dumps(transform, indent=2))
        self.write_json()
