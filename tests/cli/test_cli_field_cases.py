"""Field cases 06 and 13 (``tests/field/cases/``, copies of shared/field) through the CLI:
a batch of one in BatchNorm is one line and exit 2; a Softmax fed to CrossEntropyLoss is found
whether the loss is named (``--loss ce``), left to the data's default, a module or a factory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradmedic.cli import app

runner = CliRunner()
FIELD = Path(__file__).resolve().parents[1] / "field" / "cases"
F06 = FIELD / "06_softmax_into_crossentropy.py"
F13 = FIELD / "13_batchnorm_last_batch_of_one.py"
NOT_06 = {
    "exploding-gradient",
    "nonfinite-gradient",
    "dead-relu",
    "saturating-activation",
    "gradient-spikes",
    "rnn-exploding",
    "rnn-long-range-vanishing",
}


def _case(path: Path, *extra: str) -> list[str]:
    return ["--model", f"{path}:build_model", "--data", f"{path}:build_data", *extra]


def test_13_batchnorm_last_batch_of_one_is_one_line_exit_2(tmp_path):
    args = ["diagnose", *_case(F13, "--loss", "ce", "--steps", "6", "--json")]
    res = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert res.stdout == ""  # no half-written JSON
    assert res.stderr.strip() == (
        "error: the model failed at step 2 (batch 2) in module '1' (BatchNorm1d): ValueError: "
        "Expected more than 1 value per channel when training, got input size "
        "torch.Size([1, 64]) (module input (1, 64); batch input (1, 20) float32, target (1,) "
        "int64; data 'custom', task classification); BatchNorm cannot normalise a batch of one "
        "sample in training mode: drop the incomplete last batch (DataLoader(..., "
        "drop_last=True)) or use a batch size that divides the data"
    )


@pytest.mark.parametrize("loss", [["--loss", "ce"], []])
def test_06_diagnose_finds_softmax_into_cross_entropy(loss, tmp_path):
    args = ["diagnose", *_case(F06, *loss, "--steps", "30", "--json", "--no-report")]
    res = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    findings = json.loads(res.stdout)["findings"]
    pairing = [f for f in findings if f["slug"] == "unstable-loss-pairing"]
    assert [f["title"] for f in pairing] == [
        "Softmax applied twice (Softmax output into CrossEntropyLoss)"
    ]
    assert [p["spec"] for p in pairing[0]["prescriptions"]] == ["fix-loss(to=ce)"]
    assert not NOT_06 & {f["slug"] for f in findings}


@pytest.mark.slow
def test_06_treat_with_a_named_loss_keeps_the_static_finding_and_fixes_it(tmp_path):
    args = ["treat", *_case(F06, "--loss", "ce", "--steps", "50", "--json")]
    res = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    slugs = [f["slug"] for f in payload["diagnosis"]["findings"]]
    assert "unstable-loss-pairing" in slugs
    names = [r["name"] for r in payload["rows"]]
    assert "fix-loss(to=ce)" in names
    assert payload["best"] == "fix-loss(to=ce)"
    assert "keep the model as it is" not in payload["advice"]
    fixed = next(r for r in payload["rows"] if r["name"] == "fix-loss(to=ce)")
    assert fixed["final_loss"] < 0.5 * payload["rows"][0]["final_loss"]
