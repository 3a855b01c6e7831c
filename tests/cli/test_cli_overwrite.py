"""An ``--out`` folder that holds the trace of an earlier run is refused unless ``--overwrite``:
the trace writer appends by default, and a diagnosis is of one run."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from gradmedic.cli import app
from gradmedic.trace import read_trace

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _diagnose(out: Path, *extra: str):
    args = ["diagnose", "--model", "mlp:depth=3,width=8", "--steps", "3", "--no-report"]
    return runner.invoke(app, [*args, "--out", str(out), *extra])


def test_a_second_run_into_the_same_out_is_refused_and_the_trace_kept(tmp_path):
    out = tmp_path / "run"
    assert _diagnose(out).exit_code == 0
    before = read_trace(out / "trace.sqlite")
    res = _diagnose(out, "--seed", "1")
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        f"error: {out} already holds a trace of an earlier run ({out / 'trace.sqlite'}); pass "
        "--overwrite to replace it, or choose another --out"
    )
    after = read_trace(out / "trace.sqlite")
    assert after.steps == before.steps == [0, 1, 2]
    assert len(after.frame) == len(before.frame)
    assert after.meta["seed"] == 0


def test_overwrite_replaces_the_earlier_trace(tmp_path):
    out = tmp_path / "run"
    assert _diagnose(out).exit_code == 0
    res = _diagnose(out, "--seed", "1", "--overwrite", "--steps", "2")
    assert res.exit_code == 0, res.output
    tr = read_trace(out / "trace.sqlite")
    assert tr.steps == [0, 1]  # not appended after the first run's steps 0..2
    assert tr.meta["seed"] == 1
    assert len(tr.meta["runs"]) == 1


def test_demo_refuses_an_out_with_a_trace_before_any_work(tmp_path):
    (tmp_path / "trace.sqlite").write_bytes(b"")
    res = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path} already holds a trace of an earlier run "
        f"({tmp_path / 'trace.sqlite'}); pass --overwrite to replace it, or choose another --out"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.sqlite"]


def test_make_demo_passes_overwrite_so_it_can_be_rerun():
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe is not None
    assert "gradmedic demo --out $(OUT) --overwrite" in recipe.group(1)
