"""Closed-form activation derivatives against autograd, for every activation type we know."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic.nn.activations import ACTIVATION_TYPES, derivative_for, is_activation

MODULES = [
    nn.Sigmoid(),
    nn.Tanh(),
    nn.ReLU(),
    nn.ReLU6(),
    nn.LeakyReLU(0.2),
    nn.PReLU(),
    nn.ELU(0.5),
    nn.CELU(0.7),
    nn.SELU(),
    nn.GELU(),
    nn.SiLU(),
    nn.Softsign(),
    nn.Hardtanh(-2.0, 2.0),
    nn.Hardsigmoid(),
    nn.Hardswish(),
    nn.Mish(),
    nn.Softplus(beta=2.0),
    nn.RReLU(),
    nn.LogSigmoid(),
    nn.Tanhshrink(),
    nn.Softshrink(0.5),
    nn.Hardshrink(0.5),
    nn.Threshold(0.1, 0.0),
]


def test_every_known_type_is_covered():
    assert {type(m) for m in MODULES} >= set(ACTIVATION_TYPES)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: type(m).__name__)
def test_derivative_matches_autograd(module):
    module.eval()  # RReLU: the mean slope
    x = torch.linspace(-6, 6, 1201, dtype=torch.float64).requires_grad_(True)
    x = x[(x - x.round()).abs() > 1e-6]  # away from kinks at integers and half-integers
    x = x[((x.abs() - 0.5).abs() > 1e-6) & ((x - 0.1).abs() > 1e-6)].detach().requires_grad_(True)
    (g,) = torch.autograd.grad(module.double()(x).sum(), x)
    d = derivative_for(module)
    assert is_activation(module)
    assert torch.allclose(d.fn(x.detach()), g, atol=1e-6)
    assert g.abs().max() <= d.max_slope + 1e-3
    if d.active is not None:
        assert torch.equal(d.active(x.detach()), g == 1)
