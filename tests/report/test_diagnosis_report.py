"""report.diagnosis: a diagnosis plus its trace as a report (HTML order, figures, tables) and as
strict JSON; ``gradmedic report`` rebuilds it from a saved trace."""

from __future__ import annotations

import json
import math

import pytest

from gradmedic.diagnosis import Diagnosis
from gradmedic.report import diagnosis_json, layer_table, write_diagnosis_report
from gradmedic.report.diagnosis import LAYER_COLUMNS, diagnosis_report, step_table
from report_util import finding, synthetic_trace


def _strict(text: str):
    def refuse(name: str):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_diagnosis_report_order_and_figures(mlp_trace, tmp_path):
    diag = Diagnosis([finding()])
    path = write_diagnosis_report(tmp_path / "report.html", diag, mlp_trace, title="T")
    html = path.read_text(encoding="utf-8")
    i_find = html.index('id="findings"')
    i_table = html.index('id="per-layer-numbers"')
    i_fig = html.index("<img")
    i_raw = html.index('id="raw-numbers"')
    assert i_find < i_table < i_fig < i_raw
    # flow, gain product, activations, heatmap, gradient norm over steps (no RNN here)
    assert html.count("<img") == 5
    assert "model mlp:depth=12,act=sigmoid; data digits; 4 recorded steps (0–3)" in html
    assert "at least 10× the run&#39;s median" in html  # the spike caption names the rule
    blocks = diagnosis_report(diag, mlp_trace).to_dict()["blocks"]
    layer_rows = next(b for b in blocks if b["kind"] == "table")["rows"]
    assert len(layer_rows) == 23
    assert layer_rows[0]["module"] == "0" and layer_rows[0]["type"] == "Linear"


def test_the_report_as_json_file(mlp_trace, tmp_path):
    path = write_diagnosis_report(tmp_path / "report.json", Diagnosis([]), mlp_trace)
    data = _strict(path.read_text(encoding="utf-8"))
    assert data["worst"] is None
    captions = [b["caption"] for b in data["blocks"] if b["kind"] == "figure"]
    assert len(captions) == 5 and captions[0].startswith("Gradient flow per module")


def test_layer_table_prefers_the_diagnosis_rows(mlp_trace):
    diag = Diagnosis([], layers=[{"module": "0", "type": "Linear", "grad_norm": 2.0, "gain": 0.5}])
    t = layer_table(diag, mlp_trace)
    assert (
        list(t.columns)
        == LAYER_COLUMNS
        == [
            "module",
            "type",
            "grad_norm",
            "signal_out",
            "gain",
            "saturated_frac",
            "inactive_frac",
            "dead_frac",
            "predicted_gain",
        ]
    )
    assert t.loc[0, "grad_norm"] == 2.0 and math.isnan(t.loc[0, "signal_out"])
    info = json.loads(mlp_trace.modules.set_index("name").loc["0", "info"])
    assert t.loc[0, "predicted_gain"] == pytest.approx(math.sqrt(info["sw2"]))


def test_diagnosis_json_is_strict_json(mlp_trace):
    diag = Diagnosis([finding("warning")], meta={"step": 0})
    data = diagnosis_json(diag, mlp_trace)
    back = _strict(json.dumps(data, allow_nan=False))
    assert back["worst"] == "warning"
    assert back["findings"][0]["prescriptions"][0]["spec"] == "swap-activation(to=relu)"
    assert len(back["layers"]) == 23
    assert back["layers"][0]["dead_frac"] == "nan"  # not measured on a Linear layer
    assert [r["step"] for r in back["steps"]] == [0, 1, 2, 3]
    assert back["steps"][0]["nonfinite"] == 0
    assert back["trace"]["meta"]["model_spec"] == "mlp:depth=12,act=sigmoid"
    assert "model_summary" not in back["trace"]["meta"]


def test_diagnosis_json_encodes_non_finite_numbers_as_strings():
    tr = synthetic_trace([1.0, float("inf")], nonfinite_at=(1,), loss=[2.0, float("nan")])
    data = diagnosis_json(Diagnosis([]), tr)
    assert [(s["grad_norm_total"], s["loss"]) for s in data["steps"]] == [
        (1.0, 2.0),
        ("inf", "nan"),
    ]
    assert data["nonfinite_events"] == [{"step": 1, "module": "fc", "where": "backward"}]


def test_step_table_flags_nonfinite_steps():
    tr = synthetic_trace([1.0, 2.0, float("inf")], nonfinite_at=(2,), loss=[3.0, 2.0, 1.0])
    t = step_table(tr)
    assert t["nonfinite"].tolist() == [0, 0, 1]
    assert t["loss"].tolist() == [3.0, 2.0, 1.0]


def test_cli_report_rebuilds_from_a_saved_trace(mlp_trace, tmp_path):
    from typer.testing import CliRunner

    from gradmedic.cli import app

    out = tmp_path / "rebuilt.html"
    res = CliRunner().invoke(app, ["report", str(mlp_trace.path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert html.count("<img") == 5
    assert f"report: {out}" in " ".join(res.output.split())  # rich may wrap the line
