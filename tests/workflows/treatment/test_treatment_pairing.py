"""An activation swap carries the init theory makes critical for the new activation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic.workflows.treatment.pairing import consistent, critical_init, model_stack


def _stack(act: type[nn.Module], depth: int = 20, width: int = 32) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(16, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


@pytest.mark.parametrize(
    ("to", "scheme"),
    [
        ("relu", "kaiming"),  # He: sw2 = 2, chi1 = 1
        ("leaky_relu", "kaiming"),
        ("tanh", "xavier_normal"),  # sw2 = 1 on equal widths: chi1 = 1 at sb2 = 0
        ("selu", "xavier_normal"),  # LeCun normal, Var W = 1/fan_in on equal widths
        ("gelu", "kaiming"),  # its own gain: xavier would leave chi1 = 1/4
    ],
)
def test_each_swap_gets_the_init_theory_computes_for_it(to, scheme):
    net = _stack(nn.Sigmoid)
    assert consistent([f"swap-activation(to={to})"], net) == [
        f"swap-activation(to={to})",
        f"reinit(scheme={scheme})",
    ]


def test_a_prescribed_reinit_is_replaced_and_other_remedies_kept_in_order():
    net = _stack(nn.Sigmoid)
    specs = ["reinit(scheme=xavier)", "swap-activation(to=relu)", "clip-grad-norm(max_norm=1.0)"]
    assert consistent(specs, net) == [
        "swap-activation(to=relu)",
        "reinit(scheme=kaiming)",
        "clip-grad-norm(max_norm=1.0)",
    ]
    # no swap: nothing to pair
    assert consistent(["reinit(scheme=xavier)"], net) == ["reinit(scheme=xavier)"]


def test_predictions_for_a_default_init_sigmoid_stack():
    net = _stack(nn.Sigmoid)
    assert len(model_stack(net)) == 20
    scheme, preds = critical_init(net)
    # no scheme reaches sigmoid's critical sw2 (about 103): theory predicts a vanishing ratio
    assert scheme is None
    assert preds["xavier_normal"] == pytest.approx(-11.9, abs=0.1)  # sqrt(0.0557)^19
    assert preds["current"] == pytest.approx(-16.1, abs=0.2)  # PyTorch's default sw2 = 1/3
    assert preds["critical"] is None
    relu, _ = nn.Sequential(*[nn.ReLU() if isinstance(m, nn.Sigmoid) else m for m in net]), None
    scheme, preds = critical_init(relu)
    assert scheme == "kaiming" and abs(preds["kaiming"]) < 0.5 and preds["xavier_normal"] < -2


def test_an_already_critical_init_needs_no_reinit():
    net = _stack(nn.Sigmoid)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    # Xavier weights are already critical for tanh: the paired reinit is dropped
    assert consistent(["swap-activation(to=tanh)", "reinit(scheme=kaiming)"], net) == [
        "swap-activation(to=tanh)"
    ]
