"""Gradient clippers: reference cases 16-18 of theory.md, and use inside train()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.remedies.clipping import (
    AGC,
    AutoClip,
    ClipGradNorm,
    ClipGradValue,
    global_grad_norm,
    make_clipper,
)


def _param(grad: list[float], value: list[float] | None = None) -> nn.Parameter:
    p = nn.Parameter(torch.tensor(value if value is not None else [0.0] * len(grad)))
    p.grad = torch.tensor(grad)
    return p


# -- case 16: Pascanu Algorithm 1 --------------------------------------------------------------


def test_norm_clipping_threshold_1_rescales_to_unit_norm():
    p = _param([3.0, 4.0])
    assert ClipGradNorm(1.0)([p]) == 5.0
    assert p.grad.tolist() == pytest.approx([0.6, 0.8], abs=1e-7)


def test_norm_clipping_condition_is_greater_or_equal_and_scale_is_exactly_one():
    p = _param([3.0, 4.0])
    clip = ClipGradNorm(5.0)
    assert clip([p]) == 5.0
    assert p.grad.tolist() == [3.0, 4.0]  # scaled by 5/5 = 1 exactly (no 1e-6 fudge)
    assert clip.clipped == 1  # the >= branch was taken


def test_norm_clipping_above_threshold_leaves_gradient_unchanged():
    p = _param([3.0, 4.0])
    clip = ClipGradNorm(10.0)
    clip([p])
    assert p.grad.tolist() == [3.0, 4.0]
    assert clip.clipped == 0


def test_norm_clipping_is_global_and_preserves_direction():
    a, b = _param([3.0, 0.0]), _param([0.0, 4.0, 12.0])
    before = torch.cat([a.grad, b.grad]).clone()
    assert ClipGradNorm(1.0)([a, b]) == pytest.approx(13.0, rel=1e-7)
    after = torch.cat([a.grad, b.grad])
    assert float(after.norm()) == pytest.approx(1.0, abs=1e-6)
    cos = float(torch.dot(before, after) / (before.norm() * after.norm()))
    assert cos == pytest.approx(1.0, abs=1e-7)


def test_global_norm_matches_float64_reference_for_random_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))
    net(torch.randn(4, 7)).pow(2).sum().backward()
    ref = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in net.parameters()))
    assert float(global_grad_norm([p.grad for p in net.parameters()])) == pytest.approx(
        ref, rel=1e-6
    )
    assert ClipGradNorm(0.1)(net.parameters()) == pytest.approx(ref, rel=1e-6)
    total = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in net.parameters()))
    assert total == pytest.approx(0.1, rel=1e-6)


# -- value clipping ----------------------------------------------------------------------------


def test_value_clipping_clamps_elements_and_returns_norm_before():
    p = _param([3.0, -4.0, 0.5])
    norm = ClipGradValue(1.0)([p])
    assert norm == pytest.approx(math.sqrt(9 + 16 + 0.25))
    assert p.grad.tolist() == [1.0, -1.0, 0.5]


# -- case 17: AutoClip -------------------------------------------------------------------------


def test_autoclip_threshold_is_numpy_percentile_of_history_including_current():
    clip = AutoClip(10, history=range(1, 100))
    p = _param([100.0])
    assert clip([p]) == 100.0
    assert clip.threshold == pytest.approx(10.9, abs=1e-12)
    assert clip.threshold == pytest.approx(float(np.percentile(np.arange(1, 101), 10)))
    assert p.grad.item() == pytest.approx(10.9, rel=1e-6)


def test_autoclip_first_step_never_clips_and_history_grows():
    clip = AutoClip(10)
    p = _param([3.0, 4.0])
    clip([p])
    assert p.grad.tolist() == [3.0, 4.0]
    p.grad = torch.tensor([30.0, 40.0])
    clip([p])  # history (5, 50): 10th percentile = 5 + 0.1 * 45 = 9.5
    assert clip.threshold == pytest.approx(9.5)
    assert float(p.grad.norm()) == pytest.approx(9.5, rel=1e-6)
    assert clip.history == [5.0, 50.0]


# -- case 18: AGC ------------------------------------------------------------------------------


def test_agc_unit_wise_cases_with_eps_floor():
    w = nn.Parameter(torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 2.0]]))
    w.grad = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.01, 0.0]])
    AGC(clip_factor=0.01, eps=1e-3)([w])
    row_norms = w.grad.norm(dim=1).tolist()
    assert row_norms[0] == pytest.approx(0.02, rel=1e-6)  # ratio 0.5 > 0.01 -> 0.01 * 2
    assert row_norms[1] == pytest.approx(1e-5, rel=1e-6)  # ||W|| = 0 -> eps floor 1e-3
    assert row_norms[2] == pytest.approx(0.01, rel=1e-7)  # ratio 0.005 <= 0.01 -> unchanged
    assert w.grad[0].tolist() == pytest.approx([0.02, 0.0])  # direction kept


def test_agc_treats_1d_parameters_as_one_unit_and_conv_filters_as_units():
    b = _param([3.0, 4.0], value=[0.0, 100.0])  # ||W|| = 100, ||G|| = 5 > 1 -> 1
    AGC(0.01)([b])
    assert float(b.grad.norm()) == pytest.approx(1.0, rel=1e-6)
    conv = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)  # each filter norm sqrt(18)
    conv.weight.grad = torch.ones_like(conv.weight)
    AGC(0.01)([conv.weight])
    per_filter = conv.weight.grad.flatten(1).norm(dim=1)
    assert per_filter.tolist() == pytest.approx([0.01 * math.sqrt(18)] * 3, rel=1e-6)


# -- non-finite and parsing ----------------------------------------------------------------------


def test_nonfinite_gradient_is_zeroed_by_default_and_reported():
    p = _param([float("inf"), 1.0])
    clip = ClipGradNorm(1.0)
    assert math.isinf(clip([p]))
    assert p.grad.tolist() == [0.0, 0.0]
    assert clip.skipped == 1
    q = _param([float("nan"), 1.0])
    ClipGradNorm(1.0, nonfinite="propagate")([q])
    assert math.isnan(q.grad[0].item())


def test_make_clipper_from_spec_and_round_trip():
    c = make_clipper("clip-grad-norm(max_norm=0.5)")
    assert isinstance(c, ClipGradNorm) and c.max_norm == 0.5
    assert c.spec == "clip-grad-norm(max_norm=0.5)"
    assert make_clipper(c.spec).max_norm == 0.5
    assert make_clipper("agc").clip_factor == 0.01 and make_clipper("agc").eps == 1e-3
    assert make_clipper("autoclip").percentile == 10.0
    assert make_clipper("agc(0.02, skip_last=true)").skip_last is True  # bound by the registry
    assert make_clipper("agc(0.02, skip_last=true)").clip_factor == 0.02
    assert make_clipper("reinit(scheme=kaiming)") is None


def test_make_clipper_errors_name_the_fix():
    with pytest.raises(UnknownNameError) as e:
        make_clipper("clip-grad-norm(max_nrom=1)")
    assert str(e.value) == (
        "unknown parameter of remedy 'clip-grad-norm' 'max_nrom'; did you mean 'max_norm'? "
        "Valid names: max_norm"
    )
    with pytest.raises(ConfigError) as e:
        make_clipper("clip-grad-norm(max_norm=-1)")
    assert str(e.value) == (
        "max_norm must be a positive number, got -1; e.g. clip-grad-norm(max_norm=1.0)"
    )
    with pytest.raises(ConfigError, match=r"percentile must be in \(0, 100\]"):
        AutoClip(150)


def test_clipper_inside_train_caps_every_step():
    from gradmedic.workflows.train import TrainConfig, train
    from gradmedic.zoo import build_model, load_data

    data = load_data("digits")
    model = build_model("mlp:depth=3,width=16", data.info, seed=0)
    clip = ClipGradNorm(1e-3)
    run = train(model, data, TrainConfig(steps=3), monitor=False, grad_transform=clip)
    assert len(clip.norms) == 3 and clip.clipped == 3
    assert all(n > 1e-3 for n in clip.norms)
    assert len(run.losses) == 3
