"""Remedies: each one's effect pinned to numbers, non-destructive by default, exact messages."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradmedic.diagnosis.findings import Prescription
from gradmedic.errors import ConfigError, DataError, UnknownNameError
from gradmedic.remedies import (
    REMEDIES,
    AuxiliaryHeads,
    Residual,
    add_aux_heads,
    add_norm,
    add_residual,
    applicable,
    apply,
    fix_loss,
    lsuv_,
    orthogonal_recurrent_,
    reinit,
    reinit_,
    replace_rnn,
    set_forget_bias_,
    swap_activation,
    swap_activation_,
    zero_init_residual_,
)
from gradmedic.zoo import build_model, load_data


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _mlp(digits, spec="mlp:depth=6,width=16,act=sigmoid"):
    return build_model(spec, digits.info, seed=0)


def _same_params(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- activation swap -----------------------------------------------------------------------------


def test_swap_activation_is_non_destructive_and_reports_each_module(digits):
    m = _mlp(digits, "mlp:depth=3,width=8,act=sigmoid,final_act=sigmoid")
    before = copy.deepcopy(m)
    new, rep = swap_activation(m, "leaky_relu")
    assert rep.changes == ["1: Sigmoid -> LeakyReLU(0.01)", "3: Sigmoid -> LeakyReLU(0.01)"]
    assert rep.spec == "swap-activation(to=leaky_relu,slope=0.01)"
    assert rep.warnings[0].startswith("kept output activation 5 (Sigmoid)")
    assert isinstance(m[1], nn.Sigmoid) and _same_params(m, before)
    assert isinstance(new[1], nn.LeakyReLU) and isinstance(new[5], nn.Sigmoid)
    x = torch.randn(4, 64)
    h = F.leaky_relu(m[0](x), 0.01)
    expect = torch.sigmoid(m[4](F.leaky_relu(m[2](h), 0.01)))
    torch.testing.assert_close(new(x), expect)


def test_swap_activation_selection_by_type_glob_and_params(digits):
    m = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
    _, rep = swap_activation(m, "elu", where="Sigmoid", alpha=0.5)
    assert rep.changes == ["3: Sigmoid -> ELU(0.5)"]
    _, rep = swap_activation(m, nn.GELU, where="1")
    assert rep.changes == ["1: Tanh -> GELU"]
    new = copy.deepcopy(m)
    rep = swap_activation_(new, "leaky_relu", slope=0.2, where=[nn.Tanh, nn.Sigmoid])
    assert rep.changes == ["1: Tanh -> LeakyReLU(0.2)", "3: Sigmoid -> LeakyReLU(0.2)"]
    assert new[3].negative_slope == 0.2


def test_swap_activation_bad_target_and_empty_selection_messages():
    m = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(UnknownNameError) as e:
        swap_activation(m, "leaky_rleu")
    assert str(e.value) == (
        "unknown activation to swap to 'leaky_rleu'; did you mean 'leaky_relu'? Valid names: "
        "elu, gelu, leaky_relu, relu, selu, sigmoid, silu, tanh"
    )
    with pytest.raises(ConfigError) as e:
        swap_activation(m, "relu", where="Sigmoid")
    assert str(e.value) == (
        "swap-activation found no activation matching where='Sigmoid'; activations in the "
        "model: 1 (Tanh)"
    )


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        return self.b(torch.sigmoid(self.a(x)))


class _Untraceable(_Functional):
    def forward(self, x):
        h = self.a(x)
        if h.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            h = F.tanh(h)
        return self.b(h)


def test_functional_activation_rewritten_by_fx_keeps_weights():
    torch.manual_seed(0)
    m = _Functional()
    new, rep = swap_activation(m, "relu")
    assert rep.changes == [
        "sigmoid (functional sigmoid) -> ReLU as module swapped_act_0 (torch.fx)"
    ]
    x = torch.randn(5, 4)
    torch.testing.assert_close(new(x), m.b(torch.relu(m.a(x))))
    assert isinstance(m(x), torch.Tensor)  # the original still uses sigmoid
    torch.testing.assert_close(m(x), m.b(torch.sigmoid(m.a(x))))


def test_untraceable_functional_activation_is_listed_not_changed():
    m = _Untraceable()
    _new, rep = swap_activation(m, "relu")
    assert rep.changes == []
    assert len(rep.warnings) == 1
    w = rep.warnings[0]
    assert w.startswith("not changed: F.tanh(...) in _Untraceable.forward (line ")
    assert "torch.fx cannot trace the model (TraceError" in w
    assert w.endswith("replace the call in your code with a module, e.g. self.act = nn.ReLU()")


# -- re-initialisation ---------------------------------------------------------------------------


def test_reinit_kaiming_uses_gain_of_following_activation():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 400), nn.Tanh(), nn.Linear(400, 10)
    )
    new, rep = reinit(m, "kaiming")
    assert rep.changes == [
        "0.weight: reinit kaiming(fan_in, gain=1.414)",
        "0.bias: zeros",
        "2.weight: reinit kaiming(fan_in, gain=1.667)",
        "2.bias: zeros",
        "4.weight: reinit kaiming(fan_in, gain=1.000)",
        "4.bias: zeros",
    ]
    # He et al. 2015 eq. 10: Var W = gain^2 / fan_in (160k draws: std within 1%)
    assert float(new[0].weight.detach().std()) == pytest.approx(math.sqrt(2 / 400), rel=0.01)
    assert float(new[2].weight.detach().std()) == pytest.approx((5 / 3) / 20, rel=0.01)
    assert float(new[4].weight.detach().std()) == pytest.approx(1 / 20, rel=0.02)
    assert float(new[0].bias.detach().abs().sum()) == 0.0
    out = reinit_(nn.Sequential(nn.Linear(100, 900), nn.ReLU()), "kaiming", mode="fan_out")
    assert out.changes[0] == "0.weight: reinit kaiming(fan_out, gain=1.414)"


def test_reinit_xavier_orthogonal_and_critical_numbers():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh())
    new, rep = reinit(m, "xavier")
    assert rep.changes[0] == "0.weight: reinit xavier_uniform(bound=0.07596)"  # case 11
    assert float(new[0].weight.detach().abs().max()) <= 0.0759556
    new, _ = reinit(m, "orthogonal")
    w = new[2].weight
    torch.testing.assert_close(w @ w.T, (5 / 3) ** 2 * torch.eye(256), atol=1e-4, rtol=0)
    new, rep = reinit(m, "critical", sb2=0.05)  # tanh critical sw2 at sb2 = 0.05: 1.760955
    assert rep.changes[2] == "2.weight: reinit critical(tanh, sw2=1.761, sb2=0.05)"
    assert float(new[2].weight.detach().var()) * 256 == pytest.approx(1.760955, rel=0.02)
    assert float(new[2].bias.detach().var()) == pytest.approx(0.05, rel=0.3)


def test_reinit_unknown_scheme_and_lsuv_without_data():
    m = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(UnknownNameError, match="unknown init scheme 'kaimnig'; did you mean"):
        reinit(m, "kaimnig")
    with pytest.raises(DataError) as e:
        reinit(m, "lsuv")
    assert str(e.value).startswith("reinit(scheme=lsuv) needs a batch of data: pass x=<inputs>")


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


def test_zero_init_residual_makes_blocks_identity(digits):
    m = build_model("mlp:depth=10,width=16,residual=true", digits.info, seed=0)
    rep = zero_init_residual_(m)
    assert rep.changes[:2] == [
        "1.branch.2.weight: zeros (residual branch starts as identity)",
        "1.branch.2.bias: zeros",
    ]
    x = torch.randn(3, 16)
    torch.testing.assert_close(m[1](x), x)
    with pytest.raises(ConfigError) as e:
        zero_init_residual_(nn.Sequential(nn.Linear(2, 2)))
    assert "add-residual first" in str(e.value)


# -- structure -----------------------------------------------------------------------------------


def test_add_norm_inserts_after_hidden_layers_only(digits):
    m = _mlp(digits)
    new, rep = add_norm(m, "batch")
    bns = [mod for mod in new if isinstance(mod, nn.BatchNorm1d)]
    assert len(bns) == 5 and len(list(m)) == 11 and len(list(new)) == 16
    assert rep.changes[0] == "after 0 (Linear): insert BatchNorm1d(16)"
    assert isinstance(new[-1], nn.Linear) and new[-1].out_features == 10
    new_l, _ = add_norm(m, "layer")
    assert sum(isinstance(mod, nn.LayerNorm) for mod in new_l) == 5
    assert new(torch.randn(8, 64)).shape == (8, 10)


def test_add_residual_with_zero_init_is_identity_and_restores_signal(digits):
    m = _mlp(digits, "mlp:depth=10,width=16,act=sigmoid")
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
        first = model[0]
        outs = {}
        first.register_forward_hook(lambda mod, i, o: outs.setdefault("h1", o))
        out = model(xb)
        h1 = outs["h1"]
        g1, gl = torch.autograd.grad(F.cross_entropy(out, yb), [h1, out])
        return float(g1.norm() / gl.norm())

    assert signal_ratio(new) > 1e3 * signal_ratio(m)


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


# -- recurrent ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adding():
    return load_data("adding-20", n=64)


def test_replace_rnn_keeps_path_and_sizes_and_sets_forget_bias(adding):
    m = build_model("rnn:hidden=12", adding.info, seed=0)
    new, rep = replace_rnn(m, "lstm")
    assert isinstance(m.rnn, nn.RNN) and isinstance(new.rnn, nn.LSTM)
    assert (new.rnn.input_size, new.rnn.hidden_size, new.rnn.batch_first) == (2, 12, True)
    assert rep.changes[0] == (
        "rnn: RNN(2, 12, layers=1, nonlinearity=tanh) -> LSTM(2, 12, layers=1) (fresh PyTorch init)"
    )
    b = new.rnn.bias_ih_l0 + new.rnn.bias_hh_l0  # PyTorch's two vectors: the gate bias is the sum
    assert b[12:24].tolist() == [1.0] * 12
    assert float(torch.sigmoid(b[12].detach())) == pytest.approx(0.731059, abs=1e-6)  # case 20
    x, _ = adding.fixed_batch(4)
    assert new(x).shape == (4, 1)
    gru, _ = replace_rnn(m, "gru")
    assert isinstance(gru.rnn, nn.GRU) and gru(x).shape == (4, 1)


def test_forget_bias_and_orthogonal_recurrent(adding):
    m = build_model("lstm:hidden=8", adding.info, seed=0)
    rep = set_forget_bias_(m, 2.0)
    assert rep.changes == [
        "rnn.bias_ih_l0[8:16] = 2, rnn.bias_hh_l0[8:16] = 0 (forget-gate bias 2)"
    ]
    assert (m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0)[8:16].tolist() == [2.0] * 8
    r = build_model("rnn:hidden=16,radius=3", adding.info, seed=0)
    rho = float(torch.linalg.eigvals(r.rnn.weight_hh_l0.detach().double()).abs().max())
    assert rho == pytest.approx(3.0, rel=1e-6)
    orthogonal_recurrent_(r)
    sv = torch.linalg.svdvals(r.rnn.weight_hh_l0.detach().double())
    torch.testing.assert_close(sv, torch.ones(16, dtype=torch.float64), atol=1e-5, rtol=0)
    orthogonal_recurrent_(m, gain=1.0)
    for g in range(4):
        block = m.rnn.weight_hh_l0.detach()[g * 8 : (g + 1) * 8].double()
        torch.testing.assert_close(
            block @ block.T, torch.eye(8, dtype=torch.float64), atol=1e-5, rtol=0
        )


# -- loss pairing ---------------------------------------------------------------------------------


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


def test_fix_loss_softmax_nll_and_not_applicable(digits):
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
        "Sigmoid or Softmax to fuse into the loss; remedies that apply: swap-activation, reinit"
    )


# -- registry and apply ----------------------------------------------------------------------------


def test_apply_unknown_and_not_applicable_messages(digits):
    m = _mlp(digits)
    with pytest.raises(UnknownNameError) as e:
        apply(m, "reinti(scheme=kaiming)")
    assert str(e.value).startswith("unknown remedy 'reinti'; did you mean 'reinit'? Valid names: ")
    with pytest.raises(ConfigError) as e:
        apply(m, "replace-rnn(to=lstm)")
    assert str(e.value) == (
        "remedy 'replace-rnn' does not apply to Sequential: it has no nn.RNN module; remedies "
        "that apply: swap-activation, reinit, add-norm, add-residual, add-aux-heads, "
        "clip-grad-norm, clip-grad-value, agc, autoclip, lower-lr"
    )
    with pytest.raises(UnknownNameError, match="unknown parameter of remedy 'reinit' 'schem'"):
        apply(m, "reinit(schem=kaiming)")


def test_applicable_depends_on_the_model(digits, adding):
    assert applicable(build_model("rnn:hidden=4", adding.info)) == [
        "reinit",
        "replace-rnn",
        "orthogonal-recurrent",
        "clip-grad-norm",
        "clip-grad-value",
        "agc",
        "autoclip",
        "lower-lr",
    ]
    assert "forget-bias" in applicable(build_model("lstm:hidden=4", adding.info))
    assert set(REMEDIES) >= set(applicable(_mlp(digits)))


def test_apply_combination_prescription_and_training_remedies(digits):
    m = _mlp(digits)
    before = copy.deepcopy(m)
    spec = Prescription("swap-activation", {"to": "leaky_relu"})
    _new, rep = apply(m, [spec, "reinit(scheme=kaiming)", "clip-grad-norm(max_norm=0.5)"])
    assert _same_params(m, before) and isinstance(m[1], nn.Sigmoid)
    assert rep.spec == (
        "swap-activation(to=leaky_relu,slope=0.01)+reinit(scheme=kaiming)"
        "+clip-grad-norm(max_norm=0.5)"
    )
    assert rep.changes[0] == "1: Sigmoid -> LeakyReLU(0.01)"
    assert "0.weight: reinit kaiming(fan_in, gain=1.414)" in rep.changes
    assert rep.grad_transform.max_norm == 0.5
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["grad_transform"] == "clip-grad-norm(max_norm=0.5)" and d["lr_factor"] == 1.0
    same, rep2 = apply(m, "lower-lr(factor=0.1)", inplace=True)
    assert same is m and rep2.lr_factor == 0.1
    new2, _ = apply(m, "reinit(scheme=lsuv)", data_batch=digits.fixed_batch(128))
    assert not _same_params(new2, m)
