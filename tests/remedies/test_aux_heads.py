"""Auxiliary heads (GoogLeNet): weighted extra losses in training only, a shorter gradient
path to the early layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradmedic.remedies import AuxiliaryHeads, add_aux_heads, apply
from gradmedic.zoo import build_model, load_data


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_aux_heads_add_weighted_losses_in_training_only(digits):
    # theory.md E7: 20-layer tanh, default init, heads after layers 7 and 14 (weight 0.3)
    m = build_model("mlp:depth=20,width=64,act=tanh", digits.info, seed=0)
    a, rep = add_aux_heads(m, at="7+14")
    assert isinstance(a, AuxiliaryHeads) and a.taps == ["13", "27"]
    assert rep.details["aux_at"] == [7, 14]
    x, y = digits.fixed_batch(128)
    a.train()
    out = a(x)
    assert len(a.aux_outputs) == 2
    expect = 0.3 * (F.cross_entropy(a.aux_outputs[0], y) + F.cross_entropy(a.aux_outputs[1], y))
    torch.testing.assert_close(a.aux_loss(F.cross_entropy, y), expect)
    torch.testing.assert_close(out, m(x))
    (F.cross_entropy(out, y) + a.aux_loss(F.cross_entropy, y)).backward()
    F.cross_entropy(m(x), y).backward()
    g_aux, g_plain = float(a.model[0].weight.grad.norm()), float(m[0].weight.grad.norm())
    assert g_aux > 100 * g_plain  # measured 262x: the path to a loss shrinks from 20 to 7
    a.eval()
    a(x)
    assert a.aux_outputs == [] and float(a.aux_loss(F.cross_entropy, y)) == 0.0


def test_aux_heads_spec_takes_one_layer_or_several(digits):
    m = build_model("mlp:depth=20,width=16,act=tanh", digits.info, seed=0)
    _, rep = apply(m, "add-aux-heads(at=7)")  # an int from the spec
    assert rep.details["aux_at"] == [7]
    _, rep = apply(m, "add-aux-heads(0.5, at=5+10)")  # weight first, as positional
    assert rep.details["aux_at"] == [5, 10] and rep.spec == "add-aux-heads(weight=0.5)"
