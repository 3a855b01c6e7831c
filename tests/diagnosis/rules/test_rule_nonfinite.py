"""The non-finite rule: the module that produces a NaN is named; divergence gets clipping."""

from __future__ import annotations

import torch
from torch import nn

from diagnosis_util import LogOfShifted, data, finding
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig
from gradmedic.zoo import build_model

torch.set_num_threads(1)


def test_module_that_produces_nan_is_named():
    d = data("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), LogOfShifted(), nn.Linear(32, 10))
    diag = diagnose(model=model, data=d, config=TrainConfig(steps=3, every=1))
    f = finding(diag, "nonfinite-gradient")
    assert f.severity == "error"
    assert f.step == 0
    assert f.layers == ["2"]
    assert f.evidence["first_forward_module"] == "2"
    assert f.evidence["born_in_module"] is True
    assert f.evidence["first_nonfinite_loss_step"] == 0
    assert f.cause.startswith("Module '2' produced NaN/Inf in the forward pass at step 0")
    assert f.prescriptions == []  # clipping cannot fix a module that computes NaN


def test_divergence_from_large_steps_prescribes_clipping():
    d = data("digits")
    model = build_model("mlp:depth=4,width=64,act=relu,init=kaiming", d.info, seed=0)
    diag = diagnose(model=model, data=d, config=TrainConfig(steps=15, every=1, lr=50.0))
    f = finding(diag, "nonfinite-gradient")
    assert f.step > 0 and f.evidence["born_in_module"] is False
    assert [str(p) for p in f.prescriptions] == [
        "clip-grad-norm(max_norm=1.0)",
        "lower-lr(factor=0.1)",
    ]
