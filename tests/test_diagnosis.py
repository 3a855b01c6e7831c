"""Diagnosis: sick models are found with the right cause, healthy ones come out clean.

Numbers are pinned against theory (mean-field chi1, the sqrt(sw2) gain of a weight layer) and
against a slow autograd reference of the backward signal.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from diagnosis_util import data, finding, output_grad_ratio
from gradmedic.diagnosis import (
    Diagnosis,
    headline,
    layer_table,
    module_predicted_gain,
    static_checks,
)
from gradmedic.diagnosis.findings import severity_rank
from gradmedic.errors import ConfigError, GradmedicError, ModelError
from gradmedic.theory import chi1
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig, train
from gradmedic.zoo import build_model

torch.set_num_threads(1)


def run(spec: str, dspec: str = "digits", loss: str | None = None, steps: int = 10) -> Diagnosis:
    d = data(dspec)
    model = build_model(spec, d.info, seed=0)
    rnn = any(k in spec for k in ("rnn", "lstm", "gru"))
    cfg = TrainConfig(steps=steps, every=1, rnn_hidden=rnn, batch_size=32 if rnn else 64)
    return diagnose(model=model, data=d, loss=loss, config=cfg)


def alarms(d: Diagnosis) -> list[tuple[str, str]]:
    return [(f.slug, f.severity) for f in d.at_least("warning")]


# ----------------------------------------------------------------------------- sick models
SICK = [
    # (model, data, loss, slug, minimum severity)
    ("mlp:depth=20,width=64,act=sigmoid", "digits", None, "vanishing-gradient", "error"),
    ("mlp:depth=30,width=64,act=relu,init=xavier", "digits", None, "vanishing-gradient", "error"),
    ("mlp:depth=30,width=64,act=relu,init=xavier", "digits", None, "poor-init", "warning"),
    (
        "mlp:depth=20,width=64,act=tanh,init=normal(sw2=4)",
        "digits",
        None,
        "exploding-gradient",
        "warning",
    ),
    ("mlp:depth=20,width=64,act=tanh,init=normal(sw2=4)", "digits", None, "poor-init", "warning"),
    ("mlp:depth=6,width=64,act=relu,bias_init=-5", "digits", None, "dead-relu", "error"),
    ("mlp:depth=6,width=64,act=relu,bias_init=-5", "digits", None, "vanishing-gradient", "error"),
    ("mlp:depth=20,width=64,act=linear", "digits", None, "vanishing-gradient", "error"),
    ("mlp:depth=12,width=64", "digits", None, "vanishing-gradient", "warning"),
    (
        "mlp:depth=3,width=32,final_act=sigmoid",
        "digits-binary",
        "bce",
        "unstable-loss-pairing",
        "warning",
    ),
    ("mlp:depth=3,width=32,final_act=softmax", "digits", "ce", "unstable-loss-pairing", "warning"),
    ("mlp:depth=3,width=32,final_act=softmax", "digits", "nll", "unstable-loss-pairing", "warning"),
    (
        "mlp:depth=3,width=32,act=tanh,init=normal(sw2=30)",
        "digits",
        None,
        "saturating-activation",
        "warning",
    ),
    ("rnn:hidden=32", "adding-200", None, "rnn-long-range-vanishing", "error"),
    ("rnn:hidden=32,radius=3", "adding-50", None, "rnn-exploding", "warning"),
    ("lstm:hidden=32,forget_bias=0", "adding-100", None, "rnn-long-range-vanishing", "warning"),
]


@pytest.mark.parametrize(("spec", "dspec", "loss", "slug", "severity"), SICK)
def test_pathological_models_are_found(spec, dspec, loss, slug, severity):
    d = run(spec, dspec, loss)
    f = finding(d, slug)
    assert severity_rank(f.severity) >= severity_rank(severity), (f.severity, f.evidence)
    assert f.cause and f.layers and f.evidence
    if slug != "nonfinite-gradient":
        assert f.prescriptions


HEALTHY = [
    ("mlp:depth=4,width=64,act=relu,init=kaiming", "digits", None),
    ("mlp:depth=24,width=64,act=relu,residual=true,norm=layer,init=kaiming", "digits", None),
    ("mlp:depth=24,width=64,act=relu,residual=true,norm=layer", "digits", None),
    ("transformer", "digits", None),
    ("lstm:hidden=32", "adding-10", None),
    ("mlp:depth=30,width=64,act=relu,init=kaiming", "digits", None),
    ("mlp:depth=30,width=64,act=tanh,init=normal(sw2=1.0)", "digits", None),
    ("mlp:depth=20,width=64,act=selu,init=lecun", "digits", None),
    ("mlp:depth=20,width=64,act=gelu,init=kaiming", "digits", None),
    ("mlp:depth=10,width=64,act=relu,norm=batch,init=kaiming", "digits", None),
    ("mlp:depth=4,width=64,act=sigmoid", "digits", None),
    ("cnn", "digits:image=true", None),
    ("mlp:depth=3,width=32,final_act=log_softmax", "digits", "nll"),
    ("rnn:hidden=32,init=orthogonal", "adding-20", None),
]


@pytest.mark.parametrize(("spec", "dspec", "loss"), HEALTHY)
def test_healthy_models_raise_no_warning(spec, dspec, loss):
    d = run(spec, dspec, loss)
    assert alarms(d) == [], [(f.slug, f.title, f.evidence) for f in d.at_least("warning")]


# ----------------------------------------------------------------------------- numbers
def _reference_ratio(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> float:
    """||dL/dh^first|| / ||dL/dh^last|| by plain autograd (outputs of first/last Linear)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return output_grad_ratio(model, x, y, linears[0], linears[-1])


