"""Parameter gradient norms, parameter norms and update ratios (probes/params.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradmedic import Monitor
from monitor_util import mlp, value


def test_parameter_norms_match_a_plain_loop():
    model = mlp()
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    with Monitor(model) as mon:
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
    f = mon.frame()
    for name, p in model.named_parameters():
        mod, pname = name.rsplit(".", 1)
        assert value(f, mod, "grad_norm", pname) == pytest.approx(float(p.grad.norm()), rel=1e-6)
        assert value(f, mod, "param_norm", pname) == pytest.approx(
            float(p.detach().norm()), rel=1e-6
        )
    w, b = model[0].weight.grad, model[0].bias.grad
    agg = math.sqrt(float(w.norm()) ** 2 + float(b.norm()) ** 2)
    assert value(f, "0", "grad_norm") == pytest.approx(agg, rel=1e-6)


def test_gradient_accumulation_records_once_per_optimizer_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer=opt, every=1) as mon:
        for _ in range(2):
            for _ in range(3):
                model(torch.randn(8, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
    f = mon.frame()
    assert sorted(f.step.unique()) == [0, 1]
    assert (f[(f.quantity == "update_ratio")].value > 0).all()
    assert value(f[f.step == 0], "0", "grad_norm", "weight") > 0


def test_update_ratio_is_lr_times_grad_over_weight_for_sgd():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer=opt) as mon:
        model(torch.randn(4, 5)).sum().backward()
        g, w = model.weight.grad.norm().item(), model.weight.norm().item()
        opt.step()
    f = mon.frame()
    assert value(f, "", "update_ratio", "weight") == pytest.approx(0.1 * g / w, rel=1e-5)


def test_tied_weights_and_frozen_and_unused_parameters():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight  # tied
            self.frozen = nn.Linear(4, 4)
            self.frozen.requires_grad_(False)
            self.unused = nn.Linear(4, 4)

        def forward(self, x):
            return self.b(self.frozen(self.a(x)))

    model = Tied()
    with Monitor(model) as mon:
        out = model(torch.randn(3, 4))
        out = out + model.a(out)  # a is called twice
        out.sum().backward()
        mon.step()
    f = mon.frame()
    g = f[(f.quantity == "grad_norm") & (f.parameter != "")]
    assert sorted(zip(g.module, g.parameter, strict=True)) == [("a", "weight")]
    assert value(f, "a", "grad_norm", "weight") == pytest.approx(
        float(model.a.weight.grad.norm()), rel=1e-6
    )
    assert value(f, "a", "calls") == 2.0


def test_large_finite_gradients_are_not_called_nonfinite():
    """Exploding is not non-finite: norms above float32's sum-of-squares range (~1e19) stay
    finite (float64 where needed), on recorded and unrecorded steps alike."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 300), nn.Linear(300, 1))
    with Monitor(model, every=2) as mon:
        for _ in range(3):
            model.zero_grad()
            (model(torch.randn(4, 300)).sum() * 1e18).backward()
            mon.step()
    assert mon.events == []
    f = mon.frame()
    total = f[f.quantity == "grad_norm_total"].value.to_numpy()
    ref = float(torch.linalg.vector_norm(model[0].weight.grad.double()))
    assert np.isfinite(total).all() and total.max() > 1e19
    assert value(f[f.step == 2], "0", "grad_norm", "weight") == pytest.approx(ref, rel=1e-6)
