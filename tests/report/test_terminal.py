"""report.terminal: findings coloured by severity, names printed literally (markup as text,
control characters as visible escapes, the root by its class), long tables cut, inactive and
dead units summarised with the worst layer."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from gradmedic.diagnosis import Diagnosis
from gradmedic.report import print_diagnosis
from report_util import finding, layer_trace


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


EVIL_NAME = "\x1b]0;pwned\x07\x1b[2J"  # sets the window title, then clears the screen
EVIL_SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J"


def _evil_run():
    rows = [
        (0, EVIL_NAME, "", "signal_out", None, 1.0),
        (0, EVIL_NAME, "", "saturated_frac", None, 0.5),
        (0, EVIL_NAME, "", "dead_frac", None, 1.0),
        (0, "fc", "", "signal_out", None, 1.0),
    ]
    trace = layer_trace(rows, {EVIL_NAME: "ReLU", "fc": "Linear"}, model_class="TinyNet")
    diag = Diagnosis([finding(layers=[EVIL_NAME, ""], cause=f"module '{EVIL_NAME}' is dead")])
    return diag, trace


@pytest.mark.parametrize("colour", [False, True])
def test_control_characters_in_module_names_print_visibly(colour):
    diag, trace = _evil_run()
    buf = io.StringIO()
    con = Console(
        file=buf, width=200, force_terminal=colour, color_system="standard" if colour else None
    )
    print_diagnosis(diag, console=con, trace=trace)
    out = buf.getvalue()
    assert "\x07" not in out and "\x1b]" not in out and "\x1b[2J" not in out
    if not colour:
        assert "\x1b" not in out  # no styles: not one escape character at all
        lines = [ln.rstrip() for ln in out.splitlines()]
        assert f"   layers: {EVIL_SHOWN}, TinyNet at step 0" in lines
        assert f"   cause: module '{EVIL_SHOWN}' is dead" in lines
        assert any(ln.split("│")[1].strip() == EVIL_SHOWN for ln in lines if "ReLU" in ln)


def test_relu_layers_show_inactive_units_and_the_worst_layer_beside_the_mean():
    diag, trace = _evil_run()
    con = Console(record=True, width=200, color_system=None)
    print_diagnosis(diag, console=con, trace=trace)
    lines = [ln.rstrip() for ln in con.export_text().splitlines()]
    header = next(ln for ln in lines if "module" in ln and "gain" in ln)
    cells = [c.strip() for c in header.split("┃")[1:-1]]
    assert cells == [
        "module",
        "type",
        "grad norm",
        "signal out",
        "gain",
        "saturated",
        "inactive",
        "dead",
        "pred. gain",
    ]
    row = next(ln for ln in lines if "ReLU" in ln)
    assert [c.strip() for c in row.split("│")[6:9]] == ["—", "0.5", "1"]
    assert lines[-2:] == [
        "inactive units: mean 50% over 1 layer, worst 50% in " + EVIL_SHOWN,
        "dead units: mean 100% over 1 layer, worst 100% in " + EVIL_SHOWN,
    ]
