"""Non-finite values: the first bad module and the unrecorded-step sentinel (probes/nonfinite.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic import GradmedicError, Monitor
from monitor_util import NaNAfter


def test_module_that_starts_emitting_nan_at_step_3_is_named_at_step_3():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), NaNAfter(3), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, optimizer=opt, every=1) as mon:
        for _ in range(5):
            opt.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            opt.step()
    fwd = [e for e in mon.events if e["kind"] == "nonfinite_forward"]
    assert fwd[0] == {
        "step": 3,
        "kind": "nonfinite_forward",
        "module": "2",
        "detail": "first module whose output is NaN/Inf",
    }
    bwd = [e for e in mon.events if e["kind"] == "nonfinite_backward"]
    assert bwd[0]["step"] == 3 and bwd[0]["module"] == "2"


def test_nan_on_an_unrecorded_step_is_dated_exactly_and_named_at_the_next_record():
    model = nn.Sequential(nn.Linear(4, 4), NaNAfter(3), nn.Linear(4, 1))
    with Monitor(model, every=5) as mon:
        for _ in range(7):
            model.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            mon.step()
    kinds = [(e["step"], e["kind"], e["module"]) for e in mon.events]
    assert kinds[0] == (3, "nonfinite_gradient", None)
    assert (5, "nonfinite_forward", "1") in kinds
    f = mon.frame()
    assert f[f.quantity == "nonfinite_gradient"].step.tolist() == [3]


def test_nan_after_the_last_recorded_step_is_reported_at_detach():
    model = nn.Sequential(nn.Linear(4, 4), NaNAfter(2), nn.Linear(4, 1))
    with Monitor(model, every=100) as mon:
        for _ in range(4):
            model.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            mon.step()
        assert mon.events == []  # nothing read yet: no host sync on unrecorded steps
    assert [(e["step"], e["kind"]) for e in mon.events] == [(2, "nonfinite_gradient")]


def test_halt_on_nonfinite_raises_the_root_error():
    model = nn.Sequential(nn.Linear(4, 4), NaNAfter(0), nn.Linear(4, 1))
    with Monitor(model, halt_on_nonfinite=True) as mon:
        model(torch.randn(2, 4)).sum().backward()
        with pytest.raises(GradmedicError, match="non-finite value at step 0 in 1"):
            mon.step()


def test_sentinel_catches_a_nan_loss_with_observed_losses():
    model = nn.Sequential(nn.Linear(4, 4), NaNAfter(1), nn.Linear(4, 1))
    with Monitor(model, every=100) as mon:
        for _ in range(3):
            model.zero_grad()
            loss = model(torch.randn(8, 4)).sum()
            loss.backward()
            mon.step(loss)
    assert [(e["step"], e["kind"]) for e in mon.events] == [(1, "nonfinite_gradient")]


def test_half_precision_outputs_with_a_large_sum_are_finite():
    lin = nn.Linear(64, 2048).half()
    with torch.no_grad():
        lin.weight.fill_(0.05)
        lin.bias.zero_()
    model = nn.Sequential(lin)
    with Monitor(model, every=1) as mon:
        out = model(torch.ones(16, 64, dtype=torch.half))
        assert float(out.detach().float().sum()) > 65504  # a half-precision sum overflows
        out.float().mean().backward()
        mon.step()
    assert mon.events == []


def test_nan_in_a_middle_parameter_on_an_unrecorded_step_is_caught():
    """A NaN born in backward inside the body reaches no end parameter: every gradient is
    checked, not only the first and last."""

    class Poison(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.body = nn.Linear(4, 4)
            self.head = nn.Linear(4, 1)
            self.calls = 0

        def forward(self, x):
            h = self.body(x)
            if self.calls == 2:
                h = Poison.apply(h)  # NaN reaches body's gradients only
            self.calls += 1
            return self.head(h.detach() + h - h.detach()) * self.scale

    model = Net()
    with Monitor(model, every=10) as mon:
        for _ in range(4):
            model.zero_grad()
            model(torch.randn(2, 4)).sum().backward()
            mon.step()
    assert [(e["step"], e["kind"]) for e in mon.events] == [(2, "nonfinite_gradient")]
