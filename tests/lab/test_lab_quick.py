"""The lab's --quick run, end to end: every claim of the article, verdict by verdict.

About two minutes on 2 CPU cores; it fits the CI budget beside the rest of the suite, so it
runs by default (deselect with ``-m 'not slow'``). The runs are seeded and single-threaded, so
the verdicts are deterministic on CPU.
"""

from __future__ import annotations

import json

import pytest

from gradmedic.lab import EXPERIMENTS, run_lab


@pytest.mark.slow
def test_quick_lab_reproduces_every_claim(tmp_path):
    run = run_lab(["all"], quick=True, out=tmp_path, seed=0)
    verdicts = {r.name: r.passed for r in run.results}
    assert list(verdicts) == list(EXPERIMENTS)
    failed = {r.name: (r.criterion, r.measured, r.error) for r in run.results if not r.passed}
    assert failed == {}
    for r in run.results:
        assert (tmp_path / r.name / "figure.png").stat().st_size > 1000
        assert r.table is not None and r.table.exists()
    page = (tmp_path / "index.html").read_text()
    assert page.count("<img") >= len(EXPERIMENTS)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["results"]) == len(EXPERIMENTS)
