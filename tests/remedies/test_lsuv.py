"""LSUV (Mishkin & Matas 2016): unit output std at every layer, and its input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic.errors import ConfigError, DataError, ModelError
from gradmedic.remedies import apply, lsuv_


def test_lsuv_unit_std_every_layer_one_rescale_for_bias_free_relu():
    # theory.md E8: 20-layer bias-free ReLU MLP, tol 0.1, max 10 tries
    torch.manual_seed(0)
    layers = []
    for _ in range(20):
        layers += [nn.Linear(64, 64, bias=False), nn.ReLU()]
    net = nn.Sequential(*layers)
    x = torch.randn(256, 64) * 5
    out = lsuv_(net, x)
    assert list(out) == [str(2 * i) for i in range(20)]
    assert all(abs(d["std"] - 1) < 0.1 for d in out.values())
    assert all(d["tries"] <= 1 for d in out.values())  # output std is 1-homogeneous in W
    with torch.no_grad():
        h = x
        for i in range(0, 40, 2):
            h = net[i](h)
            assert float(h.std()) == pytest.approx(1.0, abs=0.1)
            h = net[i + 1](h)


def test_lsuv_input_checks_name_the_fix():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(DataError, match="LSUV needs a batch of inputs: pass x=<tensor"):
        lsuv_(net, "not a tensor")
    with pytest.raises(ConfigError, match="LSUV tol must be a positive number, got 0"):
        lsuv_(net, torch.randn(8, 4), tol=0)
    with pytest.raises(
        ModelError, match=r"remedy 'reinit\(scheme=lsuv\)' does not apply to Sequential"
    ):
        lsuv_(nn.Sequential(nn.ReLU()), torch.randn(8, 4))
    # through the registry: the batch reaches LSUV as its keyword-only context
    torch.manual_seed(0)
    _, rep = apply(net, "reinit(scheme=lsuv,tol=0.05)", data_batch=(torch.randn(64, 4) * 4, None))
    assert list(rep.details["lsuv"]) == ["0", "2"]
    assert all(abs(d["std"] - 1) < 0.05 for d in rep.details["lsuv"].values())
