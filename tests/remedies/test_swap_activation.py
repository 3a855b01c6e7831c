"""swap-activation: modules and functional calls swapped exactly, through the one activation
registry (gradmedic.nn.activations)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.remedies import apply, swap_activation, swap_activation_
from gradmedic.remedies.functional import find_functional_activations
from gradmedic.zoo import build_model, load_data


def _same_params(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_swap_activation_is_non_destructive_and_reports_each_module():
    info = load_data("digits").info
    m = build_model("mlp:depth=3,width=8,act=sigmoid,final_act=sigmoid", info, seed=0)
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


def test_swap_activation_selection_by_type_glob_and_params():
    m = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
    _, rep = swap_activation(m, "elu", where="Sigmoid", alpha=0.5)
    assert rep.changes == ["3: Sigmoid -> ELU(0.5)"]
    _, rep = swap_activation(m, nn.GELU, where="1")
    assert rep.changes == ["1: Tanh -> GELU"] and rep.spec == "swap-activation(to=gelu)"
    new = copy.deepcopy(m)
    rep = swap_activation_(new, "leaky_relu", slope=0.2, where=[nn.Tanh, nn.Sigmoid])
    assert rep.changes == ["1: Tanh -> LeakyReLU(0.2)", "3: Sigmoid -> LeakyReLU(0.2)"]
    assert new[3].negative_slope == 0.2


def test_swap_by_spec_selects_a_module_by_its_number():
    # where=1 arrives as the integer 1 from the spec and is bound to the str parameter
    m = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    _, rep = apply(m, "swap-activation(to=relu,where=3)")
    assert rep.changes == ["3: Tanh -> ReLU"]


def test_swap_activation_bad_target_and_empty_selection_messages():
    m = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(UnknownNameError) as e:
        swap_activation(m, "leaky_rleu")
    assert str(e.value) == (
        "unknown activation to swap to 'leaky_rleu'; did you mean 'leaky_relu'? Valid names: "
        "elu, gelu, leaky_relu, relu, selu, sigmoid, silu, tanh"
    )
    with pytest.raises(UnknownNameError) as e:
        swap_activation(m, nn.Softplus)
    assert str(e.value) == (
        "unknown activation class 'Softplus'. Valid names: ELU, GELU, LeakyReLU, ReLU, SELU, "
        "SiLU, Sigmoid, Tanh"
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


class _Softplus(_Functional):
    def forward(self, x):
        return self.b(F.softplus(self.a(x)).tanh_())


def test_functional_activation_rewritten_by_fx_keeps_weights():
    torch.manual_seed(0)
    m = _Functional()
    new, rep = swap_activation(m, "relu")
    assert rep.changes == [
        "sigmoid (functional sigmoid) -> ReLU as module swapped_act_0 (torch.fx)"
    ]
    x = torch.randn(5, 4)
    torch.testing.assert_close(new(x), m.b(torch.relu(m.a(x))))
    torch.testing.assert_close(m(x), m.b(torch.sigmoid(m.a(x))))  # the original is untouched


def test_functional_kinds_come_from_the_registry():
    # softplus and the in-place tanh_ method were unknown to the remedy's old private tables
    found = find_functional_activations(_Softplus())
    assert [(c["call"], c["kind"]) for c in found] == [
        ("F.softplus(...)", "softplus"),
        (".tanh_()", "tanh"),
    ]
    torch.manual_seed(0)
    m = _Softplus()
    new, rep = swap_activation(m, "relu", where="Softplus")
    assert rep.changes == [
        "softplus (functional softplus) -> ReLU as module swapped_act_0 (torch.fx)"
    ]
    x = torch.randn(3, 4)
    torch.testing.assert_close(new(x), m.b(torch.relu(m.a(x)).tanh()))


def test_untraceable_functional_activation_is_listed_not_changed():
    _new, rep = swap_activation(_Untraceable(), "relu")
    assert rep.changes == []
    assert len(rep.warnings) == 1
    w = rep.warnings[0]
    assert w.startswith("not changed: F.tanh(...) in _Untraceable.forward (line ")
    assert "torch.fx cannot trace the model (TraceError" in w
    assert w.endswith("replace the call in your code with a module, e.g. self.act = nn.ReLU()")