def test_end_to_end_ratio_matches_autograd_and_sigmoid_theory():
    d = data("digits")
    model = build_model("mlp:depth=20,width=64,act=sigmoid", d.info, seed=0)
    x, y = next(d.batches(64, 0))
    ref = _reference_ratio(model, x, y)
    diag = diagnose(model=model, data=d, config=TrainConfig(steps=3, every=1))
    ev = finding(diag, "vanishing-gradient").evidence
    assert ev["measured_ratio"] == pytest.approx(ref, rel=1e-3)
    assert diag.meta["end_to_end"]["ratio"] == pytest.approx(ref, rel=1e-6)
    # On a plain chain the product of per-module gains is the end-to-end ratio.
    assert ev["plain_chain"] is True
    assert ev["gain_product"] == pytest.approx(ref, rel=1e-3)
    # Mean-field: per-layer factor sqrt(chi1) with sw2 = 1/3 (PyTorch default) -> 0.1414.
    k = chi1("sigmoid", ev["sigma_w2_median"], 0.005)
    assert ev["per_layer_factor"] == pytest.approx(math.sqrt(k), rel=0.05)
    assert ev["per_layer_factor"] == pytest.approx(0.1414, rel=0.05)
    # Attribution: the parts add up to the whole; sigmoid's phi' ~ 0.245 per layer
    # (19 x log10 0.245 = -11.6) and the weights' sqrt(1/3) (19 x log10 0.577 = -4.5).
    parts = sum(
        ev[k]
        for k in (
            "log10_weights",
            "log10_activation_derivative",
            "log10_dead_units",
            "log10_normalisation",
            "log10_other",
        )
    )
    assert parts == pytest.approx(ev["log10_ratio"], abs=0.01)  # evidence has 4 digits
    assert ev["log10_activation_derivative"] == pytest.approx(19 * math.log10(0.245), abs=0.3)
    assert ev["log10_weights"] == pytest.approx(19 * math.log10(math.sqrt(1 / 3)), abs=0.3)
    assert ev["share"]["activation"] > 0.65
    assert ev["first_layer_can_learn"] is False
    assert ev["theory_ratio_at_q_star"] == pytest.approx(ref, rel=0.5)


def test_xavier_relu_blames_the_weight_scale_against_critical():
    # He et al. 2015: Xavier (sw2 = 1) vs the critical sw2 = 2 for ReLU loses sqrt(1/2) per
    # layer: 29 x 0.5 log10(1/2) = -4.37.
    ev = finding(run("mlp:depth=30,width=64,act=relu,init=xavier"), "poor-init").evidence
    assert ev["critical_sigma_w2"] == pytest.approx(2.0, abs=1e-6)
    assert ev["log10_weight_scale_vs_critical"] == pytest.approx(
        29 * 0.5 * math.log10(0.5), abs=0.1
    )
    vf = finding(run("mlp:depth=30,width=64,act=relu,init=xavier"), "vanishing-gradient")
    assert str(vf.prescriptions[0]) == "reinit(scheme=kaiming)"


