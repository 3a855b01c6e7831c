"""A tiny run of every experiment: files, verdict fields, results page, determinism."""

from __future__ import annotations

import csv
import html
import json
import os
import subprocess
import sys

import pytest

from gradmedic.lab import EXPERIMENTS, normalisation, run_lab

_BACKEND_PROBE = """
import sys, tempfile
import matplotlib
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
import gradmedic.lab
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
run = gradmedic.lab.run_lab(["depth-chain"], quick=True, tiny=True, out=tempfile.mkdtemp())
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules, run.results[0].error)
"""


def test_the_lab_leaves_the_users_matplotlib_backend_alone():
    """Importing the lab and running an experiment (figure, PNG, results page) neither selects
    a backend nor imports pyplot: a notebook's backend stays what its user chose."""
    env = {**os.environ, "MPLBACKEND": "svg"}
    proc = subprocess.run(
        [sys.executable, "-c", _BACKEND_PROBE],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["svg False", "svg False", "svg False None"]


# ---------------------------------------------------------------------------------------------
# tiny runs of every experiment


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab")
    messages: list[str] = []
    run = run_lab(["all"], quick=True, tiny=True, out=out, seed=0, progress=messages.append)
    return run, out, messages


def test_tiny_run_writes_every_output(tiny_run):
    run, out, messages = tiny_run
    assert [r.name for r in run.results] == list(EXPERIMENTS)
    for r in run.results:
        assert r.error is None, (r.name, r.error, r.note)
        assert isinstance(r.passed, bool)
        assert r.criterion and r.measured and r.size == "tiny" and r.seconds > 0
        assert r.figure == out / r.name / "figure.png" and r.figure.stat().st_size > 5000
        assert r.table == out / r.name / "table.csv" and r.table.read_text().count("\n") >= 2
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= len(EXPERIMENTS)
    for r in run.results:
        assert f"{r.name}: " in page and html.escape(r.source, quote=False) in page
    data = json.loads((out / "results.json").read_text())
    assert [d["name"] for d in data["results"]] == list(EXPERIMENTS)
    assert {d["verdict"] for d in data["results"]} <= {"pass", "fail"}
    assert data["meta"]["size"] == "tiny"
    assert messages[0].startswith(f"[1/{len(EXPERIMENTS)}] depth-chain:")
    assert any("PASS in" in m or "FAIL in" in m for m in messages)


def test_tiny_run_numbers(tiny_run):
    run, _, _ = tiny_run
    res = {r.name: r for r in run.results}
    # the verdicts that are exact at any size pass already in the tiny run
    assert res["depth-chain"].passed and res["activation-derivatives"].passed
    assert res["loss-pairing"].passed
    assert res["depth-chain"].measured["alpha0.9_L20_measured"] == pytest.approx(0.121577, 1e-5)
    assert res["loss-pairing"].measured["monitor_first_nonfinite_module"] == "2"


def test_tiny_norm_residual_trains_every_net_at_every_lr(tiny_run):
    run, _, _ = tiny_run
    res = next(r for r in run.results if r.name == "normalisation-and-residual")
    rows = list(csv.DictReader(res.table.open()))
    assert [(r["case"], float(r["lr"])) for r in rows] == [
        (c, lr) for c in normalisation.NORM_CASES for lr in normalisation.NORM_LRS
    ]
    for case in normalisation.NORM_CASES:
        mine = [r for r in rows if r["case"] == case]
        best = min(mine, key=lambda r: float(r["final_loss"]))
        assert [r["best_lr"] for r in mine].count("True") == 1 and best["best_lr"] == "True"
        assert res.measured[f"{case}_final_loss"] == pytest.approx(float(best["final_loss"]))
        assert res.measured[f"{case}_best_lr"] == float(best["lr"])
    # the plain default-init net has collapsed every input onto one direction already
    assert res.measured["plain_sample_cosine_init"] > 0.99


def test_tiny_training_experiment_is_deterministic(tiny_run, tmp_path):
    run, _, _ = tiny_run
    again = run_lab(["normalisation-and-residual"], quick=True, tiny=True, out=tmp_path)
    first = next(r for r in run.results if r.name == "normalisation-and-residual")
    assert again.results[0].measured == first.measured
