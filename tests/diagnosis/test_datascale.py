"""The data's scale (kind 7): unscaled regression inputs and targets are named as the cause of
a divergence and get standardisation, with a learning-rate cut sized from the measured growth."""

from __future__ import annotations

import pytest
import torch

from diagnosis_util import event_trace, finding
from gradmedic.diagnosis.datascale import data_stats, input_mean_square, unscaled
from gradmedic.workflows.checkup import diagnose


def _case_02_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, generator=g) * 2000 - 1000
    return x, 2 * x**3 + 7 * x**2 - 8 * x + 120


def test_data_stats_of_field_case_02():
    s = data_stats(_case_02_batch())
    assert s["input_std"] == pytest.approx(476.6, rel=1e-3)
    assert s["target_std"] == pytest.approx(5.985e8, rel=1e-3)
    assert s["target_ms"] == pytest.approx(
        3.97e17, rel=1e-3
    )  # ~ the first MSE loss (tiny predictions)
    assert s["target_float"] is True and s["input_dtype"] == "float32"
    assert [u.split(" (")[0] for u in unscaled(s)] == ["inputs", "targets"]
    assert input_mean_square(s) == s["input_ms"]


def test_standardised_and_integer_data_are_not_unscaled():
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
    assert unscaled(data_stats((x, torch.randint(0, 3, (256,))))) == []
    tokens = torch.randint(0, 5000, (64, 12))  # token ids: not judged
    assert unscaled(data_stats((tokens, torch.randint(0, 3, (64,))))) == []
    assert unscaled(None) == [] and data_stats("not a batch") == {}


def test_unscaled_regression_divergence_names_the_data_and_standardises():
    """Field case 02 by its trace: one Linear(1, 1), SGD lr 0.01, the gradient norm x6.9e3 per
    step (SGD on a quadratic: |1 - lr lambda| = 6.9e3), the loss inf at step 3."""
    stats = data_stats(_case_02_batch())
    lin = {"fan_in": 1, "fan_out": 1, "sw2": float("nan"), "sb2": 0.0}
    norms, losses = [5.8e11, 4.1e15, 3.19e19, 1.9e23], [3.97e17, 1.19e25, 6.5e32, float("inf")]
    rows = [(s, "", "", "grad_norm_total", None, v) for s, v in enumerate(norms)]
    rows += [(s, "", "", "loss", None, v) for s, v in enumerate(losses)]
    rows.append((3, "", "", "nonfinite_loss", None, 1.0))
    meta = {"data_stats": stats, "train_config": {"lr": 0.01, "optimizer": "sgd"}}
    f = finding(
        diagnose(event_trace([("", "Linear", None, lin)], rows, meta)), "nonfinite-gradient"
    )
    assert (f.step, f.evidence["origin"]) == (3, "updates")  # not born in the loss at step 0
    assert f.evidence["growth_per_step"] == pytest.approx(6890, rel=1e-2)
    assert (
        "the data are not standardised (inputs (std 476.6, mean -168), targets (std 5.985e+08"
        in f.cause
    )
    assert [str(p) for p in f.prescriptions] == [
        "standardise-data(inputs=True,targets=True)",
        "lower-lr(factor=0.0001)",
    ]
    std, lower = f.prescriptions
    assert std.manual and not lower.manual
    # lr lambda ~ G + 1 = 6.9e3; x 1e-4 puts it at 0.69 < 2: the error contracts
    assert lower.predicted["lr_x_curvature_after"] == pytest.approx(0.689, rel=1e-2)
    assert not any(p.remedy == "clip-grad-norm" for p in f.prescriptions)
