"""Reports: the generic builder, the figures' numbers, the diagnosis report, JSON and terminal."""

from __future__ import annotations

import base64
import json
import math
import re
from collections import OrderedDict

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console
from torch import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from gradmedic import Monitor
from gradmedic.diagnosis.findings import Diagnosis, Finding, Prescription
from gradmedic.errors import ConfigError
from gradmedic.report import (
    Report,
    activation_figure,
    diagnosis_json,
    format_value,
    grad_norm_over_steps_figure,
    gradient_flow_figure,
    jsonable,
    layer_table,
    loss_figure,
    print_diagnosis,
    rnn_time_figure,
    signal_heatmap_figure,
    treatment_figures,
    write_diagnosis_report,
)
from gradmedic.report.diagnosis import diagnosis_report, step_table
from gradmedic.report.figures import (
    find_spikes,
    gain_product_data,
    layer_snapshot,
    predicted_gains,
)
from gradmedic.trace import Trace, frame_from_rows
from gradmedic.workflows.train import TrainConfig, train
from gradmedic.zoo import build_model, load_data

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


# --------------------------------------------------------------------------------------------
# fixtures: real traces, made once per module (a few seconds in all)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture(scope="module")
def mlp_trace(digits, tmp_path_factory):
    model = build_model("mlp:depth=12,act=sigmoid", digits.info, seed=0)
    path = tmp_path_factory.mktemp("mlp") / "trace.sqlite"
    run = train(
        model,
        digits,
        TrainConfig(steps=4, every=1, seed=0),
        trace_path=path,
        metadata={"model_spec": "mlp:depth=12,act=sigmoid", "data_spec": "digits"},
    )
    return run.trace


@pytest.fixture(scope="module")
def relu_trace(digits):
    model = build_model("mlp:depth=12,act=relu,init=kaiming", digits.info, seed=0)
    return train(model, digits, TrainConfig(steps=3, every=1, seed=0)).trace


@pytest.fixture(scope="module")
def rnn_trace():
    data = load_data("adding-20", n=256)
    model = build_model("rnn:hidden=16", data.info, seed=0)
    cfg = TrainConfig(steps=1, every=1, rnn_hidden=True, batch_size=32)
    return train(model, data, cfg).trace


def _finding(severity="error", layers=("0",), slug="vanishing-gradient", **kw):
    return Finding(
        slug=slug,
        severity=severity,
        title=kw.get("title", "Vanishing gradient"),
        cause=kw.get("cause", "sigmoid saturates; each layer multiplies the signal by 0.25"),
        layers=list(layers),
        evidence=kw.get("evidence", {"first_last_ratio": 5.7e-10, "depth": 12}),
        prescriptions=[Prescription("swap-activation", {"to": "relu"}, "slope 1 on positives")],
        step=kw.get("step", 0),
    )


def _synthetic_trace(values, *, nonfinite_at=(), loss=None):
    """A trace with only global rows: grad_norm_total per step (and loss)."""
    rows = []
    for s, v in enumerate(values):
        rows.append((s, "", "", "grad_norm_total", None, float(v)))
        if loss is not None:
            rows.append((s, "", "", "loss", None, float(loss[s])))
        if s in nonfinite_at:
            rows.append((s, "", "", "nonfinite", None, 1.0))
            rows.append((s, "fc", "", "nonfinite_backward", None, 1.0))
    modules = pd.DataFrame(
        [(0, "", "Net", None, 0, "{}"), (1, "fc", "Linear", None, 10, "{}")],
        columns=["ord", "name", "type", "activation", "n_params", "info"],
    )
    return Trace(frame=frame_from_rows(rows), modules=modules, meta={"schema_version": 1})


