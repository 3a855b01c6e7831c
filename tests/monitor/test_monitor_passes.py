"""A step that never reached the optimizer does not bleed into the next (monitor/passes.py).

Six scenarios: an exception in the model's forward, in its backward or in ``optimizer.step()``,
each with the optimizer given to the Monitor (steps end at ``optimizer.step()``) and without
(``mon.step()`` after it). The loop catches the exception and trains on; every row recorded
afterwards equals the row of a clean run that never met the bad batch. A control shows the
comparison would fail if nothing were discarded.
"""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from torch import nn

from gradmedic import Monitor
from gradmedic.monitor.passes import PassGuard


class Fail(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("backward failed")


class Net(nn.Module):
    """Linear -> Tanh -> Linear; ``fail`` makes the next call raise in forward (after the
    first layer ran) or in backward (half way: the head's and Tanh's hooks have fired)."""

    def __init__(self):
        super().__init__()
        self.l1, self.act, self.l2 = nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)
        self.fail: str | None = None

    def forward(self, x):
        h = self.l1(x)
        fail, self.fail = self.fail, None
        if fail == "forward":
            raise RuntimeError("forward failed")
        if fail == "backward":
            h = Fail.apply(h)
        return self.l2(self.act(h))


class FlakySGD(torch.optim.Optimizer):
    """Plain SGD whose next step raises when ``fail`` is set (after the step pre-hooks ran).
    Not a subclass of ``torch.optim.SGD``: once an SGD exists, torch wraps ``SGD.step`` with
    the hook runner too, and ``super().step()`` would run the step hooks twice."""

    def __init__(self, params, lr: float):
        super().__init__(params, {"lr": lr})
        self.fail = False

    @torch.no_grad()
    def step(self, closure=None):
        if self.fail:
            self.fail = False
            raise RuntimeError("step failed")
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


def _batches():
    g = torch.Generator().manual_seed(3)
    return [
        (torch.randn(5, 6, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(4)
    ]


def _run(where: str | None, with_opt: bool, *, discard_in_except: bool = False) -> pd.DataFrame:
    """Steps on batches 0, 1, 2; with ``where``, a failing attempt on batch 3 comes between
    the first and the second step."""
    torch.manual_seed(0)
    model = Net()
    opt = FlakySGD(model.parameters(), lr=0.1)
    b = _batches()
    plan = [b[0], b[3], b[1], b[2]] if where else [b[0], b[1], b[2]]
    with Monitor(model, optimizer=opt if with_opt else None, every=1) as mon:
        for i, (x, y) in enumerate(plan):
            bad = where is not None and i == 1
            try:
                opt.zero_grad()
                if bad and where in ("forward", "backward"):
                    model.fail = where
                if bad and where == "loss":
                    model(x)
                    raise ValueError("loss failed")
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                mon.observe(loss)
                opt.fail = bad and where == "step"
                opt.step()
                if not with_opt:
                    mon.step()
            except (RuntimeError, ValueError) as exc:
                assert bad and str(exc) == f"{where} failed"
                if discard_in_except:
                    mon.discard_step()
    return mon.frame()


@pytest.mark.parametrize("with_opt", [True, False], ids=["optimizer", "mon.step"])
@pytest.mark.parametrize("where", ["forward", "backward", "step"])
def test_an_aborted_step_leaves_the_next_record_as_a_clean_run_has_it(where, with_opt):
    clean = _run(None, with_opt)
    faulty = _run(where, with_opt)
    assert sorted(faulty.step.unique()) == [0, 1, 2]
    assert "calls" not in set(faulty.quantity)  # no module ran twice in a recorded step
    pd.testing.assert_frame_equal(faulty, clean)


@pytest.mark.parametrize("where", ["forward", "backward", "step"])
def test_control_without_the_guard_the_aborted_step_bleeds(where, monkeypatch):
    """The comparison above can fail: with the guard switched off the aborted attempt's
    forward calls (and signals) are folded into step 1."""
    monkeypatch.setattr(PassGuard, "begin_forward", lambda self: False)
    clean = _run(None, True)
    faulty = _run(where, True)
    calls = faulty[(faulty.quantity == "calls") & (faulty.step == 1)]
    assert set(calls.module) >= {"l1"} and set(calls.value) == {2.0}
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(faulty, clean)


def test_an_exception_in_the_loss_needs_discard_step():
    """Between a finished forward and the backward nothing tells an abandoned forward from a
    model called twice (siamese): ``discard_step()`` in the ``except`` clause says it."""
    clean = _run(None, True)
    kept = _run("loss", True)
    assert kept[(kept.quantity == "calls") & (kept.step == 1)].value.tolist() == [2.0] * 3
    pd.testing.assert_frame_equal(_run("loss", True, discard_in_except=True), clean)


def test_accumulation_and_a_second_input_stay_in_the_step():
    """Two forward/backward passes before one optimizer step (gradient accumulation), and
    two forwards before one backward, are one step: every module ran twice."""
    torch.manual_seed(0)
    model = Net()
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (x0, y0), (x1, y1), *_ = _batches()
    sq = 0.0  # reference: ||dL/dy|| of the head over both passes, plain autograd
    for x, y in ((x0, y0), (x1, y1)):
        out = twin(x)
        out.retain_grad()
        nn.functional.cross_entropy(out, y).backward()
        sq += float(out.grad.double().square().sum())
    with Monitor(model, optimizer=opt, every=1) as mon:
        opt.zero_grad()
        for x, y in ((x0, y0), (x1, y1)):
            nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        (model(x0).sum() + model(x1).sum()).backward()
        opt.step()
    f = mon.frame()
    calls = f[f.quantity == "calls"]
    assert sorted(calls.step) == [0, 0, 0, 1, 1, 1] and set(calls.value) == {2.0}
    s0 = f[(f.step == 0) & (f.quantity == "signal_out") & (f.module == "l2")].value.item()
    assert s0 == pytest.approx(sq**0.5, rel=1e-6)


def test_discard_step_is_safe_at_any_time_and_keeps_the_step_number():
    model = Net()
    with Monitor(model, every=1) as mon:
        mon.discard_step()
        model(torch.randn(2, 6)).sum().backward()
        mon.discard_step()
        assert mon.step_index == 0
        model(torch.randn(2, 6)).sum().backward()
        mon.step()
        mon.discard_step()
    assert sorted(mon.frame().step.unique()) == [0]
