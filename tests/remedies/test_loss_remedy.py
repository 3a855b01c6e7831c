"""fix-loss: the fused loss is the same loss, stable at extreme logits, and refused when the
model does not end in a Sigmoid or Softmax."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.remedies import apply, fix_loss
from gradmedic.zoo import build_model, load_data


def test_fix_loss_sigmoid_bce_to_logits_is_same_loss_and_stable():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 1), nn.Sigmoid())
    new, loss = fix_loss(net, nn.BCELoss())
    assert isinstance(new[1], nn.Identity) and isinstance(loss, nn.BCEWithLogitsLoss)
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16, 1)).float()
    torch.testing.assert_close(loss(new(x), y), nn.BCELoss()(net(x), y))
    # at an extreme logit the unfused loss saturates (gradient 0); the fused one is exact
    z = torch.tensor([[-120.0]], requires_grad=True)
    (g_fused,) = torch.autograd.grad(loss(z, torch.ones(1, 1)), z)
    assert float(g_fused) == pytest.approx(-1.0)  # sigmoid(z) - y
    z2 = torch.tensor([[-120.0]], requires_grad=True)
    (g_unfused,) = torch.autograd.grad(nn.BCELoss()(torch.sigmoid(z2), torch.ones(1, 1)), z2)
    assert float(g_unfused) == 0.0


def test_fix_loss_softmax_nll_and_not_applicable():
    digits = load_data("digits")
    m = build_model("mlp:depth=3,width=8,final_act=softmax", digits.info, seed=0)
    new, rep = apply(m, "fix-loss", loss="nll")
    assert rep.loss == "ce" and rep.spec == "fix-loss(to=ce)"
    assert rep.changes[0] == "5: Softmax -> Identity (the model now outputs logits)"
    x, y = digits.fixed_batch(8)
    torch.testing.assert_close(F.cross_entropy(new(x), y), F.nll_loss(torch.log(m(x)), y))
    plain = build_model("mlp:depth=3,width=8,final_act=log_softmax", digits.info, seed=0)
    with pytest.raises(ConfigError) as e:
        apply(plain, "fix-loss")
    assert str(e.value).startswith(
        "remedy 'fix-loss' does not apply to Sequential: its last module is LogSoftmax, not a "
        "Sigmoid or Softmax to fuse into the loss; remedies that apply: swap-activation, "
        "add-norm, reinit"
    )
    with pytest.raises(ConfigError, match="fix-loss: to='bce-logits' does not match"):
        apply(m, "fix-loss(to=bce-logits)")
