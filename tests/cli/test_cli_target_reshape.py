"""A binary model whose output is ``(B,)`` on ``digits-binary`` (targets ``(B, 1)``): the
targets are reshaped to fit and the CLI says so (a ``note:`` line, ``meta.notes`` in JSON)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gradmedic.cli import app

runner = CliRunner()

MODEL = """
import torch
from torch import nn

def build():
    return nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
"""

NOTE = (
    "the targets of shape (64, 1) were reshaped to the output's shape (64,) (they differ only "
    "by a trailing dimension of size 1)"
)


def test_diagnose_reshapes_and_says_so(tmp_path):
    f = tmp_path / "binary.py"
    f.write_text(MODEL)
    args = ["diagnose", "--model", f"{f}:build", "--data", "digits-binary", "--steps", "3"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--no-report", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["meta"]["notes"] == [NOTE]
    assert res.stderr.splitlines() == [f"note: {NOTE}"]


def test_treat_lists_the_note(tmp_path):
    f = tmp_path / "binary.py"
    f.write_text(MODEL)
    args = ["treat", "--model", f"{f}:build", "--data", "digits-binary", "--steps", "3"]
    out = tmp_path / "t"
    res = runner.invoke(app, [*args, "--remedy", "lower-lr", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert NOTE in json.loads(res.stdout)["notes"]
    assert (out / "treatment.json").exists() and (out / "report.html").exists()
    res = runner.invoke(app, [*args, "--remedy", "lower-lr", "--out", str(out), "--no-report"])
    assert res.exit_code == 0, res.output
    assert NOTE in " ".join(res.stdout.split())  # among the notes of the table
