"""Zoo battery: sick models are found with the right slug and at least the stated severity,
healthy ones raise no warning or error (each case's mechanism is in the rule's docstring)."""

from __future__ import annotations

import pytest
import torch

from diagnosis_util import finding, run
from gradmedic.diagnosis import Diagnosis
from gradmedic.diagnosis.finding import severity_rank

torch.set_num_threads(1)


def alarms(d: Diagnosis) -> list[tuple[str, str]]:
    return [(f.slug, f.severity) for f in d.at_least("warning")]


SICK = [
    # (model, data, loss, slug, minimum severity)
    ("mlp:depth=20,width=64,act=sigmoid", "digits", None, "vanishing-gradient", "error"),
    ("mlp:depth=30,width=64,act=relu,init=xavier", "digits", None, "vanishing-gradient", "error"),
    ("mlp:depth=30,width=64,act=relu,init=xavier", "digits", None, "poor-init", "warning"),
    (
        "mlp:depth=20,width=64,act=tanh,init=normal(sw2=4)",
        "digits",
        None,
        "exploding-gradient",
        "warning",
    ),
    ("mlp:depth=20,width=64,act=tanh,init=normal(sw2=4)", "digits", None, "poor-init", "warning"),
    ("mlp:depth=6,width=64,act=relu,bias_init=-5", "digits", None, "dead-relu", "error"),
    ("mlp:depth=6,width=64,act=relu,bias_init=-5", "digits", None, "vanishing-gradient", "error"),
    ("mlp:depth=20,width=64,act=linear", "digits", None, "vanishing-gradient", "error"),
    ("mlp:depth=12,width=64", "digits", None, "vanishing-gradient", "warning"),
    (
        "mlp:depth=3,width=32,final_act=sigmoid",
        "digits-binary",
        "bce",
        "unstable-loss-pairing",
        "warning",
    ),
    ("mlp:depth=3,width=32,final_act=softmax", "digits", "ce", "unstable-loss-pairing", "warning"),
    ("mlp:depth=3,width=32,final_act=softmax", "digits", "nll", "unstable-loss-pairing", "warning"),
    (
        "mlp:depth=3,width=32,act=tanh,init=normal(sw2=30)",
        "digits",
        None,
        "saturating-activation",
        "warning",
    ),
    ("rnn:hidden=32", "adding-200", None, "rnn-long-range-vanishing", "error"),
    ("rnn:hidden=32,radius=3", "adding-50", None, "rnn-exploding", "warning"),
    ("lstm:hidden=32,forget_bias=0", "adding-100", None, "rnn-long-range-vanishing", "warning"),
]


@pytest.mark.parametrize(("spec", "dspec", "loss", "slug", "severity"), SICK)
def test_pathological_models_are_found(spec, dspec, loss, slug, severity):
    d = run(spec, dspec, loss)
    f = finding(d, slug)
    assert severity_rank(f.severity) >= severity_rank(severity), (f.severity, f.evidence)
    assert f.cause and f.layers and f.evidence
    assert f.prescriptions


HEALTHY = [
    ("mlp:depth=4,width=64,act=relu,init=kaiming", "digits", None),
    ("mlp:depth=24,width=64,act=relu,residual=true,norm=layer,init=kaiming", "digits", None),
    ("mlp:depth=24,width=64,act=relu,residual=true,norm=layer", "digits", None),
    ("transformer", "digits", None),
    ("lstm:hidden=32", "adding-10", None),
    ("mlp:depth=30,width=64,act=relu,init=kaiming", "digits", None),
    ("mlp:depth=30,width=64,act=tanh,init=normal(sw2=1.0)", "digits", None),
    ("mlp:depth=20,width=64,act=selu,init=lecun", "digits", None),
    ("mlp:depth=20,width=64,act=gelu,init=kaiming", "digits", None),
    ("mlp:depth=10,width=64,act=relu,norm=batch,init=kaiming", "digits", None),
    ("mlp:depth=4,width=64,act=sigmoid", "digits", None),
    ("cnn", "digits:image=true", None),
    ("mlp:depth=3,width=32,final_act=log_softmax", "digits", "nll"),
    ("rnn:hidden=32,init=orthogonal", "adding-20", None),
]


@pytest.mark.parametrize(("spec", "dspec", "loss"), HEALTHY)
def test_healthy_models_raise_no_warning(spec, dspec, loss):
    d = run(spec, dspec, loss)
    assert alarms(d) == [], [(f.slug, f.title, f.evidence) for f in d.at_least("warning")]
