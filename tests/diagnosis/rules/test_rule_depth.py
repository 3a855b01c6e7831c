"""The depth rule (vanishing / exploding / poor-init): numbers pinned against mean-field theory
(chi1, the sqrt(sw2) gain of a weight layer) and a slow autograd reference of the signal."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diagnosis_util import data, finding, output_grad_ratio, run
from gradmedic.theory import chi1
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig
from gradmedic.zoo import build_model

torch.set_num_threads(1)


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
    d = run("mlp:depth=30,width=64,act=relu,init=xavier")
    ev = finding(d, "poor-init").evidence
    assert ev["critical_sigma_w2"] == pytest.approx(2.0, abs=1e-6)
    assert ev["log10_weight_scale_vs_critical"] == pytest.approx(
        29 * 0.5 * math.log10(0.5), abs=0.1
    )
    vf = finding(d, "vanishing-gradient")
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


def test_residual_net_gain_product_differs_from_measured_ratio():
    d = run("mlp:depth=24,width=64,act=relu,residual=true,norm=layer,init=kaiming")
    e = d.meta["end_to_end"]
    assert e["plain_chain"] is False
    assert 0.1 < e["ratio"] < 10
    # The branch modules' gains multiply to something far from the identity-carried ratio.
    assert abs(math.log10(e["gain_product"]) - math.log10(e["ratio"])) > 2
