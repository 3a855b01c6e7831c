"""Prescriptions work by our own theory before they are printed (kind 7): mean-field theory's
predicted ratio for each candidate remedy, the rejection of those that would not work, and the
check that a remedy applies to the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diagnosis_util import finding, run
from gradmedic.diagnosis import Finding, Prescription
from gradmedic.diagnosis.prescribe import (
    Layer,
    init_remedies,
    keep_applicable,
    predict,
    scheme_sw2,
    works,
)
from gradmedic.remedies.registry import spec_applies
from gradmedic.workflows.checkup import diagnose

torch.set_num_threads(1)


def _stack(act: str | None, sw2: float, n: int = 21, width: int = 100) -> list[Layer]:
    """n weight layers of ``width`` (the first without an activation before it), a head."""
    body = [Layer("0", None, sw2, 0.0, width, width)]
    body += [Layer(str(i), act, sw2, 0.0, width, width) for i in range(1, n - 1)]
    return [*body, Layer("head", act, sw2, 0.0, width, 1)]


def test_scheme_sw2_follows_the_remedies_draws():
    assert scheme_sw2("xavier", "tanh", 100, 100) == 1.0
    assert scheme_sw2("xavier", "relu", 64, 192) == 0.5  # 2 fan_in / (fan_in + fan_out)
    assert scheme_sw2("kaiming", "relu", 64, 64) == pytest.approx(2.0)
    assert scheme_sw2("kaiming", "tanh", 64, 64) == pytest.approx(25 / 9)
    assert scheme_sw2("kaiming", None, 64, 64) == 1.0
    assert scheme_sw2("critical", "tanh", 64, 64) == pytest.approx(1.0)
    assert scheme_sw2("critical", "sigmoid", 64, 64) is None  # 103: beyond practical
    assert scheme_sw2("lsuv", "relu", 64, 64) is None  # data-driven


def test_xavier_alone_is_rejected_for_a_deep_sigmoid_stack():
    """Field case 01 (20 crossings): at sw2 = 1 sigmoid's chi1 = 0.0557, so 19 layers give
    sqrt(0.0557)^19 = 10^-11.9 and the head (fan_out 1: xavier's sw2 = 2 fan_in / (fan_in + 1)
    = 1.98, chi1 = 0.10) 10^-0.5 more: 10^-12.4. A swap to leaky ReLU with kaiming puts
    chi1 = 1 everywhere but at the linear head (sw2 = 1, E[phi'^2] = 1/2): 10^-0.15."""
    stack = _stack("sigmoid", 1 / 3)
    xavier = predict(stack, scheme="xavier")
    assert xavier["log10_ratio"] == pytest.approx(-12.41, abs=0.01) and not works(xavier)
    swapped = predict(stack, to="leaky_relu", scheme="kaiming")
    assert swapped["log10_ratio"] == pytest.approx(-0.151, abs=0.002) and works(swapped)
    kept, rejected = init_remedies(stack, "sigmoid")
    assert [str(p) for p in kept] == ["swap-activation(to=leaky_relu)+reinit(scheme=kaiming)"]
    assert kept[0].predicted["chi1_median"] == 1.0
    assert "predicted ratio 10^-0.1 over 20 layers (chi1 = 1)" in kept[0].reason
    assert set(rejected) == {"reinit(scheme=xavier)", "reinit(scheme=critical)"}
    assert rejected["reinit(scheme=xavier)"].startswith("predicted ratio 10^-12.4 over 20 layers")


def test_theory_keeps_the_init_that_fixes_each_activation():
    # tanh at PyTorch's default sw2 = 1/3: xavier (sw2 = 1, the critical point at sb2 = 0) works
    kept, _ = init_remedies(_stack("tanh", 1 / 3), "tanh")
    assert str(kept[0]) == "reinit(scheme=xavier)"
    assert abs(kept[0].predicted["log10_ratio"]) < 0.5
    # ReLU: kaiming is the critical scheme; the identical critical one is not repeated
    kept, rejected = init_remedies(_stack("relu", 1 / 3), "relu")
    assert [str(p) for p in kept] == ["reinit(scheme=kaiming)"] and rejected == {}
    # dead units put the swap first
    kept, _ = init_remedies(_stack("relu", 1 / 3), "relu", dead=True)
    assert str(kept[0]) == "swap-activation(to=leaky_relu)+reinit(scheme=kaiming)"


def test_a_deep_sigmoid_mlp_is_never_prescribed_xavier_alone():
    d = run("mlp:depth=20,width=64,act=sigmoid")
    for slug in ("vanishing-gradient", "poor-init"):
        f = finding(d, slug)
        specs = [str(p) for p in f.prescriptions]
        assert "reinit(scheme=xavier)" not in specs, (slug, specs)
        assert specs[0] == "swap-activation(to=leaky_relu)+reinit(scheme=kaiming)"
        assert f.evidence["rejected_by_theory"]["reinit(scheme=xavier)"].startswith(
            "predicted ratio 10^-1"
        )
    assert "reinit(scheme=xavier) alone is not enough" in finding(d, "poor-init").cause
    vanishing = finding(d, "vanishing-gradient")
    assert "add-norm(kind=layer)" not in [str(p) for p in vanishing.prescriptions]


def test_a_prescription_that_does_not_apply_to_the_model_is_removed():
    rnn = nn.Sequential(nn.RNN(4, 8))
    pres = [
        Prescription("forget-bias", {"value": 3.0}),
        Prescription("replace-rnn", {"to": "lstm"}, plus=(Prescription("forget-bias"),)),
        Prescription("loss-epsilon", {"eps": 1e-8}, manual=True),
        Prescription("no-such-remedy"),
    ]
    f = Finding("rnn-long-range-vanishing", "error", "t", "c", prescriptions=pres)
    (out,) = keep_applicable([f], lambda spec: spec_applies(rnn, spec))
    assert [str(p) for p in out.prescriptions] == [
        "replace-rnn(to=lstm)+forget-bias",
        "loss-epsilon(eps=1e-08)",
    ]
    assert out.evidence["not_applicable"]["forget-bias(value=3.0)"] == (
        "forget-bias: it has no nn.LSTM module with biases"
    )
    assert "unknown remedy 'no-such-remedy'" in out.evidence["not_applicable"]["no-such-remedy"]
    assert f.prescriptions == pres  # the input finding is left alone


def test_the_model_only_diagnosis_prescribes_what_theory_says_works():
    """No data: the init-time prediction alone (20 sigmoid layers at PyTorch's sw2 = 1/3)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(20):
        layers += [nn.Linear(64, 64), nn.Sigmoid()]
    d = diagnose(model=nn.Sequential(*layers, nn.Linear(64, 10)), loss=nn.MSELoss())
    f = finding(d, "poor-init")
    assert f.evidence["basis"] == "theory (no data)"
    assert [str(p) for p in f.prescriptions] == [
        "swap-activation(to=leaky_relu)+reinit(scheme=kaiming)"
    ]
