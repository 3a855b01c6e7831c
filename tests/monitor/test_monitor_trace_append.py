"""A Monitor never wipes a trace: re-attaching and new runs append, with continuing steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic import Monitor, read_trace
from gradmedic.errors import TraceError


def _steps(mon: Monitor, model: nn.Module, n: int) -> None:
    for _ in range(n):
        model(torch.randn(4, 3)).square().sum().backward()
        mon.step()


def test_reattaching_the_same_monitor_keeps_the_first_attachments_steps(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
    path = tmp_path / "trace.sqlite"
    mon = Monitor(model, trace=path, every=1)
    with mon:
        _steps(mon, model, 3)
    with mon:
        _steps(mon, model, 3)
    tr = read_trace(path)
    assert tr.steps == [0, 1, 2, 3, 4, 5]
    assert mon.trace().steps == tr.steps
    assert [r["first_step"] for r in tr.meta["runs"]] == [0, 3]


def test_a_new_monitor_continues_the_step_numbers_of_an_existing_trace(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 1))
    path = tmp_path / "trace.sqlite"
    with Monitor(model, trace=path, every=1) as mon:
        _steps(mon, model, 2)
    with Monitor(model, trace=path, every=1) as mon:
        assert mon.step_index == 2
        _steps(mon, model, 2)
    assert read_trace(path).steps == [0, 1, 2, 3]
    with Monitor(model, trace=path, every=1, overwrite=True) as mon:
        _steps(mon, model, 1)
    assert read_trace(path).steps == [0]


def test_two_monitors_on_one_trace_the_second_is_refused_and_holds_no_hook(tmp_path):
    model = nn.Sequential(nn.Linear(3, 1))
    path = tmp_path / "trace.sqlite"
    with Monitor(model, trace=path, every=1) as mon:
        other = Monitor(model, trace=path, every=1)
        with pytest.raises(TraceError, match=r"already being written by this process"):
            other.attach()
        _steps(mon, model, 1)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert read_trace(path).steps == [0]
