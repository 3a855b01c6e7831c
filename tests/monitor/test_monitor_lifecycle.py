"""The Monitor's lifecycle: the per-step plan, schedules, module selection, errors, and training left bit-identical."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic import Monitor, Schedule
from gradmedic.errors import ConfigError, ModelError
from monitor_util import mlp, module_hooks


def test_unrecorded_steps_run_without_module_hooks():
    model = mlp()
    with Monitor(model, every=2) as mon:
        assert module_hooks(model) > 0  # step 0 is recorded
        model(torch.randn(4, 10)).sum().backward()
        mon.step()
        assert module_hooks(model) == 0  # step 1 is not
        model(torch.randn(4, 10)).sum().backward()
        mon.step()
        assert module_hooks(model) > 0


def _train(model_fn, monitored: bool, steps: int = 6, **kw):
    torch.manual_seed(0)
    model = model_fn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    losses = []
    mon = Monitor(model, optimizer=opt, every=2, **kw).attach() if monitored else None
    for _ in range(steps):
        x = torch.randn(16, 10, generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if mon is not None:
        mon.detach()
    return losses, [p.detach().clone() for p in model.parameters()]


def _resmlp():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(10, 16)
            self.body = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16), nn.ReLU(inplace=True))
            self.out = nn.Linear(16, 3)

        def forward(self, x):
            h = self.inp(x)
            h = h + self.body(h)
            return self.out(h)

    return Res()


def _functional():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Parameter(torch.randn(16, 10) * 0.3)
            self.b1 = nn.Parameter(torch.zeros(16))
            self.w2 = nn.Parameter(torch.randn(3, 16) * 0.3)

        def forward(self, x):
            h = torch.tanh(x @ self.w1.T + self.b1)
            return nn.functional.linear(nn.functional.relu(h), self.w2)

    return Functional()


def _attention():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(10, 32)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.out = nn.Linear(8, 3)

        def forward(self, x):
            h = self.inp(x).view(-1, 4, 8)
            a, _ = self.attn(h, h, h)
            return self.out(torch.sigmoid(a + h).mean(1))

    return Attn()


@pytest.mark.parametrize("model_fn", [mlp, _resmlp, _functional, _attention])
def test_monitoring_does_not_change_training(model_fn):
    plain_losses, plain_params = _train(model_fn, False)
    mon_losses, mon_params = _train(model_fn, True, rnn_hidden=True)
    assert mon_losses == plain_losses
    for a, b in zip(plain_params, mon_params, strict=True):
        assert torch.equal(a, b)


def test_schedule_and_module_selection():
    model = mlp()
    with Monitor(model, every=3, modules=[nn.Linear]) as mon:
        for _ in range(7):
            model(torch.randn(4, 10)).sum().backward()
            mon.step()
    f = mon.frame()
    assert sorted(f[f.quantity == "gain"].step.unique()) == [0, 3, 6]  # every step: curves
    assert set(f[f.quantity == "gain"].module) == {"0", "2", "4", "6"}
    with Monitor(model, modules="4") as mon:
        model(torch.randn(4, 10)).sum().backward()
        mon.step()
    assert set(mon.frame().query("quantity == 'gain'").module) == {"4"}
    assert [s for s in range(9) if Schedule(steps=[1, 4])(s)] == [1, 4]


def test_bad_input_errors_say_what_to_do():
    with pytest.raises(ModelError) as e:
        Monitor(nn.ReLU()).attach()
    assert str(e.value) == (
        "ReLU has no parameters; the Monitor measures gradients of trainable parameters, "
        "so give it a model that has some"
    )
    with pytest.raises(ConfigError, match=r"modules='nope\*' matches no module of Sequential"):
        Monitor(mlp(), modules="nope*").attach()
    mon = Monitor(mlp(), optimizer=torch.optim.SGD(mlp().parameters(), lr=0.1))
    with pytest.raises(ConfigError, match="ends steps by itself"):
        mon.step()
    assert module_hooks(mon.model) == 0