# --------------------------------------------------------------------------------------------
# formatting and JSON
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.123456, "0.1235"),
        (3.2e-9, "3.2e-09"),
        (123456.0, "1.23e+05"),
        (0.0, "0"),
        (12, "12"),
        (np.float32(0.5), "0.5"),
        (np.int64(7), "7"),
        (None, "—"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        (True, "yes"),
        ([1, 2.5e-7], "[1, 2.5e-07]"),
        (list(range(10)), "[0, 1, 2, 3, 4, 5, 6, 7, … (+2)]"),
        ({"a": 0.25, "b": "x"}, "a=0.25, b=x"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_jsonable_makes_strict_json():
    data = {
        "nan": float("nan"),
        "inf": float("inf"),
        "f32": np.float32(0.25),
        "arr": np.array([1.0, 2.0]),
        "t": (1, 2),
        "tensor": torch.tensor(3.0),
    }
    out = jsonable(data)
    assert out == {
        "nan": "nan",
        "inf": "inf",
        "f32": 0.25,
        "arr": [1.0, 2.0],
        "t": [1, 2],
        "tensor": 3.0,
    }
    json.dumps(out, allow_nan=False)


# --------------------------------------------------------------------------------------------
# the generic builder
# --------------------------------------------------------------------------------------------


def test_user_text_is_escaped_everywhere():
    rep = Report(EVIL, EVIL)
    rep.add_heading(EVIL)
    rep.add_text(EVIL)
    rep.add_table([{EVIL: EVIL}], caption=EVIL)
    rep.add_findings([_finding(layers=[EVIL], title=EVIL, cause=EVIL, evidence={EVIL: EVIL})])
    rep.add_verdict(EVIL, EVIL, EVIL, None, EVIL, {EVIL: EVIL})
    rep.add_meta({EVIL: EVIL})
    html = rep.to_html()
    assert "<script" not in html.lower()
    # title tag, h1, subtitle, meta key and value, heading, text, table caption/header/cell,
    # finding title/cause/layer/evidence key/value, verdict name/claim/source/criterion/measured
    assert html.count(EVIL_ESCAPED) >= 18
    frag = rep._repr_html_()
    assert "<script" not in frag.lower()
    assert EVIL_ESCAPED in frag


def test_findings_come_first_and_worst_first():
    rep = Report("R")
    rep.add_heading("Numbers")
    rep.add_table([{"a": 1}])
    rep.add_findings(
        [
            _finding("info", title="An info"),
            _finding("error", title="An error"),
            _finding("warning", title="A warning"),
        ]
    )
    html = rep.to_html()
    assert html.index('id="findings"') < html.index('id="numbers"')
    assert html.index("An error") < html.index("A warning") < html.index("An info")
    assert "3 findings; worst: error" in html
    d = rep.to_dict()
    assert [b["kind"] for b in d["blocks"]] == ["findings", "heading", "table"]
    assert d["worst"] == "error"
    # the contents lists findings first, then the level-2 headings
    toc = re.search(r'<nav class="toc">(.*?)</nav>', html, re.S).group(1)
    assert re.findall(r'href="#([^"]+)"', toc) == ["findings", "numbers"]


def test_finding_card_shows_cause_evidence_and_prescription():
    rep = Report("R")
    rep.add_findings(Diagnosis([_finding(layers=[str(i) for i in range(15)])]))
    html = rep.to_html()
    assert "sigmoid saturates; each layer multiplies the signal by 0.25" in html
    assert "<dt>first_last_ratio</dt>\n<dd>5.7e-10</dd>" in html
    assert "<code>swap-activation(to=relu)</code>" in html
    assert "slope 1 on positives" in html
    assert "and 3 more" in html  # 12 of 15 layers shown
    assert "#b3261e" in html  # error colour


def test_no_findings_says_so():
    rep = Report("R")
    rep.add_findings(Diagnosis([]))
    assert "No problems found" in rep.to_html()
    assert rep.to_dict()["worst"] is None


def test_figure_is_embedded_as_png_and_closed():
    rep = Report("R")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3])
    num = fig.number
    assert rep.add_figure(fig, "A line") is True
    assert not plt.fignum_exists(num)
    b64 = re.search(r'src="data:image/png;base64,([^"]+)"', rep.to_html()).group(1)
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(raw[16:20], "big")
    assert width == rep.to_dict()["blocks"][0]["width"]
    assert 300 < width <= 4 * 110  # 4 inches at dpi 110, cropped tight
    assert rep.add_figure(None, "missing") is False
    assert len(rep) == 1