def test_deep_linear_net_blames_weights_only():
    ev = finding(run("mlp:depth=20,width=64,act=linear"), "vanishing-gradient").evidence
    assert ev["share"] == {"weights": 1.0}
    # PyTorch default Linear: sw2 = 1/3, gain sqrt(1/3) per layer over 19 crossings.
    assert ev["log10_ratio"] == pytest.approx(19 * math.log10(math.sqrt(1 / 3)), abs=0.4)


def test_tanh_chaotic_phase_grows_by_sqrt_chi1_per_layer():
    ev = finding(run("mlp:depth=20,width=128,act=tanh,init=normal(sw2=4)"), "exploding-gradient")
    ev = ev.evidence
    assert ev["phase"] == "chaotic"
    # chi1(tanh, 4, 0) = 1.3627 -> sqrt = 1.167 per layer (finite width: +-5 %).
    assert ev["per_layer_factor"] == pytest.approx(math.sqrt(chi1("tanh", 4.0, 0.0)), rel=0.05)


def test_predicted_gain_matches_measured_per_layer():
    """sqrt(sw2) for a Linear and sqrt(E[phi'(sqrt(q) z)^2]) for tanh at the measured q.

    Width 256: the relative finite-width error of one layer's gain is about 1/sqrt(256) = 6 %,
    so each layer is held to 20 % and the geometric mean over layers to 3 %."""
    d = data("digits")
    model = build_model("mlp:depth=10,width=256,act=tanh,init=normal(sw2=1.5,sb2=0.05)", d.info)
    rows = diagnose(model=model, data=d, config=TrainConfig(steps=1, every=1)).layers
    ratios = {"weight": [], "activation": []}
    for r in rows[1:-1]:  # the first Linear sees the data, not a hidden signal
        if r["predicted_gain"] is not None and r["category"] in ratios:
            ratios[r["category"]].append(r["gain"] / r["predicted_gain"])
    for cat, vals in ratios.items():
        assert len(vals) >= 8, cat
        assert all(abs(v - 1) < 0.2 for v in vals), (cat, vals)
        gmean = math.exp(sum(math.log(v) for v in vals) / len(vals))
        assert gmean == pytest.approx(1.0, abs=0.03), (cat, gmean)


def test_module_predicted_gain_values():
    assert module_predicted_gain({"type": "Linear", "sw2": 2.0}, None) == pytest.approx(2**0.5)
    assert module_predicted_gain({"type": "ReLU", "activation": "relu"}, 3.0) == pytest.approx(
        0.5**0.5
    )
    # sigmoid'(0) = 1/4 is the maximum: as q -> 0 the gain tends to 0.25.
    g = module_predicted_gain({"type": "Sigmoid", "activation": "sigmoid"}, 1e-8)
    assert g == pytest.approx(0.25, rel=1e-6)
    assert module_predicted_gain({"type": "Flatten"}, None) == 1.0
    assert module_predicted_gain({"type": "BatchNorm1d"}, 1.0) is None


def test_residual_net_gain_product_differs_from_measured_ratio():
    d = run("mlp:depth=24,width=64,act=relu,residual=true,norm=layer,init=kaiming")
    e = d.meta["end_to_end"]
    assert e["plain_chain"] is False
    assert 0.1 < e["ratio"] < 10
    # The branch modules' gains multiply to something far from the identity-carried ratio.
    assert abs(math.log10(e["gain_product"]) - math.log10(e["ratio"])) > 2


def test_rnn_evidence_pascanu_and_horizon():
    f = finding(run("rnn:hidden=32,radius=3", "adding-50"), "rnn-exploding")
    # radius 3 -> largest singular value >= 3 > 1/gamma = 1: necessary condition for exploding.
    assert f.evidence["pascanu_verdict"] == "exploding-possible"
    assert f.evidence["pascanu_lambda1"] >= 3.0
    assert f.evidence["peak_over_last"] >= 1e3
    assert [str(p) for p in f.prescriptions] == [
        "clip-grad-norm(max_norm=1.0)",
        "orthogonal-recurrent",
    ]
    v = finding(run("rnn:hidden=32", "adding-200"), "rnn-long-range-vanishing")
    assert v.evidence["seq_len"] == 200
    assert v.evidence["memory_horizon"] < 200
    assert str(v.prescriptions[0]) == "replace-rnn(to=lstm)"
    lstm = finding(run("lstm:hidden=32,forget_bias=0", "adding-100"), "rnn-long-range-vanishing")
    assert str(lstm.prescriptions[0]) == "forget-bias(value=1.0)"


