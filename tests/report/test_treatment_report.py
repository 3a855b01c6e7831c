"""The treatment's before/after table and HTML report (gradmedic.report.treatment)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from rich.console import Console

from gradmedic.errors import ConfigError
from gradmedic.report.treatment import print_treatment, write_treatment_report
from gradmedic.workflows.train import TrainConfig
from gradmedic.workflows.treatment import treat


@pytest.fixture(scope="module")
def treated(tmp_path_factory):
    out = tmp_path_factory.mktemp("treat")
    return treat(
        "mlp:depth=8,width=16,act=sigmoid",
        "digits",
        config=TrainConfig(steps=10, lr=0.1, every=5),
        remedies=["add-norm(kind=batch)", "clip-grad-norm(max_norm=1.0)"],
        out=out,
    )


def test_report_is_written_next_to_the_json_and_recorded_there(treated):
    path = write_treatment_report(treated)
    assert path == treated.out / "report.html" == treated.report_path
    html = path.read_text()
    assert html.count("<img") >= 2  # weight-gradient flow and loss, before and after
    assert "Chosen: add-norm(kind=batch)." in html
    assert "What the chosen remedy changed" in html
    data = json.loads((treated.out / "treatment.json").read_text())
    assert data["report_path"] == str(path)


def test_report_without_an_output_folder_needs_a_path(treated, tmp_path):
    bare = dataclasses.replace(treated, out=None, report_path=None)
    with pytest.raises(ConfigError, match="write_treatment_report needs a path"):
        write_treatment_report(bare)
    assert write_treatment_report(bare, tmp_path / "r.html").exists()


def test_table_marks_the_best_and_prints_the_margins(treated):
    con = Console(record=True, width=200)
    print_treatment(treated, console=con)
    text = con.export_text()
    lines = text.splitlines()
    best = next(line for line in lines if "* add-norm(kind=batch)" in line)
    assert f"{treated.best_row['health']:.3g}" in best
    assert any("clip-grad-norm(max_norm=1.0)" in line and "* " not in line for line in lines)
    m = treated.margins
    assert (
        f"best: add-norm(kind=batch)  gradient health {m['health_untreated']:.3g} -> "
        f"{m['health_best']:.3g} decades from 1"
    ) in text
