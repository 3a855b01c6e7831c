"""Non-finite values on models and losses the field cases do not contain, each predicted by its
mechanism before the rule is consulted (kinds 3, 4 and 6 of the field-case issue):

* weight-scale overflow: a std-1 init multiplies the scale by sqrt(sigma_w^2 E[phi^2] / q) per
  layer (the length map, Poole et al. 2016): x24 for a 3x3 conv with 64 channels (log10 24 =
  1.38, float32's 3.4e38 passed after ~28 layers), x11.3 for Linear(256) + ReLU (~36 layers);
* a block whose own forward takes sqrt of a negative is the origin at step 0, not an update;
* a loss that divides by the norm of a zero output row is NaN in the loss, not in a module.
"""

from __future__ import annotations

import pytest
import torch
from nonfinite_models import SqrtBlock, std1_data, std1_stack, unit_direction_loss
from torch import nn

from diagnosis_util import data, finding
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("kind", "depth", "growth", "scheme"),
    [("conv", 32, 24.0, "xavier"), ("relu", 40, 11.3, "kaiming")],
)
def test_std1_init_overflow_is_the_weight_scale(kind, depth, growth, scheme):
    torch.manual_seed(0)
    cfg = TrainConfig(steps=2, every=1, batch_size=16)
    d = diagnose(model=std1_stack(kind, depth), data=std1_data(kind), config=cfg)
    f = finding(d, "nonfinite-gradient")
    assert (f.step, f.evidence["origin"]) == (0, "weight-scale"), f.cause
    assert f.evidence["predicted_growth_per_layer"] == pytest.approx(growth, rel=0.03)
    assert [str(p) for p in f.prescriptions] == [f"reinit(scheme={scheme})"]
    assert f.prescriptions[0].predicted["log10_growth_per_layer"] == pytest.approx(0, abs=0.02)
    assert "log or sqrt" not in f.cause and "vanishing-gradient" not in d.slugs()


def test_a_block_computing_sqrt_of_a_negative_is_born_at_step_0():
    torch.manual_seed(0)
    d = diagnose(model=SqrtBlock(), data=data("digits"), config=TrainConfig(steps=2, every=1))
    f = finding(d, "nonfinite-gradient")
    assert (f.step, f.evidence["origin"], f.evidence["born_in_module"]) == (0, "module", True)
    assert "before any update" in f.cause and "earlier update" not in f.cause
    assert not {p.remedy for p in f.prescriptions} & {"clip-grad-norm", "lower-lr"}


def test_dividing_by_the_norm_of_a_zero_output_is_born_in_the_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 10), nn.ReLU())
    with torch.no_grad():
        model[0].bias.fill_(-50.0)  # every output 0: out / ||out|| = 0 / 0
    cfg = TrainConfig(steps=2, every=1)
    d = diagnose(model=model, data=data("digits"), loss=unit_direction_loss, config=cfg)
    f = finding(d, "nonfinite-gradient")
    assert (f.step, f.evidence["origin"], f.evidence["loss_operation"]) == (0, "loss", "value")
    assert f.evidence["first_forward_module"] is None
    assert [p.remedy for p in f.prescriptions] == ["loss-epsilon", "loss-clamp", "fused-loss"]
