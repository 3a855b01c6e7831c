"""Structural remedies: norms after hidden layers and residual blocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradmedic.remedies import (
    Residual,
    add_norm,
    add_residual,
    apply,
    zero_init_residual_,
)
from gradmedic.zoo import build_model, load_data


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_add_norm_inserts_after_hidden_layers_only(digits):
    m = build_model("mlp:depth=6,width=16,act=sigmoid", digits.info, seed=0)
    new, rep = add_norm(m, "batch")
    bns = [mod for mod in new if isinstance(mod, nn.BatchNorm1d)]
    assert len(bns) == 5 and len(list(m)) == 11 and len(list(new)) == 16
    assert rep.changes[0] == "after 0 (Linear): insert BatchNorm1d(16)"
    assert isinstance(new[-1], nn.Linear) and new[-1].out_features == 10
    new_l, _ = add_norm(m, "layer")
    assert sum(isinstance(mod, nn.LayerNorm) for mod in new_l) == 5
    assert new(torch.randn(8, 64)).shape == (8, 10)


def test_add_residual_with_zero_init_is_identity_and_restores_signal(digits):
    m = build_model("mlp:depth=10,width=16,act=sigmoid", digits.info, seed=0)
    new, rep = add_residual(m)
    blocks = [mod for mod in new if isinstance(mod, Residual)]
    assert len(blocks) == 4  # 8 same-shape units, two per block
    assert rep.changes[0] == "wrap [1, 2, 3, 4] in Residual: y = x + branch(x)"
    zero_init_residual_(new)
    x = torch.randn(3, 16)
    torch.testing.assert_close(blocks[0](x), x)

    def signal_ratio(model: nn.Module) -> float:
        # ||dL/dh_1|| / ||dL/dh_L|| by autograd, h_1 = first Linear's output
        xb, yb = digits.fixed_batch(64)
        outs = {}
        model[0].register_forward_hook(lambda mod, i, o: outs.setdefault("h1", o))
        out = model(xb)
        g1, gl = torch.autograd.grad(F.cross_entropy(out, yb), [outs["h1"], out])
        return float(g1.norm() / gl.norm())

    assert signal_ratio(new) > 1e3 * signal_ratio(m)


def test_add_residual_block_size_is_bound_from_the_spec(digits):
    m = build_model("mlp:depth=10,width=16,act=sigmoid", digits.info, seed=0)
    new, _ = apply(m, "add-residual(block=4)")
    assert sum(isinstance(mod, Residual) for mod in new) == 2  # 8 units, four per block
