"""The one activation registry: parameters read back, specs, theory specs, construction, and
the predicted gain of parametrised activations (the defects of the eight drifted tables)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradmedic import Monitor, theory
from gradmedic.diagnosis import layer_table
from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.nn.activations import (
    ACTIVATION_TYPES,
    KINDS,
    SWAP_TARGETS,
    functional_kind,
    kind_of,
    make_activation,
    params_of,
    spec_of,
    theory_spec,
)
from gradmedic.nn.modelinfo import module_facts


def test_every_kind_has_a_distinct_torch_type_and_known_name():
    types = [k.torch_type for k in KINDS.values()]
    assert len(types) == len(set(types))
    assert nn.Identity not in ACTIVATION_TYPES
    assert set(SWAP_TARGETS) == {
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "elu",
        "selu",
        "gelu",
        "silu",
    }


@pytest.mark.parametrize(
    ("module", "name", "params"),
    [
        (nn.Softplus(beta=2.0), "softplus", {"beta": 2.0, "threshold": 20.0}),
        (nn.Hardtanh(-2.0, 2.0), "hardtanh", {"min_val": -2.0, "max_val": 2.0}),
        (nn.ReLU6(), "relu6", {}),  # a Hardtanh subclass, its own kind
        (nn.LeakyReLU(0.2), "leaky_relu", {"negative_slope": 0.2}),
        (nn.ELU(alpha=0.5), "elu", {"alpha": 0.5}),
        (nn.GELU(approximate="tanh"), "gelu", {"approximate": "tanh"}),
    ],
)
def test_kind_and_parameters_are_read_from_the_module(module, name, params):
    assert kind_of(module).name == name
    assert params_of(module) == params


def test_a_user_subclass_resolves_to_its_base_kind():
    class MyTanh(nn.Tanh):
        pass

    assert kind_of(MyTanh()).name == "tanh"
    assert kind_of(nn.Linear(2, 2)) is None


@pytest.mark.parametrize(
    ("module", "spec", "theory_text"),
    [
        (nn.Softplus(beta=2.0), "softplus(beta=2)", "softplus(beta=2)"),
        (nn.Softplus(beta=0.5), "softplus(beta=0.5)", "softplus(beta=0.5)"),
        (nn.Softplus(), "softplus", "softplus"),
        (
            nn.Hardtanh(-2.0, 2.0),
            "hardtanh(min_val=-2, max_val=2)",
            "hardtanh(min_val=-2, max_val=2)",
        ),
        (nn.LeakyReLU(0.2), "leaky_relu(negative_slope=0.2)", "leaky_relu(negative_slope=0.2)"),
        (nn.ELU(alpha=0.5), "elu(alpha=0.5)", "elu(alpha=0.5)"),
        (nn.GELU(approximate="tanh"), "gelu(approximate=tanh)", None),
        (nn.ReLU6(), "relu6", None),
        (nn.PReLU(), "prelu", None),
    ],
)
def test_spec_and_theory_spec(module, spec, theory_text):
    assert spec_of(module) == spec
    assert theory_spec(module) == theory_text
    assert module_facts(module)["theory"] == theory_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("leaky_relu(0.2)", nn.LeakyReLU),
        ("softplus(beta=2)", nn.Softplus),
        ("hardtanh(-2, 2)", nn.Hardtanh),
        ("Swish", nn.SiLU),
        ("linear", nn.Identity),
    ],
)
def test_make_activation(text, expected):
    assert type(make_activation(text)) is expected
    assert make_activation("hardtanh(-2, 2)").min_val == -2.0
    assert make_activation("softplus(beta=2)").beta == 2.0


def test_make_activation_errors_say_what_to_write():
    with pytest.raises(
        UnknownNameError, match=r"unknown activation 'tanhh'; did you mean 'tanh'\?"
    ):
        make_activation("tanhh")
    with pytest.raises(ConfigError) as e:
        make_activation("elu(beta=2)")
    assert str(e.value) == (
        "activation 'elu(beta=2)' has no parameter 'beta' (or it is given twice); "
        "write it as elu(alpha)"
    )
    with pytest.raises(ConfigError, match=r"takes at most 1 argument\(s\); write it as leaky_relu"):
        make_activation("leaky_relu(0.1, 0.2)")


def test_functional_forms_map_to_their_kind():
    assert functional_kind(torch.sigmoid).name == "sigmoid"
    assert functional_kind(torch.nn.functional.relu).name == "relu"
    assert functional_kind(torch.matmul) is None


# ------------------------------------------------------------------------------------------
# Predicted gain of parametrised activations (the drifted tables predicted the defaults).

WIDTH, BATCH = 4096, 64


def _measured_and_predicted(act: nn.Module, q: float) -> tuple[float, float, float]:
    """A wide random layer ``Linear(WIDTH, WIDTH) -> act`` whose pre-activations are N(0, q):
    the Monitor's measured gain of the activation, the diagnosis's predicted gain, and theory's
    ``sqrt(E[phi'(sqrt(q) z)^2])`` at the measured q."""
    torch.manual_seed(0)
    lin = nn.Linear(WIDTH, WIDTH, bias=False)
    nn.init.normal_(lin.weight, std=math.sqrt(q / WIDTH))
    model = nn.Sequential(lin, act)
    x = torch.randn(BATCH, WIDTH)
    with Monitor(model, every=1) as mon:
        out = model(x)
        (out * torch.randn_like(out)).sum().backward()  # a signal independent of phi'
        mon.step()
        trace = mon.trace()
    row = next(r for r in layer_table(trace) if r["module"] == "1")
    spec = theory_spec(act)
    expected = math.sqrt(theory.e_dphi_sq(spec, row["preact_ms"]))
    return row["gain"], row["predicted_gain"], expected


@pytest.mark.parametrize(
    "act",
    [
        nn.Softplus(beta=2.0),
        nn.Softplus(beta=0.5),
        nn.Hardtanh(-2.0, 2.0),
        nn.LeakyReLU(0.2),
        nn.ELU(alpha=0.5),
    ],
    ids=["softplus-beta2", "softplus-beta0.5", "hardtanh-2-2", "leaky0.2", "elu0.5"],
)
def test_predicted_gain_uses_the_activations_own_parameters(act):
    measured, predicted, expected = _measured_and_predicted(act, q=4.0)
    assert predicted == pytest.approx(expected, rel=1e-12)
    assert measured == pytest.approx(predicted, rel=0.05)


def test_default_parameters_would_have_been_wrong():
    """These cases differ from the default-parameter prediction by more than the 5% tolerance
    of the measured check, so it alone would catch a table that drops the parameters again
    (LeakyReLU(0.2) is within 2% of the default: the exact check against theory catches it)."""
    q = 4.0
    pairs = [
        ("softplus(beta=2)", "softplus"),
        ("softplus(beta=0.5)", "softplus"),
        ("hardtanh(min_val=-2, max_val=2)", "hardtanh"),
        ("elu(alpha=0.5)", "elu"),
    ]
    for own, default in pairs:
        a = math.sqrt(theory.e_dphi_sq(own, q))
        b = math.sqrt(theory.e_dphi_sq(default, q))
        assert abs(a / b - 1) > 0.05, (own, a, b)


def test_a_one_by_one_layer_has_an_init_scale_and_no_warning():
    import warnings

    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        facts = module_facts(lin)
    assert facts["sw2"] == 0.25  # fan_in 1 x w^2
