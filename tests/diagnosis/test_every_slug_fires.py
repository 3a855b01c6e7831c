"""Every slug the registry declares fires on a small case built to trigger it.

The parametrisation is the registry's own slug list (gradmedic.diagnosis.SLUGS), so a new rule
without a case here fails ``test_every_registered_slug_has_a_case``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from diagnosis.rules.test_rule_amp import _trace as amp_trace
from diagnosis.rules.test_rule_transformer import _trace as logit_trace
from diagnosis_util import (
    SPIKE_LOSSES_JUMP,
    SPIKE_NORMS,
    LogOfShifted,
    data,
    finding,
    run,
    spike_trace,
)
from gradmedic.diagnosis import SLUGS, Diagnosis
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig

torch.set_num_threads(1)


def _nan_module() -> Diagnosis:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), LogOfShifted(), nn.Linear(32, 10))
    return diagnose(model=model, data=data("digits"), config=TrainConfig(steps=2, every=1))


def _nothing_measurable() -> Diagnosis:
    """A trace of global norms only (no layer rows): nothing to judge per layer."""
    return diagnose(spike_trace([2.0] * 10, [1.0] * 10))


def _sigmoid_into_bce() -> Diagnosis:
    return diagnose(model=nn.Sequential(nn.Linear(4, 1), nn.Sigmoid()), loss=nn.BCELoss())


#: slug -> (what triggers it, severity it must have)
CASES: dict[str, tuple[Callable[[], Diagnosis], str]] = {
    "nonfinite-gradient": (_nan_module, "error"),
    # sigmoid' <= 1/4 at the default sw2 = 1/3: 0.14 per layer over 19 crossings.
    "vanishing-gradient": (lambda: run("mlp:depth=20,width=64,act=sigmoid"), "error"),
    # sw2 = 4 puts tanh in the chaotic phase: sqrt(chi1) = 1.17 per layer.
    "exploding-gradient": (
        lambda: run("mlp:depth=20,width=64,act=tanh,init=normal(sw2=4)"),
        "warning",
    ),
    # Xavier (sw2 = 1) is half ReLU's critical sw2 = 2: 10^-4.4 over 29 crossings.
    "poor-init": (lambda: run("mlp:depth=30,width=64,act=relu,init=xavier"), "error"),
    # sw2 = 30 drives tanh's pre-activations far into its flat tails: half the units.
    "saturating-activation": (
        lambda: run("mlp:depth=3,width=32,act=tanh,init=normal(sw2=30)"),
        "warning",
    ),
    # Bias -5 against unit-scale pre-activations: every unit is 0 for every sample.
    "dead-relu": (lambda: run("mlp:depth=6,width=64,act=relu,bias_init=-5"), "error"),
    "rnn-long-range-vanishing": (lambda: run("rnn:hidden=32", "adding-200"), "error"),
    # Spectral radius 3: the gradient grows going back through the 50 steps.
    "rnn-exploding": (lambda: run("rnn:hidden=32,radius=3", "adding-50"), "warning"),
    "gradient-spikes": (lambda: diagnose(spike_trace(SPIKE_LOSSES_JUMP, SPIKE_NORMS)), "warning"),
    "unstable-loss-pairing": (_sigmoid_into_bce, "warning"),
    "nothing-measurable": (_nothing_measurable, "warning"),
    "attention-logit-growth": (lambda: diagnose(logit_trace([5.0, 80.0], [2.0, 2.0])), "warning"),
    "output-logit-divergence": (lambda: diagnose(logit_trace([5.0, 6.0], [2.0, -40.0])), "warning"),
    "divergence": (
        lambda: diagnose(spike_trace([3.9, 3.6, 9.0, 30.0, 80.0, 260.0], [1.0] * 6)),
        "warning",
    ),
    "amp-skipped-steps": (lambda: diagnose(amp_trace([0, 1, 2, 3], 4)), "warning"),
    "amp-no-overflow": (lambda: diagnose(amp_trace([], 6)), "info"),
}


def test_every_registered_slug_has_a_case():
    assert set(CASES) == set(SLUGS)


@pytest.mark.parametrize("slug", SLUGS)
def test_slug_fires(slug):
    build, severity = CASES[slug]
    f = finding(build(), slug)
    assert f.severity == severity, (f.severity, f.evidence)
    assert f.title and f.cause and f.evidence
