"""Functional layers (monitor/functional.py): bare parameters in ``x @ W.T`` and activation
functions called in ``forward`` are measured like modules, against plain autograd twins."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradmedic import Monitor
from monitor_util import value


class SigmoidMatrix(nn.Module):
    """Field case 14 in small: ``sigmoid(x @ W.T)`` with W ~ N(0, 1)."""

    def __init__(self, n_in: int = 20, n_out: int = 5):
        super().__init__()
        self.W = nn.Parameter(torch.randn(n_out, n_in))

    def forward(self, x):
        return torch.sigmoid(x @ self.W.T)


def _one_step(model, x, loss_fn=lambda out: out.pow(2).mean()):
    with Monitor(model, every=1) as mon:
        loss_fn(model(x)).backward()
        mon.step()
    return mon


def test_weight_use_and_functional_sigmoid_match_plain_autograd():
    torch.manual_seed(0)
    model = SigmoidMatrix()
    x = torch.rand(8, 20)
    # reference twin: the same graph with retained gradients
    xr = x.clone().requires_grad_(True)
    z = xr @ model.W.detach().T
    z.retain_grad()
    y = torch.sigmoid(z)
    y.retain_grad()
    y.pow(2).mean().backward()
    s = torch.sigmoid(z.detach())
    d = s * (1 - s)
    mon = _one_step(model, x)
    f = mon.frame()
    mm, sg = "<root>.W@matmul", "<root>@sigmoid"
    expect = {
        (mm, "signal_out"): z.grad.norm(),
        (mm, "signal_in"): xr.grad.norm(),
        (sg, "signal_out"): y.grad.norm(),
        (sg, "signal_in"): z.grad.norm(),
        (sg, "dphi_mean"): d.mean(),
        (sg, "saturated_frac"): (d < 0.0025).float().mean(),
        (sg, "preact_ms"): z.detach().pow(2).mean(),
        (sg, "act_std"): s.std(),
    }
    for (module, q), ref in expect.items():
        assert value(f, module, q) == pytest.approx(float(ref), rel=1e-5), (module, q)
    assert value(f, mm, "gain") == pytest.approx(float(xr.grad.norm() / z.grad.norm()), rel=1e-5)
    assert f[(f.module == "") & (f.quantity == "signal_out")].empty  # measured by its layers
    # the weight's gradient rows are repeated under the layer, totals count it once
    assert value(f, mm, "grad_norm", "weight") == value(f, "", "grad_norm", "W")
    assert value(f, "", "grad_norm_total") == pytest.approx(float(model.W.grad.norm()), rel=1e-6)


def test_functional_layers_enter_the_module_table_in_forward_order():
    torch.manual_seed(0)
    model = SigmoidMatrix()
    mods = _one_step(model, torch.rand(8, 20)).trace().modules
    assert mods[["ord", "name", "type"]].values.tolist() == [
        [0, "", "SigmoidMatrix"],
        [1, "<root>.W@matmul", "functional.matmul"],
        [2, "<root>@sigmoid", "functional.sigmoid"],
    ]
    assert mods.activation.fillna("-").tolist() == ["-", "-", "sigmoid"]
    info = json.loads(mods["info"][1])
    assert (info["fan_in"], info["fan_out"], info["param"]) == (20, 5, "<root>.W")
    assert info["sw2"] == pytest.approx(20 * float(model.W.detach().var()), rel=1e-6)
    assert json.loads(mods["info"][2])["theory"] == "sigmoid"


class Loop(nn.Module):
    """A functional MLP in a loop: bias adds, F.relu between nn.Linear children, a leaky ReLU
    with its own slope, two tanh calls."""

    def __init__(self):
        super().__init__()
        self.ws = nn.ParameterList([nn.Parameter(torch.randn(6, 6) * 0.4) for _ in range(2)])
        self.b = nn.Parameter(torch.randn(6) * 0.3)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.tanh(x @ self.ws[0] + self.b)
        x = x.tanh() @ self.ws[1]
        return self.fc(F.leaky_relu(x, 0.2))


def test_loops_bias_adds_and_activation_parameters():
    torch.manual_seed(0)
    model = Loop()
    x = torch.randn(10, 6)
    mon = _one_step(model, x)
    mods = mon.trace().modules
    # functional layers in forward order, after the module that ran before them (the root)
    assert mods.name.tolist() == [
        "", "ws.0@matmul", "<root>@tanh", "<root>@tanh#2", "ws.1@matmul", "<root>@leaky_relu",
        "ws", "fc",
    ]  # fmt: skip
    infos = {n: json.loads(i) for n, i in zip(mods.name, mods["info"], strict=True)}
    assert infos["ws.0@matmul"]["sb2"] == pytest.approx(float(model.b.detach().var()), rel=1e-6)
    assert infos["ws.1@matmul"]["sb2"] == 0.0
    assert infos["<root>@leaky_relu"]["act_params"] == {"negative_slope": 0.2}
    f = mon.frame()
    z = torch.tanh(torch.tanh(x @ model.ws[0] + model.b)) @ model.ws[1]
    slope = torch.where(z > 0, 1.0, 0.2)
    assert value(f, "<root>@leaky_relu", "dphi_mean") == pytest.approx(float(slope.mean()))
    assert {"fc", "<root>@tanh#2"} <= set(f[f.quantity == "gain"].module)


def test_the_activation_after_a_functional_convolution_counts_dead_channels():
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.k = nn.Parameter(torch.ones(4, 2, 3, 3))
            self.c = nn.Parameter(torch.tensor([0.0, 0.0, 0.0, -1e3]))  # channel 3 is dead

        def forward(self, x):
            return F.relu(F.conv2d(x, self.k, self.c)).mean()

    mon = _one_step(Conv(), torch.rand(2, 2, 6, 6), loss_fn=lambda out: out)
    f = mon.frame()
    assert value(f, "<root>@relu", "dead_frac") == 0.25  # channels, not the last dimension
    info = json.loads(mon.trace().modules.set_index("name")["info"]["<root>.k@conv2d"])
    assert (info["fan_in"], info["fan_out"], info["sb2"]) == (18, 36, pytest.approx(250000.0))


def test_a_model_with_nothing_measurable_says_so_in_the_trace():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.g = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return (x * self.g).exp()

    meta = _one_step(Scale(), torch.randn(4, 3)).trace().meta
    assert meta["measurable"] is False
    assert meta["measurable_reason"].startswith("no layer of Scale received a backward signal")
    torch.manual_seed(0)
    ok = _one_step(SigmoidMatrix(), torch.rand(2, 20)).trace().meta
    assert ok["measurable"] is True


def test_no_function_mode_is_left_behind_after_an_exception_in_a_functional_forward():
    class Bad(SigmoidMatrix):
        def forward(self, x):
            torch.sigmoid(x @ self.W.T)
            raise RuntimeError("boom")

    model = Bad()
    with Monitor(model, every=1):
        with pytest.raises(RuntimeError, match="boom"):
            model(torch.rand(2, 20))
        assert torch._C._len_torch_function_stack() == 0
    assert torch._C._len_torch_function_stack() == 0


def test_a_pure_sequential_of_torch_modules_gets_no_function_mode():
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    with Monitor(model, every=1) as mon:
        assert mon._fn is None
    inner = nn.Sequential(nn.Linear(3, 3))
    with Monitor(nn.Sequential(inner, SigmoidMatrix(3, 2)), every=1) as mon:
        assert mon._fn is not None and mon._fn.record == {"1"}


def test_a_reattached_monitor_finds_the_functional_layers_again_once():
    torch.manual_seed(0)
    model = SigmoidMatrix()
    mon = Monitor(model, every=1)
    for _ in range(2):
        with mon:
            model(torch.rand(3, 20)).sum().backward()
            mon.step()
    f = mon.frame()
    assert sorted(f.step.unique()) == [0, 1]
    for step in (0, 1):
        at = f[f.step == step]
        assert value(at, "<root>.W@matmul", "grad_norm", "weight") == value(
            at, "", "grad_norm", "W"
        )
    assert mon.trace().modules.name.tolist() == ["", "<root>.W@matmul", "<root>@sigmoid"]


def test_a_single_torch_layer_as_the_model_is_measurable():
    meta = _one_step(nn.Linear(3, 2), torch.randn(4, 3)).trace().meta
    assert meta["measurable"] is True