def test_bad_inputs_raise_clear_errors(tmp_path):
    rep = Report("R")
    with pytest.raises(ConfigError) as e:
        rep.add_figure("fig.png", "caption")
    assert str(e.value) == (
        "add_figure takes a matplotlib Figure, got str; "
        "create one with matplotlib.pyplot.subplots()"
    )
    with pytest.raises(ConfigError) as e:
        rep.add_table([1, 2])
    assert str(e.value) == (
        "add_table takes a pandas DataFrame or a list of dicts (one per row); "
        "got a list with non-dict items"
    )
    with pytest.raises(ConfigError) as e:
        rep.add_heading("x", level=1)
    assert str(e.value) == "heading level must be 2, 3 or 4 (the title is level 1), got 1"
    with pytest.raises(ConfigError) as e:
        rep.write(tmp_path)
    assert str(e.value) == (
        f"{tmp_path} is a folder; give the report a file name, e.g. {tmp_path / 'report.html'}"
    )
    with pytest.raises(ConfigError) as e:
        rep.add_findings("vanishing")
    assert str(e.value) == "add_findings takes a Diagnosis or a list of Finding objects, got str"


def test_table_formats_numbers_and_marks_missing_values():
    df = pd.DataFrame({"module": ["a", "b"], "gain": [0.123456, float("nan")], "n": [3, 4]})
    rep = Report("R")
    rep.add_table(df, caption="gains")
    html = rep.to_html()
    assert '<td class="num">0.1235</td>' in html
    assert '<td class="num">—</td>' in html
    rows = rep.to_dict()["blocks"][0]["rows"]
    assert rows == [
        {"module": "a", "gain": 0.123456, "n": 3},
        {"module": "b", "gain": "nan", "n": 4},
    ]


def test_long_tables_are_cut_in_html_but_complete_in_json():
    rep = Report("R")
    rep.max_table_rows = 5
    rep.add_table([{"i": i} for i in range(12)])
    assert "Showing 5 of 12 rows" in rep.to_html()
    assert len(rep.to_dict()["blocks"][0]["rows"]) == 12


@pytest.mark.parametrize(
    ("passed", "label"), [(True, "pass"), (False, "fail"), (None, "inconclusive")]
)
def test_verdicts(passed, label):
    rep = Report("Lab")
    rep.add_verdict(
        "gain-law", "0.9^20 = 0.12", "article 1.1", passed, "|log ratio| < 0.1", {"ratio": 0.1216}
    )
    html = rep.to_html()
    assert f">{label}</span>gain-law" in html
    assert "<dd>0.1216</dd>" in html
    assert rep.to_dict()["blocks"][0]["passed"] is passed


def test_page_is_self_contained_and_printable():
    rep = Report("R")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    rep.add_figure(fig, "f")
    html = rep.to_html()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    assert "@media print" in html
    assert '<meta charset="utf-8">' in html


