"""Backward signal and gains against plain autograd references (probes/signal.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradmedic import Monitor
from monitor_util import mlp, value


def _chain(alpha: float, depth: int = 20, width: int = 8) -> nn.Sequential:
    layers = []
    for _ in range(depth):
        lin = nn.Linear(width, width, bias=False)
        with torch.no_grad():
            lin.weight.copy_(alpha * torch.eye(width))
        layers.append(lin)
    return nn.Sequential(*layers)


@pytest.mark.parametrize(("alpha", "expected"), [(0.9, 0.121577), (1.1, 6.727500)])
def test_chain_gain_is_alpha_and_product_is_alpha_to_the_depth(alpha, expected):
    torch.manual_seed(0)
    model = _chain(alpha)
    x = torch.randn(4, 8)
    with Monitor(model) as mon:
        model(x).sum().backward()
        mon.step()
    f = mon.frame()
    gains = f[f.quantity == "gain"].value.to_numpy()
    assert len(gains) == 20
    assert gains == pytest.approx(alpha, abs=1e-6)
    ratio = value(f, "0", "signal_in") / value(f, "19", "signal_out")
    assert ratio == pytest.approx(expected, rel=1e-5)
    assert math.prod(gains) == pytest.approx(expected, rel=1e-5)


def test_backward_signal_matches_autograd_on_retained_outputs():
    model = mlp()
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    # slow reference: run the layers by hand and differentiate every intermediate
    xs = [x.clone().requires_grad_(True)]
    for layer in model:
        xs.append(layer(xs[-1]))
    loss = nn.functional.cross_entropy(xs[-1], y)
    grads = torch.autograd.grad(loss, xs)
    model.zero_grad()
    with Monitor(model) as mon:
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
    f = mon.frame()
    for i in range(len(model)):
        assert value(f, str(i), "signal_in") == pytest.approx(float(grads[i].norm()), rel=1e-5)
        assert value(f, str(i), "signal_out") == pytest.approx(float(grads[i + 1].norm()), rel=1e-5)
        expected_gain = float(grads[i].norm() / grads[i + 1].norm())
        assert value(f, str(i), "gain") == pytest.approx(expected_gain, rel=1e-5)


def test_gain_of_a_layer_that_also_feeds_a_skip_is_its_own():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(6, 6, bias=False)

        def forward(self, x):
            return x + self.f(x)

    torch.manual_seed(0)
    block = Block()
    x = torch.randn(5, 6)
    with Monitor(block) as mon:
        block(x).pow(2).sum().backward()
        mon.step()
    f = mon.frame()
    g_out = 2 * block(x).detach()  # dL/dy of the block's output, also dL/d(f(x))
    own_in = g_out @ block.f.weight.detach()  # VJP through f alone, skip excluded
    assert value(f, "f", "signal_out") == pytest.approx(float(g_out.norm()), rel=1e-5)
    assert value(f, "f", "signal_in") == pytest.approx(float(own_in.norm()), rel=1e-5)


def test_inplace_relu_after_linear_records_the_right_signal():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(inplace=True), nn.Linear(6, 1))
    x = torch.randn(9, 6)
    h = model[0](x)
    h.retain_grad()
    r = torch.relu(h)
    r.retain_grad()
    model[2](r).sum().backward()
    model.zero_grad()
    with Monitor(model) as mon:
        model(x).sum().backward()
        mon.step()
    f = mon.frame()
    assert value(f, "0", "signal_out") == pytest.approx(float(h.grad.norm()), rel=1e-6)
    assert value(f, "1", "signal_in") == pytest.approx(float(h.grad.norm()), rel=1e-6)
    assert value(f, "1", "signal_out") == pytest.approx(float(r.grad.norm()), rel=1e-6)


def test_amp_grad_scaler_signals_are_unscaled():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(8, 4)
    h = model[0](x)
    h.retain_grad()
    model[2](model[1](h)).sum().backward()
    ref = float(h.grad.norm())
    model.zero_grad()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with Monitor(model, optimizer=opt, scaler=scaler) as mon:
        scaler.scale(model(x).sum()).backward()
        scaler.step(opt)
        scaler.update()
    f = mon.frame()
    assert value(f, "0", "signal_out") == pytest.approx(ref, rel=1e-5)
    assert value(f, "", "amp_unscaled") == 1.0
