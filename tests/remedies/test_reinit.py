"""reinit and zero-init-residual: the numbers each scheme must give."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradmedic.errors import ConfigError, DataError, UnknownNameError
from gradmedic.remedies import reinit, reinit_, zero_init_residual_
from gradmedic.zoo import build_model, load_data


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


def test_kaiming_gain_reads_the_activation_parameters_from_the_registry():
    # leaky_relu(0.2): sqrt(2 / 1.04) = 1.387; Softplus (no torch gain): Gauss-Hermite
    # 1/sqrt(E[softplus(z)^2]) = 1.0419 (scipy quad); a subclass of nn.Tanh is tanh (5/3)
    class MyTanh(nn.Tanh):
        pass

    m = nn.Sequential(
        nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.Linear(8, 8), nn.Softplus(), nn.Linear(8, 8),
        MyTanh(),
    )  # fmt: skip
    rep = reinit_(m, "kaiming")
    assert [c for c in rep.changes if "weight" in c] == [
        "0.weight: reinit kaiming(fan_in, gain=1.387)",
        "2.weight: reinit kaiming(fan_in, gain=1.042)",
        "4.weight: reinit kaiming(fan_in, gain=1.667)",
    ]


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


def test_critical_init_with_parameters_and_without_theory():
    # leaky ReLU slope a: chi1 = sw2 (1 + a^2) / 2 = 1 at sb2 = 0 -> sw2 = 2 / 1.04 = 1.923
    m = nn.Sequential(nn.Linear(16, 16), nn.LeakyReLU(0.2), nn.Linear(16, 4))
    rep = reinit_(m, "critical")
    assert rep.changes[0] == (
        "0.weight: reinit critical(leaky_relu(negative_slope=0.2), sw2=1.923, sb2=0)"
    )
    with pytest.raises(ConfigError, match="has no mean-field theory for RReLU"):
        reinit_(nn.Sequential(nn.Linear(4, 4), nn.RReLU(), nn.Linear(4, 2)), "critical")


def test_reinit_unknown_scheme_and_lsuv_without_data():
    m = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(UnknownNameError, match="unknown init scheme 'kaimnig'; did you mean"):
        reinit(m, "kaimnig")
    with pytest.raises(DataError) as e:
        reinit(m, "lsuv")
    assert str(e.value).startswith("reinit(scheme=lsuv) needs a batch of data: pass x=<inputs>")


def test_zero_init_residual_makes_blocks_identity():
    m = build_model("mlp:depth=10,width=16,residual=true", load_data("digits").info, seed=0)
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
