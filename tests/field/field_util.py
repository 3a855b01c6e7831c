"""Running the field cases (``tests/field/cases/``, copies of ``shared/field``) the way a new
user does: ``gradmedic diagnose`` (and ``treat``) with ``--json`` through typer's CliRunner,
once per process and argument list, and reading the answer back.

Each case file's docstring gives the public source, the situation, the findings that must and
must not appear and the command; the tests in ``test_field_cases.py`` pin exactly those.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gradmedic.cli import app

__all__ = ["CASES", "Run", "case", "cli", "clip_norms", "slugs"]

CASES = Path(__file__).parent / "cases"
_RUNS: dict[tuple[str, ...], Run] = {}
_OUT = Path(tempfile.mkdtemp(prefix="gradmedic-field-"))


@dataclass
class Run:
    """One CLI invocation: exit status, the JSON payload (None when stdout held none), the
    output and stderr."""

    exit_code: int
    payload: dict[str, Any] | None
    stdout: str
    stderr: str
    findings: list[dict[str, Any]] = field(default_factory=list)

    def finding(self, slug: str) -> dict[str, Any]:
        """The first finding with ``slug``; fails listing what was found."""
        hits = [f for f in self.findings if f["slug"] == slug]
        assert hits, f"{slug} not in {[(f['slug'], f['severity']) for f in self.findings]}"
        return hits[0]

    def specs(self) -> list[str]:
        """Every prescription's spec form over all findings."""
        return [p["spec"] for f in self.findings for p in f["prescriptions"]]


def case(number: str) -> Path:
    """The case file whose name starts with ``number`` (``"01"``)."""
    (path,) = sorted(CASES.glob(f"{number}_*.py"))
    return path


def cli(command: str, number: str, *args: str, model: str = "build_model") -> Run:
    """``gradmedic COMMAND --model CASE:model --data CASE:build_data ARGS --json``, cached."""
    path = case(number)
    key = (command, number, model, *args)
    if key not in _RUNS:
        out = _OUT / "-".join(k.replace("/", "_").lstrip("-") for k in key)
        argv = [command, "--model", f"{path}:{model}", "--data", f"{path}:build_data"]
        argv += [*args, "--out", str(out), "--json"]
        res = CliRunner().invoke(app, argv)
        try:
            payload = json.loads(res.stdout)
        except ValueError:
            payload = None
        stderr = res.stderr
        found = (payload or {}).get("findings") or (payload or {}).get("diagnosis", {}).get(
            "findings", []
        )
        _RUNS[key] = Run(res.exit_code, payload, res.stdout, stderr, found)
    return _RUNS[key]


def slugs(run: Run) -> set[str]:
    """The slugs found, as a set."""
    return {f["slug"] for f in run.findings}


def clip_norms(run: Run) -> list[float]:
    """Every ``max_norm`` a clip-grad-norm prescription of the run carries."""
    return [
        float(p["params"]["max_norm"])
        for f in run.findings
        for p in f["prescriptions"]
        if p["remedy"] == "clip-grad-norm"
    ]
