"""report.terminal: findings coloured by severity, names printed literally, long tables cut."""

from __future__ import annotations

from rich.console import Console

from gradmedic.diagnosis import Diagnosis
from gradmedic.report import print_diagnosis
from report_util import finding


def test_print_diagnosis_colours_by_severity_and_prints_names_literally(mlp_trace):
    con = Console(record=True, width=140, force_terminal=True, color_system="standard")
    diag = Diagnosis(
        [
            finding("warning", title="A warning", layers=["[red]x[/red]"]),
            finding("error", title="An error"),
        ]
    )
    print_diagnosis(diag, console=con, trace=mlp_trace, max_rows=10)
    text = con.export_text(styles=False, clear=False)
    lines = text.splitlines()
    assert lines[0] == "2 findings, worst: error"
    assert lines[1].strip().startswith("ERROR") and "An error" in lines[1]
    assert any("[red]x[/red]" in ln for ln in lines)  # markup in a name is not interpreted
    assert any("→ swap-activation(to=relu)" in ln for ln in lines)
    assert "… 13 more" in text  # 23 rows cut to 10 around an ellipsis row
    ansi = con.export_text(styles=True)
    err_line = next(ln for ln in ansi.splitlines() if "ERROR" in ln)
    warn_line = next(ln for ln in ansi.splitlines() if "WARNING" in ln)
    assert "31" in err_line.split("ERROR")[0]  # red
    assert "33" in warn_line.split("WARNING")[0]  # yellow


def test_print_diagnosis_without_findings():
    con = Console(record=True, width=100, color_system=None)
    print_diagnosis(Diagnosis([]), console=con)
    assert (
        con.export_text().strip() == "No problems found: gradients flow within the healthy range."
    )
