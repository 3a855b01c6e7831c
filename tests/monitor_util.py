"""Helpers shared by the Monitor tests (tests/monitor/...): frame lookup, small models and a
module that turns NaN at a given call."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn


def value(frame: pd.DataFrame, module: str, quantity: str, parameter: str = "") -> float:
    """The one value of ``quantity`` at ``module`` (and ``parameter``); fails unless unique."""
    f = frame[
        (frame.module == module) & (frame.quantity == quantity) & (frame.parameter == parameter)
    ]
    assert len(f) == 1, (module, quantity, len(f))
    return float(f.value.iloc[0])


def mlp() -> nn.Sequential:
    """10 -> 16 -> 16 -> 16 -> 3 with tanh, relu and sigmoid, seeded."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(10, 16),
        nn.Tanh(),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Linear(16, 16),
        nn.Sigmoid(),
        nn.Linear(16, 3),
    )


def module_hooks(model: nn.Module) -> int:
    """Forward, forward-pre, backward and backward-pre hooks on all modules of ``model``."""
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        n += len(m._backward_pre_hooks)
    return n


class NaNAfter(nn.Module):
    """Identity until ``calls`` reaches ``start``, then NaN."""

    def __init__(self, start: int):
        super().__init__()
        self.start, self.calls = start, 0

    def forward(self, x):
        out = x * float("nan") if self.calls >= self.start else x * 1.0
        self.calls += 1
        return out
