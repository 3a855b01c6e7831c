"""The remedy registry: @remedy binds parameters from the signature, apply() by spec, the
canonical order, and the exact messages for names and values that are wrong."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from gradmedic.diagnosis import Prescription
from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.remedies import (
    REMEDIES,
    RemedyReport,
    applicable,
    apply,
    canonical_order,
    parse_remedy,
    remedy,
    split_specs,
)
from gradmedic.zoo import build_model, load_data


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture()
def registry():
    """The registry as it was before the test (tests may register throw-away remedies)."""
    saved = dict(REMEDIES)
    yield REMEDIES
    REMEDIES.clear()
    REMEDIES.update(saved)


def _mlp(digits):
    return build_model("mlp:depth=6,width=16,act=sigmoid", digits.info, seed=0)


def _same_params(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- the decorator ------------------------------------------------------------------------------


def test_decorator_binds_defaults_types_and_context(registry):
    seen = {}

    def never(model: nn.Module) -> str | None:
        return "it is never applicable"

    @remedy("scale-weights", order=55)
    def _scale(
        model: nn.Module,
        /,
        factor: float = 2.0,
        times: int = 1,
        tag: str | None = None,
        *,
        batch=None,
    ) -> tuple[nn.Module, RemedyReport]:
        """multiply every weight by factor, times times"""
        seen.update(factor=factor, times=times, tag=tag, batch=batch)
        return model, RemedyReport(spec=f"scale-weights(factor={factor})")

    entry = REMEDIES["scale-weights"]
    assert entry.params == {"factor": 2.0, "times": 1, "tag": None}
    assert entry.types == {"factor": float, "times": int, "tag": str | None}
    assert entry.context == ("batch",) and entry.summary.startswith("multiply every weight")
    assert list(REMEDIES).index("scale-weights") == list(REMEDIES).index("reinit") + 1
    assert parse_remedy("scale-weights(3, times=2.0, tag=7)")[1] == {
        "factor": 3,
        "times": 2,
        "tag": "7",
    }
    x = torch.ones(2, 4)
    apply(nn.Linear(4, 4), "scale-weights(0.5)", data_batch=x)
    assert seen == {"factor": 0.5, "times": 1, "tag": None, "batch": x}

    remedy("never", order=1, applies=never)(lambda model, /: (model, RemedyReport("never")))
    assert "never" not in applicable(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="remedy 'never' does not apply to Linear: it is never"):
        apply(nn.Linear(2, 2), "never")


def test_decorator_rejects_malformed_remedies(registry):
    def no_model(factor: float = 1.0):
        return None

    def no_default(model, /, factor):
        return None

    def bad_context(model, /, *, optimizer=None):
        return None

    with pytest.raises(TypeError, match="the model must be the first, positional-only"):
        remedy("x", order=1)(no_model)
    with pytest.raises(TypeError, match="parameter 'factor' needs a default"):
        remedy("x", order=1)(no_default)
    with pytest.raises(TypeError, match="keyword-only parameters may only be batch, loss"):
        remedy("x", order=1)(bad_context)
    with pytest.raises(ValueError, match="remedy 'reinit' is registered twice"):
        remedy("reinit", order=1)(lambda model, /: None)


def test_values_of_the_wrong_type_name_the_type_and_an_example():
    with pytest.raises(ConfigError) as e:
        parse_remedy("clip-grad-norm(max_norm=big)")
    assert str(e.value) == (
        "remedy 'clip-grad-norm': max_norm='big' is invalid, it must be a number; "
        "e.g. clip-grad-norm(max_norm=1.0)"
    )
    with pytest.raises(ConfigError, match=r"block=2\.5 is invalid, it must be an integer"):
        parse_remedy("add-residual(block=2.5)")
    with pytest.raises(ConfigError, match=r"skip_last=3 is invalid, it must be true or false"):
        parse_remedy("agc(skip_last=3)")
    with pytest.raises(ConfigError, match=r"slope='x' is invalid, it must be a number \(or none\)"):
        parse_remedy("swap-activation(slope=x)")
    with pytest.raises(ConfigError, match=r"takes at most 1 argument\(s\): max_norm=\.\.\."):
        parse_remedy("clip-grad-norm(1, 2)")
    with pytest.raises(ConfigError, match="gives max_norm twice"):
        parse_remedy("clip-grad-norm(1, max_norm=2)")


# -- specs, order, apply ------------------------------------------------------------------------


def test_split_specs_keeps_plus_inside_parentheses():
    assert split_specs("add-aux-heads(at=7+14)+clip-grad-norm") == [
        "add-aux-heads(at=7+14)",
        "clip-grad-norm",
    ]
    assert split_specs([Prescription("reinit", {"scheme": "xavier"}), "agc"]) == [
        "reinit(scheme=xavier)",
        "agc",
    ]
    with pytest.raises(ConfigError, match="empty remedy spec"):
        split_specs("  ")
    with pytest.raises(ConfigError, match="unbalanced '\\(' in remedy spec"):
        split_specs("reinit(scheme=kaiming")


def test_canonical_order_structure_first_training_last():
    assert list(REMEDIES) == [
        "replace-rnn",
        "swap-activation",
        "add-residual",
        "add-norm",
        "reinit",
        "zero-init-residual",
        "orthogonal-recurrent",
        "forget-bias",
        "add-aux-heads",
        "fix-loss",
        "clip-grad-norm",
        "clip-grad-value",
        "agc",
        "autoclip",
        "zclip",
        "adagc",
        "spike-clip",
        "skip-step",
        "qk-layernorm",
        "z-loss",
        "lower-lr",
    ]
    specs = ["lower-lr", "reinit(scheme=xavier)", "replace-rnn(to=gru)", "reinit", "nope"]
    assert canonical_order(specs) == [
        "replace-rnn(to=gru)",
        "reinit(scheme=xavier)",
        "reinit",
        "lower-lr",
        "nope",
    ]


def test_apply_unknown_and_not_applicable_messages(digits):
    m = _mlp(digits)
    with pytest.raises(UnknownNameError) as e:
        apply(m, "reinti(scheme=kaiming)")
    assert str(e.value).startswith("unknown remedy 'reinti'; did you mean 'reinit'? Valid names: ")
    with pytest.raises(ConfigError) as e:
        apply(m, "replace-rnn(to=lstm)")
    assert str(e.value) == (
        "remedy 'replace-rnn' does not apply to Sequential: it has no nn.RNN module; remedies "
        "that apply: swap-activation, add-residual, add-norm, reinit, add-aux-heads, "
        "clip-grad-norm, clip-grad-value, agc, autoclip, zclip, adagc, spike-clip, skip-step, "
        "z-loss, lower-lr"
    )
    with pytest.raises(UnknownNameError) as e:
        apply(m, "reinit(schem=kaiming)")
    assert str(e.value) == (
        "unknown parameter of remedy 'reinit' 'schem'; did you mean 'scheme'? Valid names: "
        "max_iter, mode, sb2, scheme, tol"
    )


def test_applicable_depends_on_the_model(digits):
    adding = load_data("adding-20", n=64)
    assert applicable(build_model("rnn:hidden=4", adding.info)) == [
        "replace-rnn",
        "reinit",
        "orthogonal-recurrent",
        "clip-grad-norm",
        "clip-grad-value",
        "agc",
        "autoclip",
        "zclip",
        "adagc",
        "spike-clip",
        "skip-step",
        "z-loss",
        "lower-lr",
    ]
    assert "forget-bias" in applicable(build_model("lstm:hidden=4", adding.info))
    assert "fix-loss" not in applicable(_mlp(digits))


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
    assert rep.changes[-1] == (
        "training: clip-grad-norm(max_norm=0.5) between loss.backward() and optimizer.step() "
        "(model unchanged)"
    )
    assert rep.grad_transform.max_norm == 0.5
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["grad_transform"] == "clip-grad-norm(max_norm=0.5)" and d["lr_factor"] == 1.0
    same, rep2 = apply(m, "lower-lr(factor=0.1)+lower-lr(factor=0.5)", inplace=True)
    assert same is m and rep2.lr_factor == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="lower-lr: factor=-1 must be a positive number"):
        apply(m, "lower-lr(factor=-1)")
    new2, _ = apply(m, "reinit(scheme=lsuv)", data_batch=digits.fixed_batch(128))
    assert not _same_params(new2, m)
