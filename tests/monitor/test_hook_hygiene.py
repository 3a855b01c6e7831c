"""No hook of ours survives detach: for every probe alone and all together, whether the user's
forward, backward or optimizer step raised (or nothing did)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic import Monitor
from gradmedic.monitor.hooks import Hooks
from monitor_util import module_hooks

OFF = dict(weights=False, signal=False, activations=False, rnn_time=False, nonfinite=False)
PROBES = {
    "params": dict(weights=True),
    "signal": dict(signal=True),
    "activations": dict(activations=True),
    "rnn": dict(rnn_time=True, rnn_hidden=True),
    "nonfinite": dict(nonfinite=True),
    "all": dict(
        weights=True, signal=True, activations=True, rnn_time=True, rnn_hidden=True, nonfinite=True
    ),
}
#: probes that register tensor hooks during the step (the others use module hooks only)
TENSOR_HOOKING = {"signal", "rnn", "all"}


class Fail(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("backward failed")


class Net(nn.Module):
    """Linear -> Tanh -> GRU -> Linear; ``where`` says which user code raises."""

    def __init__(self, where: str):
        super().__init__()
        self.where = where
        self.inp, self.act = nn.Linear(3, 4), nn.Tanh()
        self.rnn, self.head = nn.GRU(4, 4, batch_first=True), nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.rnn(self.act(self.inp(x)))
        if self.where == "forward":
            raise RuntimeError("forward failed")
        h = self.head(out[:, -1])
        return Fail.apply(h) if self.where == "backward" else h


class IdleSGD(torch.optim.SGD):
    """Leaves the parameters as they are, so the retained graph can be run again."""

    def step(self, closure=None):
        return None


class FailingSGD(torch.optim.SGD):
    def step(self, closure=None):
        raise RuntimeError("step failed")


@pytest.fixture
def spied(monkeypatch):
    """Every tensor our hooks were put on, and a list that grows each time one of them fires."""
    tensors: list[torch.Tensor] = []
    fired: list[int] = []
    register = Hooks.tensor

    def spy(self, t, fn):
        tensors.append(t)

        def counted(g):
            fired.append(1)
            return fn(g)

        register(self, t, counted)

    monkeypatch.setattr(Hooks, "tensor", spy)
    return tensors, fired


def _fire(tensors: list[torch.Tensor]) -> None:
    """Run backward from each tensor (its graph is retained): live hooks on it would fire."""
    for t in tensors:
        if t.requires_grad:
            try:  # hooks on t run before the failing backward of the model's last op
                torch.autograd.backward(t, torch.ones_like(t), retain_graph=True)
            except RuntimeError as exc:
                assert str(exc) == "backward failed"


def _train_one_step(where: str, flags: dict) -> tuple[Monitor, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = Net(where)
    opt = (FailingSGD if where == "step" else IdleSGD)(model.parameters(), lr=0.1)
    mon = Monitor(model, optimizer=opt, every=1, **{**OFF, **flags})
    try:
        with mon:
            opt.zero_grad()
            model(torch.randn(2, 5, 3)).sum().backward(retain_graph=True)
            opt.step()
    except RuntimeError as exc:
        assert str(exc) == f"{where} failed"
    else:
        assert where == "none"
    return mon, model, opt


@pytest.mark.parametrize("where", ["none", "forward", "backward", "step"])
@pytest.mark.parametrize("probe", list(PROBES))
def test_no_hook_of_ours_is_left_after_detach(probe, where, spied):
    tensors, fired = spied
    mon, model, opt = _train_one_step(where, PROBES[probe])
    assert len(mon._hooks) == 0
    assert module_hooks(model) == 0
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    if probe in TENSOR_HOOKING:  # the spy saw the hooks of the step (the check is not empty)
        assert tensors
    assert all(not t._backward_hooks for t in tensors)
    n = len(fired)
    _fire(tensors)
    assert len(fired) == n  # none of ours fires any more


@pytest.mark.parametrize("probe", sorted(TENSOR_HOOKING))
def test_the_firing_check_sees_live_hooks(probe, spied):
    """Control: while the step is open, backward from the hooked tensors does reach our hooks."""
    tensors, fired = spied
    model = Net("none")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer=opt, every=1, **{**OFF, **PROBES[probe]}):
        model(torch.randn(2, 5, 3)).sum().backward(retain_graph=True)
        n = len(fired)
        assert n > 0
        _fire(tensors)
        assert len(fired) > n
        opt.step()
    assert len(fired) > 0


class FunctionalNet(nn.Module):
    """Bare parameters and functional calls inside a block with a child: the functional
    recorder (a torch function mode) and the watched block's hooks are live on the step."""

    def __init__(self, where: str):
        super().__init__()
        self.where = where
        self.w = nn.Parameter(torch.randn(4, 3))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.tanh(x @ self.w.T)
        if self.where == "forward":
            raise RuntimeError("forward failed")
        h = self.head(nn.functional.relu(h))
        return Fail.apply(h) if self.where == "backward" else h


@pytest.mark.parametrize("where", ["none", "forward", "backward", "step"])
def test_functional_recorder_and_root_hooks_leave_nothing_after_detach(where, spied):
    tensors, fired = spied
    torch.manual_seed(0)
    model = FunctionalNet(where)
    opt = (FailingSGD if where == "step" else IdleSGD)(model.parameters(), lr=0.1)
    mon = Monitor(model, optimizer=opt, every=1)
    try:
        with mon:
            assert mon._fn is not None
            opt.zero_grad()
            model(torch.randn(5, 3)).sum().backward(retain_graph=True)
            opt.step()
    except RuntimeError as exc:
        assert str(exc) == f"{where} failed"
        assert torch._C._len_torch_function_stack() == 0  # popped even when forward raised
    if where != "forward":
        assert tensors  # the step's hooks existed (the check below is not empty)
    assert len(mon._hooks) == 0 and module_hooks(model) == 0
    assert torch._C._len_torch_function_stack() == 0
    assert all(not t._backward_hooks for t in tensors)
    n = len(fired)
    _fire(tensors)
    assert len(fired) == n
