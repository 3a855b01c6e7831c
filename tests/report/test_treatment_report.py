"""The treatment's verdict, before/after table and HTML report (gradmedic.report.treatment)."""

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
        executor="serial",
    )


def test_report_is_written_next_to_the_json_and_recorded_there(treated):
    path = write_treatment_report(treated)
    assert path == treated.out / "report.html" == treated.report_path
    html = path.read_text()
    assert html.count("<img") >= 2  # weight-gradient flow and loss, before and after
    assert f"Chosen: {treated.best}." in html
    assert treated.verdict.split(":")[0] in html
    assert (
        "Each candidate at its own best learning rate of the shared grid (0.01, 0.03, 0.1" in html
    )
    data = json.loads((treated.out / "treatment.json").read_text())
    assert data["report_path"] == str(path)


def test_report_without_an_output_folder_needs_a_path(treated, tmp_path):
    bare = dataclasses.replace(treated, out=None, report_path=None)
    with pytest.raises(ConfigError, match="write_treatment_report needs a path"):
        write_treatment_report(bare)
    assert write_treatment_report(bare, tmp_path / "r.html").exists()


def test_the_verdict_line_comes_first_then_the_table_with_each_rate(treated):
    con = Console(record=True, width=220)
    print_treatment(treated, console=con)
    lines = con.export_text().splitlines()
    assert lines[0] == treated.verdict
    assert lines[0].startswith("cured: add-norm(kind=batch) at lr 0.3: loss 2.332 -> 2.09 (0.194 ")
    best = next(line for line in lines if line.startswith("│ * "))
    cells = [c.strip() for c in best.strip("│").split("│")]
    assert cells[:5] == ["* add-norm(kind=batch)", "0.3", "learning", "0.341", "0.467"]
    assert cells[5:8] == ["0", "2.09", "0.194"]  # non-finite steps, final loss, below the band
    tried = [line for line in lines if line.startswith("rates tried, ")]
    assert len(tried) == len(treated.rows) == 3
    assert any("clip-grad-norm(max_norm=1.0)" in line for line in tried)
    assert "untreated noise band 2.284-2.344 (3 seeds at lr 1)" in lines


def test_the_python_lines_to_paste_are_never_wrapped_in_a_narrow_terminal(treated):
    con = Console(record=True, width=40)
    print_treatment(treated, console=con)
    text = con.export_text()
    for line in treated.advice.splitlines():
        assert line in text.splitlines()  # whole, however long