# ----------------------------------------------------------------------------- non-finite
class _LogOfShifted(nn.Module):
    """log(x - 100): NaN for every realistic input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x - 100.0)


def test_module_that_produces_nan_is_named():
    d = data("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), _LogOfShifted(), nn.Linear(32, 10))
    diag = diagnose(model=model, data=d, config=TrainConfig(steps=3, every=1))
    f = finding(diag, "nonfinite-gradient")
    assert f.severity == "error"
    assert f.step == 0
    assert f.layers == ["2"]
    assert f.evidence["first_forward_module"] == "2"
    assert f.evidence["born_in_module"] is True
    assert f.cause.startswith("Module '2' produced NaN/Inf in the forward pass at step 0")


def test_divergence_from_large_steps_prescribes_clipping():
    d = data("digits")
    model = build_model("mlp:depth=4,width=64,act=relu,init=kaiming", d.info, seed=0)
    diag = diagnose(model=model, data=d, config=TrainConfig(steps=15, every=1, lr=50.0))
    f = finding(diag, "nonfinite-gradient")
    assert f.step > 0 and f.evidence["born_in_module"] is False
    assert [str(p) for p in f.prescriptions] == [
        "clip-grad-norm(max_norm=1.0)",
        "lower-lr(factor=0.1)",
    ]


# ----------------------------------------------------------------------------- static checks
class _Log(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


@pytest.mark.parametrize(
    ("tail", "loss", "severity", "to"),
    [
        (nn.Sigmoid(), nn.BCELoss(), "warning", "bce-logits"),
        (nn.Sigmoid(), nn.BCEWithLogitsLoss(), "warning", "bce-logits"),
        (nn.Softmax(dim=-1), nn.CrossEntropyLoss(), "warning", "ce"),
        (nn.LogSoftmax(dim=-1), nn.CrossEntropyLoss(), "info", "ce"),
        (nn.Softmax(dim=-1), nn.NLLLoss(), "warning", "ce"),
        ([nn.Softmax(dim=-1), _Log()], nn.NLLLoss(), "warning", "ce"),
        (None, nn.NLLLoss(), "warning", "ce"),
    ],
)
def test_static_loss_pairings(tail, loss, severity, to):
    tails = tail if isinstance(tail, list) else ([tail] if tail is not None else [])
    model = nn.Sequential(nn.Linear(4, 3), *tails)
    found = static_checks(model, loss)
    assert [f.slug for f in found] == ["unstable-loss-pairing"]
    assert found[0].severity == severity
    assert [str(p) for p in found[0].prescriptions] == [f"fix-loss(to={to})"]


@pytest.mark.parametrize(
    ("tail", "loss"),
    [
        (nn.LogSoftmax(dim=-1), nn.NLLLoss()),
        (None, nn.CrossEntropyLoss()),
        (None, nn.BCEWithLogitsLoss()),
        (nn.Sigmoid(), nn.MSELoss()),
    ],
)
def test_static_healthy_pairings(tail, loss):
    model = nn.Sequential(nn.Linear(4, 3), *([tail] if tail is not None else []))
    assert static_checks(model, loss) == []


def test_static_check_reads_a_functional_softmax_from_the_output():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.softmax(self.fc(x), dim=-1)

    found = static_checks(Net(), nn.CrossEntropyLoss(), sample=torch.randn(8, 4))
    assert [f.severity for f in found] == ["warning"]
    assert static_checks(Net(), nn.CrossEntropyLoss()) == []  # no sample: cannot tell


# ----------------------------------------------------------------------------- API
def test_trace_only_diagnosis_matches_model_diagnosis(tmp_path):
    d = data("digits")
    model = build_model("mlp:depth=20,width=64,act=sigmoid", d.info, seed=0)
    train(model, d, TrainConfig(steps=5, every=1), trace_path=tmp_path / "trace.sqlite")
    from_trace = diagnose(tmp_path / "trace.sqlite")
    assert from_trace.slugs() == ["vanishing-gradient", "poor-init"]
    assert from_trace.findings[0].severity == "error"
    assert from_trace.meta["source"] == "trace"
    json.dumps(from_trace.to_dict(), allow_nan=False)


def test_layer_table_rows_and_headline():
    d = run("mlp:depth=20,width=64,act=sigmoid", steps=2)
    rows = d.layers
    assert [r["module"] for r in rows[:3]] == ["0", "1", "2"]
    keys = {
        "module",
        "type",
        "grad_norm",
        "signal_out",
        "signal_in",
        "gain",
        "saturated_frac",
        "dead_frac",
        "predicted_gain",
    }
    assert keys <= set(rows[0])
    assert rows[1]["type"] == "Sigmoid" and rows[1]["category"] == "activation"
    assert rows[1]["gain"] == pytest.approx(rows[1]["signal_in"] / rows[1]["signal_out"])
    assert headline(d).startswith("error: vanishing-gradient (Vanishing gradient: signal ratio ")
    assert headline(d).endswith("; 1 more finding")
    assert headline(Diagnosis([])) == "healthy: no findings"
    json.dumps(d.to_dict(), allow_nan=False)


def test_layer_table_of_trace_is_model_ordered():
    d = data("digits")
    model = build_model("mlp:depth=3,width=16", d.info, seed=0)
    res = train(model, d, TrainConfig(steps=2, every=1))
    rows = layer_table(res.trace)
    assert [r["module"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert rows[0]["predicted_gain"] == pytest.approx(math.sqrt(rows[0]["sw2"]))


def test_model_without_data_gives_static_and_init_findings():
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(20):
        layers += [nn.Linear(64, 64), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(64, 1), nn.Sigmoid())
    d = diagnose(model=model, loss=nn.BCELoss())
    assert sorted(d.slugs()) == ["poor-init", "unstable-loss-pairing"]
    pi = finding(d, "poor-init")
    assert pi.severity == "warning" and pi.evidence["basis"] == "theory (no data)"
    # 21 Linear+Sigmoid pairs, each crossed once: 21 x log10 sqrt(chi1(sigmoid, 1/3, ~0))
    # = 21 x log10(0.1414) = -17.84 (finite-size spread of the sampled sw2 and sb2).
    assert pi.evidence["predicted_log10_ratio"] == pytest.approx(21 * math.log10(0.1414), abs=0.3)


def test_bad_input_errors():
    with pytest.raises(ConfigError) as exc:
        diagnose()
    assert str(exc.value) == (
        "diagnose needs a trace (path or Trace) or a model; e.g. diagnose('run/trace.sqlite') "
        "or diagnose(model=my_model, data='digits')"
    )
    with pytest.raises(ConfigError, match="model spec 'mlp' needs data to be built"):
        diagnose(model="mlp")
    with pytest.raises(ModelError, match=r"diagnose needs a torch\.nn\.Module as model, got int"):
        diagnose(model=3, data="digits")
    with pytest.raises(GradmedicError, match="no trace at"):
        diagnose("/nonexistent/trace.sqlite")


def _spike_trace(losses: list[float], norms: list[float]):
    import pandas as pd

    from gradmedic.trace import Trace, frame_from_rows

    rows = []
    for step, (loss, norm) in enumerate(zip(losses, norms, strict=True)):
        rows.append((step, "", "", "loss", None, loss))
        rows.append((step, "", "", "grad_norm_total", None, norm))
    modules = pd.DataFrame(
        [(0, "", "Sequential", None, 0, "{}")],
        columns=["ord", "name", "type", "activation", "n_params", "info"],
    )
    return Trace(frame=frame_from_rows(rows), modules=modules, meta={"schema_version": 1})


def test_gradient_spike_that_throws_the_loss_off_is_a_warning():
    norms = [1.0, 1.1, 0.9, 1.0, 1.2, 40.0, 1.0, 1.1, 0.9, 1.0]
    losses = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 9.5, 6.0, 4.0, 3.0]
    spike = next(f for f in diagnose(_spike_trace(losses, norms)).findings)
    assert (spike.slug, spike.severity, spike.step) == ("gradient-spikes", "warning", 5)
    assert spike.evidence["loss_jumped_after"] == [5]
    assert str(spike.prescriptions[0]) == "clip-grad-norm(max_norm=1.0)"


def test_gradient_spike_the_loss_shrugs_off_is_only_a_note():
    norms = [1.0, 1.1, 0.9, 1.0, 1.2, 40.0, 1.0, 1.1, 0.9, 1.0]
    losses = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4]
    found = diagnose(_spike_trace(losses, norms)).findings
    assert [(f.slug, f.severity) for f in found] == [("gradient-spikes", "info")]