def test_write_html_and_json(tmp_path):
    rep = Report("R", "sub")
    rep.add_table([{"x": float("inf")}])
    html_path = rep.write(tmp_path / "deep" / "r.html")
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    data = json.loads(rep.write(tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["subtitle"] == "sub"
    assert data["blocks"][0]["rows"] == [{"x": "inf"}]


def test_repr_html_of_findings_and_diagnosis():
    f = _finding(layers=[EVIL])
    html = f._repr_html_()
    assert "<style>" in html and 'class="gm"' in html
    assert EVIL_ESCAPED in html and "<script" not in html
    diag = Diagnosis([f], layers=[{"module": EVIL, "type": "Linear", "gain": 0.25}])
    dh = diag._repr_html_()
    assert "Per-layer numbers" in dh and '<td class="num">0.25</td>' in dh
    assert "<script" not in dh


# --------------------------------------------------------------------------------------------
# numbers behind the figures, against references
# --------------------------------------------------------------------------------------------


def test_layer_snapshot_matches_a_plain_autograd_reference():
    """Per-layer weight-gradient and backward-signal norms in the report equal those of a slow
    reference that keeps every intermediate output with retain_grad."""
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            [
                ("fc1", nn.Linear(10, 16)),
                ("act1", nn.Tanh()),
                ("fc2", nn.Linear(16, 16)),
                ("act2", nn.Sigmoid()),
                ("out", nn.Linear(16, 3)),
            ]
        )
    )
    x = torch.randn(32, 10)
    with Monitor(model, every=1) as mon:
        model(x).pow(2).mean().backward()
        mon.step()
        tr = mon.trace()
    snap = layer_snapshot(tr).set_index("module")

    ref = __import__("copy").deepcopy(model)
    ref.zero_grad()
    outs = {}
    h = x
    for name, m in ref.named_children():
        h = m(h)
        h.retain_grad()
        outs[name] = h
    h.pow(2).mean().backward()
    for name in ("fc1", "fc2", "out"):
        w = getattr(ref, name).weight.grad.norm().item()
        assert snap.loc[name, "weight_grad_norm"] == pytest.approx(w, rel=1e-5)
    for name, t in outs.items():
        assert snap.loc[name, "signal_out"] == pytest.approx(t.grad.norm().item(), rel=1e-5)
    # gain of act2 = ||dL/dx|| / ||dL/dy|| where x is fc2's output
    g = outs["fc2"].grad.norm().item() / outs["act2"].grad.norm().item()
    assert snap.loc["act2", "gain"] == pytest.approx(g, rel=1e-5)
    # theory: Linear gain = sqrt(fan_in * Var(W)) (the trace stores sw2 with the unbiased Var)
    w2 = model.fc2.weight.detach().double()
    assert snap.loc["fc2", "predicted_gain"] == pytest.approx(
        math.sqrt(16 * w2.var().item()), rel=1e-6
    )
    plt.close("all")


def test_predicted_activation_gain_is_mean_field_and_matches_measurement(mlp_trace):
    """Sigmoid layer: theory sqrt(E[phi'(sqrt(q) z)^2]) at the measured pre-activation scale q,
    checked by Monte Carlo, and within 3% of the measured gain at initialisation."""
    snap = layer_snapshot(mlp_trace).set_index("module")
    sig = snap[snap["type"] == "Sigmoid"]
    assert len(sig) == 11
    rng = np.random.default_rng(0)
    z = rng.standard_normal(2_000_000)
    for name, row in sig.iterrows():
        s = 1 / (1 + np.exp(-math.sqrt(row["preact_ms"]) * z))
        mc = math.sqrt(np.mean((s * (1 - s)) ** 2))
        assert row["predicted_gain"] == pytest.approx(mc, rel=2e-3), name
        assert row["gain"] == pytest.approx(row["predicted_gain"], rel=0.03), name
        assert row["predicted_gain"] <= 0.25  # sigmoid's slope is at most 1/4
    pred = predicted_gains(mlp_trace)
    assert set(pred) == set(snap.index)  # every Linear and Sigmoid gets a prediction


def test_gain_product_equals_measured_end_to_end_ratio_on_a_chain(mlp_trace):
    data = gain_product_data(mlp_trace)
    assert len(data) == 23  # 12 Linear + 11 Sigmoid
    np.testing.assert_allclose(data["product"], data["measured"], rtol=1e-6)
    # eleven sigmoid layers: the gradient at the input is ~1e-10 of the output's
    assert 1e-12 < data["product"].iloc[0] < 1e-8
    # theory's product tracks the measurement within a factor 2 over 25 modules
    assert 0.5 < data["theory"].iloc[0] / data["measured"].iloc[0] < 2.0


def test_gradient_flow_figure_plots_the_trace_numbers(mlp_trace):
    fig = gradient_flow_figure(mlp_trace)
    snap = layer_snapshot(mlp_trace)
    top, bottom = fig.axes[:2]
    assert top.get_yscale() == "log"
    assert top.get_ylabel() == "L2 norm (log scale)"
    signal = top.get_lines()[0]
    np.testing.assert_allclose(signal.get_ydata(), snap["signal_out"], rtol=1e-12)
    gain = bottom.get_lines()[0]
    np.testing.assert_allclose(gain.get_ydata(), snap["gain"], rtol=1e-12)
    labels = [t.get_text() for t in bottom.get_xticklabels()]
    assert labels[0] == "0 (Linear)" and labels[1] == "1 (Sigmoid)"
    assert "step 0" in top.get_title()
    plt.close(fig)


