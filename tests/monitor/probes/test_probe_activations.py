"""Activation statistics (probes/activations.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic import Monitor
from monitor_util import value


def test_sigmoid_at_zero_has_mean_derivative_one_quarter():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
    with Monitor(model) as mon:
        model(torch.randn(8, 4)).sum().backward()
        mon.step()
    f = mon.frame()
    assert value(f, "1", "dphi_mean") == pytest.approx(0.25, abs=1e-7)
    assert value(f, "1", "dphi_sq_mean") == pytest.approx(0.0625, abs=1e-7)
    assert value(f, "1", "saturated_frac") == 0.0
    assert value(f, "1", "act_mean") == pytest.approx(0.5, abs=1e-7)


@pytest.mark.parametrize("inplace", [False, True])
def test_relu_with_negative_preactivations_is_dead(inplace):
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(inplace=inplace), nn.Linear(16, 2))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    x = torch.randn(32, 4)
    with Monitor(model) as mon:
        model(x).sum().backward()
        mon.step()
    f = mon.frame()
    assert value(f, "1", "dead_frac") == 1.0
    assert value(f, "1", "saturated_frac") == 1.0
    assert value(f, "1", "dphi_mean") == 0.0


def test_dead_units_of_a_feature_map_are_channels():
    """A 1x1 conv + ReLU on images that are zero outside a central patch: every channel is
    alive (the patch), although 75% of (channel, position) pairs are zero everywhere."""
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[3].fill_(-1.0)  # channel 3: negative everywhere -> dead
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 1))
    x = torch.zeros(16, 1, 8, 8)
    x[:, :, 2:6, 2:6] = torch.rand(16, 1, 4, 4) + 0.1
    with Monitor(model, every=1) as mon:
        model(x).sum().backward()
        mon.step()
    assert value(mon.frame(), "1", "dead_frac") == 0.25
