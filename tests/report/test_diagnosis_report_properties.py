"""report.diagnosis on any trace: the whole HTML/JSON report builds (strict: a figure bug
raises here); in normal use a figure that fails becomes a note and the report, and the
diagnosis around it, are still written; the root module is named by the model's class."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings

import gradmedic.report.figures as F
from gradmedic.diagnosis import Diagnosis
from gradmedic.errors import TraceError
from gradmedic.report import diagnosis_json
from gradmedic.report.diagnosis import diagnosis_report
from gradmedic.report.figures.style import new_figure
from gradmedic.workflows.checkup import diagnose
from report_util import finding, layer_trace, traces

NOTE = (
    "The figure 'Gradient flow per layer' could not be drawn (ValueError: Data cannot be "
    "log-scaled); its numbers are in the tables. This is a gradmedic bug: please report it "
    "with the trace."
)


def _strict(text: str):
    def refuse(name: str):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces(max_steps=2, max_layers=3))
def test_the_whole_report_builds_for_any_trace(trace):
    try:
        diag = diagnose(trace)
    except TraceError:  # nothing to diagnose (no step with gradients): report a given finding
        diag = Diagnosis([finding(layers=["", *trace.modules["name"][1:]])])
    rep = diagnosis_report(diag, trace, strict=True)
    assert "</html>" in rep.to_html()
    assert _strict(rep.to_json())["title"] == "gradmedic diagnosis"
    data = _strict(json.dumps(diagnosis_json(diag, trace), allow_nan=False))
    assert len(data["layers"]) <= len(trace.modules) - 1


def _boom(trace):
    raise ValueError("Data cannot be log-scaled\n(second line of the message)")


def _unrenderable(trace):
    fig, (ax,) = new_figure(3.0, 2.0)
    ax.set_title("$\\frac$")  # mathtext raises when the figure is drawn, not when built
    return fig


def _small_trace():
    rows = [(s, "fc", "", q, None, 1.0) for s in (0, 1) for q in ("signal_out", "gain")]
    rows += [(s, "", "", "grad_norm_total", None, 1.0) for s in (0, 1)]
    rows += [(1, "", "", "nonfinite_forward", None, 1.0)]
    return layer_trace(rows, {"fc": "Linear"}, model_class="TinyNet")


@pytest.mark.parametrize("broken", [_boom, _unrenderable])
def test_a_figure_that_fails_becomes_a_note(monkeypatch, broken):
    monkeypatch.setattr(F, "gradient_flow_figure", broken)
    rep = diagnosis_report(Diagnosis([]), _small_trace())
    texts = [b["text"] for b in rep.blocks if b["kind"] == "text"]
    if broken is _boom:
        assert NOTE in texts
    else:
        assert any(t.startswith("The figure 'Gradient flow per layer' could not") for t in texts)
    captions = [b["caption"][:24] for b in rep.blocks if b["kind"] == "figure"]
    assert captions == [  # the other figures drew
        "The product of gains fro",
        "Backward signal ‖∂L/∂y‖ ",
        "Global gradient norm ove",
    ]
    with pytest.raises(ValueError):
        diagnosis_report(Diagnosis([]), _small_trace(), strict=True).to_html()


def test_the_report_command_writes_its_report_when_a_figure_fails(monkeypatch, mlp_trace, tmp_path):
    from typer.testing import CliRunner

    from gradmedic.cli import app

    monkeypatch.setattr(F, "gradient_flow_figure", _boom)
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", str(mlp_trace.path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert NOTE.replace("'", "&#39;") in html
    assert html.count("<img") == 4  # the other four figures


def test_the_root_module_is_named_by_the_model_class():
    trace = _small_trace()
    rep = diagnosis_report(Diagnosis([finding(layers=["", "fc"], step=1)]), trace)
    html = rep.to_html()
    assert "<code>TinyNet</code>, <code>fc</code>" in html
    events = next(b for b in rep.blocks if b["kind"] == "table" and "NaN/Inf" in b["caption"])
    assert events["rows"] == [[1, "TinyNet", "forward"]]
    data = diagnosis_json(Diagnosis([]), trace)  # machines get the module path itself
    assert data["nonfinite_events"] == [{"step": 1, "module": "", "where": "forward"}]