def test_signal_heatmap_uses_log_colours(mlp_trace):
    fig = signal_heatmap_figure(mlp_trace)
    ax = fig.axes[0]
    img = ax.get_images()[0]
    assert type(img.norm).__name__ == "LogNorm"
    table = mlp_trace.pivot("signal_out")
    assert img.get_array().shape == (table.shape[1], table.shape[0])  # modules x steps
    assert img.norm.vmin == pytest.approx(table.to_numpy().min())
    assert ax.get_xlabel() == "training step"
    plt.close(fig)


def test_activation_figure_shows_dead_relu_fractions(relu_trace):
    fig = activation_figure(relu_trace)
    snap = layer_snapshot(relu_trace)
    snap = snap[snap["dead_frac"].notna()]
    top = fig.axes[0]
    dead_bars = top.containers[1]
    np.testing.assert_allclose([b.get_height() for b in dead_bars], snap["dead_frac"])
    assert top.get_ylim() == (0, 1.02)
    # ReLU: E[phi'] = 1/2 at any scale (theory markers on the bottom panel)
    theory_line = fig.axes[1].get_lines()[1]
    np.testing.assert_allclose(theory_line.get_ydata(), 0.5, rtol=1e-9)
    plt.close(fig)


def test_rnn_time_figure(rnn_trace, mlp_trace):
    assert rnn_time_figure(mlp_trace) is None
    fig = rnn_time_figure(rnn_trace)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time step t"
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == [
        "rnn: ‖∂L/∂x_t‖ (input)",
        "rnn: ‖∂L/∂h_t‖ (layer0)",
        "10⁻³ of the largest",
    ]
    f = rnn_trace.frame
    ref = f[(f["quantity"] == "input_grad_t") & (f["step"] == 0)].sort_values("idx")
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), ref["value"], rtol=1e-12)
    assert len(ref) == 20
    plt.close(fig)


def test_find_spikes():
    assert find_spikes([1, 1.1, 0.9, 1.0, 9.0, 1.0]) == [4]
    assert find_spikes([1, 1, 6]) == []  # needs three earlier values
    assert find_spikes([1, 1, 1, 4.9, 5.1]) == [4]  # factor 5 x median 1
    assert find_spikes([1, 1, 1, float("inf"), 1]) == []  # non-finite is an event, not a spike


def test_grad_norm_figure_marks_spikes_and_nonfinite_steps():
    vals = [1.0, 1.2, 0.9, 1.1, 20.0, 1.0, 1.0, float("nan"), 1.0]
    tr = _synthetic_trace(vals, nonfinite_at=(7,), loss=[2.0] * 9)
    fig = grad_norm_over_steps_figure(tr)
    ax = fig.axes[0]
    spike = next(ln for ln in ax.get_lines() if ln.get_marker() == "^")
    assert list(spike.get_xdata()) == [4] and list(spike.get_ydata()) == [20.0]
    vlines = [ln for ln in ax.get_lines() if ln.get_label() == "NaN/Inf"]
    assert len(vlines) == 1 and list(vlines[0].get_xdata()) == [7, 7]
    assert ax.get_title() == "Gradient norm over training (first NaN/Inf at step 7)"
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "training loss"
    plt.close(fig)
    assert grad_norm_over_steps_figure(_synthetic_trace([])) is None


def test_loss_figure_log_scale_and_nonfinite_marker():
    fig = loss_figure(
        {"before": [2.3, 2.3, 2.3], "relu": [2.3, 0.5, 0.01], "nan": [2.0, float("inf")]}
    )
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"  # 2.3 / 0.01 > 30
    cross = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert (
        len(cross) == 1
        and list(cross[0].get_xdata()) == [1]
        and list(cross[0].get_ydata()) == [2.0]
    )
    assert [ln.get_label() for ln in ax.get_lines()[:2]] == ["before", "relu"]
    plt.close(fig)
    assert loss_figure({}) is None


