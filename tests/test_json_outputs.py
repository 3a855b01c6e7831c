"""Every ``--json`` of the command line prints strict JSON (no NaN/Infinity tokens) with one
encoding for non-finite numbers: the strings "nan", "inf" and "-inf" (gradmedic._json)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradmedic.cli import app

runner = CliRunner()
NON_FINITE = ("nan", "inf", "-inf")


def _strict(text: str):
    def refuse(name: str):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _json_of(*args: str, ok_codes=(0,)):
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code in ok_codes, res.output
    return _strict(res.stdout)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory) -> tuple[dict, Path]:
    """A 3-layer MLP trained at lr 1e6 (the largest rate the CLI accepts): the loss is huge at step 1 and NaN from step 2."""
    out = tmp_path_factory.mktemp("diverged")
    payload = _json_of(
        "diagnose", "--model", "mlp:depth=3", "--data", "digits", "--steps", "6",
        "--lr", "1e6", "--out", str(out), "--no-report",
    )  # fmt: skip
    return payload, out


def test_diagnose_json_writes_nan_as_the_string_nan(diverged):
    payload, out = diverged
    losses = payload["losses"]
    assert losses[2:] == ["nan"] * 4  # was null before the one encoder
    assert losses[0] == pytest.approx(2.3057, abs=1e-3)  # ln(10) at initialisation
    assert losses[1] > 1e14
    assert payload["trace"] == str(out / "trace.sqlite")
    assert "nonfinite-gradient" in [f["slug"] for f in payload["findings"]]


def test_report_json_of_the_saved_trace(diverged, tmp_path):
    _, out = diverged
    payload = _json_of("report", str(out / "trace.sqlite"), "-o", str(tmp_path / "r.html"))
    assert [s["step"] for s in payload["steps"]] == [0, 1, 2, 3, 4, 5]
    assert [s["loss"] for s in payload["steps"]][2:] == ["nan"] * 4
    assert [s["nonfinite"] for s in payload["steps"]] == [0, 0, 1, 1, 1, 1]
    assert payload["worst"] == "error"


def test_theory_json_names_non_finite_values_as_strings():
    d = _json_of("theory", "relu", "--sigma-w2", "3", "--sigma-b2", "0.1", "--depth", "30")
    assert d["q_star"] == "inf"  # the length map diverges
    assert d["xi_c"] == "nan"
    assert d["chi1"] == pytest.approx(1.5)
    assert d["non_finite"] == {k: d[k] for k in d["non_finite"]}
    finite = _json_of("theory", "tanh", "--sigma-w2", "2", "--sigma-b2", "0.05")
    assert finite["phase"] == "chaotic" and finite["non_finite"] == {}


def test_treat_json(tmp_path):
    d = _json_of(
        "treat", "--model", "mlp:depth=3", "--data", "digits", "--steps", "4", "--lr", "1e6",
        "--remedy", "clip-grad-norm(max_norm=1)", "--out", str(tmp_path),
    )  # fmt: skip
    rows = {r["name"]: r for r in d["rows"]}
    assert rows["untreated"]["final_loss"] == "inf"  # diverged: no finite final loss
    clipped = rows["clip-grad-norm(max_norm=1)"]["final_loss"]
    assert isinstance(clipped, float) and math.isfinite(clipped)
    for name in ("transform.json", "treatment.json"):
        _strict((tmp_path / name).read_text())


def test_lab_list_json():
    d = _json_of("lab", "list")
    assert len(d) == 11 and d[0]["name"] == "depth-chain"
    assert set(d[0]) == {"name", "title", "claim", "source"}


def test_lab_run_json(tmp_path, monkeypatch):
    import gradmedic.lab

    # the command's own code path at the test-only "tiny" size (seconds, not minutes)
    monkeypatch.setattr(
        gradmedic.lab, "run_lab", functools.partial(gradmedic.lab.run_lab, tiny=True)
    )
    d = _json_of("lab", "run", "depth-chain", "--out", str(tmp_path), ok_codes=(0, 1))
    assert [r["name"] for r in d["results"]] == ["depth-chain"]
    assert d["results"][0]["size"] == "tiny"
    assert d["page"] == str(tmp_path / "index.html")
    _strict((tmp_path / "results.json").read_text())


def test_every_json_command_is_covered():
    """A new ``--json`` option needs a test here: the commands above are all there are."""
    import typer.main

    cli = typer.main.get_command(app)
    found = set()

    def walk(cmd, prefix=()):
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*prefix, name))
        if any("--json" in p.opts for p in getattr(cmd, "params", [])):
            found.add(" ".join(prefix))

    walk(cli)
    assert found == {"diagnose", "report", "theory", "treat", "lab list", "lab run"}