def test_treatment_figures_overlay_before_and_after(mlp_trace, relu_trace):
    pairs = treatment_figures(mlp_trace, {"swap-activation(to=relu)": relu_trace})
    assert len(pairs) == 2
    (flow, cap1), (loss, cap2) = pairs
    assert "Weight-gradient norm per layer" in cap1 and "Training loss" in cap2
    lines = flow.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["before (untreated)", "swap-activation(to=relu)"]
    assert lines[0].get_color() == "#222222"
    assert len(lines[0].get_xdata()) == 12  # 12 Linear layers
    f = mlp_trace.frame
    w0 = f[
        (f.step == 0) & (f.module == "0") & (f.parameter == "weight") & (f.quantity == "grad_norm")
    ]
    assert lines[0].get_ydata()[0] == pytest.approx(float(w0["value"].iloc[0]))
    assert len(loss.axes[0].get_lines()) == 2
    plt.close("all")


# --------------------------------------------------------------------------------------------
# the diagnosis report, JSON and terminal
# --------------------------------------------------------------------------------------------


def test_diagnosis_report_order_and_figures(mlp_trace, tmp_path):
    diag = Diagnosis([_finding()])
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
    blocks = diagnosis_report(diag, mlp_trace).to_dict()["blocks"]
    layer_rows = next(b for b in blocks if b["kind"] == "table")["rows"]
    assert len(layer_rows) == 23
    assert layer_rows[0]["module"] == "0" and layer_rows[0]["type"] == "Linear"


def test_layer_table_prefers_the_diagnosis_rows(mlp_trace):
    diag = Diagnosis([], layers=[{"module": "0", "type": "Linear", "grad_norm": 2.0, "gain": 0.5}])
    t = layer_table(diag, mlp_trace)
    assert list(t.columns) == [
        "module",
        "type",
        "grad_norm",
        "signal_out",
        "gain",
        "saturated_frac",
        "dead_frac",
        "predicted_gain",
    ]
    assert t.loc[0, "grad_norm"] == 2.0 and math.isnan(t.loc[0, "signal_out"])
    info = json.loads(mlp_trace.modules.set_index("name").loc["0", "info"])
    assert t.loc[0, "predicted_gain"] == pytest.approx(math.sqrt(info["sw2"]))


def test_diagnosis_json_is_strict_json(mlp_trace):
    diag = Diagnosis([_finding("warning")], meta={"step": 0})
    data = diagnosis_json(diag, mlp_trace)
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["worst"] == "warning"
    assert back["findings"][0]["prescriptions"][0]["spec"] == "swap-activation(to=relu)"
    assert len(back["layers"]) == 23
    assert [r["step"] for r in back["steps"]] == [0, 1, 2, 3]
    assert back["steps"][0]["nonfinite"] == 0
    assert back["trace"]["meta"]["model_spec"] == "mlp:depth=12,act=sigmoid"
    assert "model_summary" not in back["trace"]["meta"]


def test_step_table_flags_nonfinite_steps():
    tr = _synthetic_trace([1.0, 2.0, float("inf")], nonfinite_at=(2,), loss=[3.0, 2.0, 1.0])
    t = step_table(tr)
    assert t["nonfinite"].tolist() == [0, 0, 1]
    assert t["loss"].tolist() == [3.0, 2.0, 1.0]


def test_print_diagnosis_colours_by_severity_and_prints_names_literally(mlp_trace):
    con = Console(record=True, width=140, force_terminal=True, color_system="standard")
    diag = Diagnosis(
        [
            _finding("warning", title="A warning", layers=["[red]x[/red]"]),
            _finding("error", title="An error"),
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


def test_cli_report_rebuilds_from_a_saved_trace(mlp_trace, tmp_path):
    from typer.testing import CliRunner

    from gradmedic.cli import app

    out = tmp_path / "rebuilt.html"
    res = CliRunner().invoke(app, ["report", str(mlp_trace.path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert html.count("<img") == 5
    assert f"report: {out}" in " ".join(res.output.split())  # rich may wrap the line
