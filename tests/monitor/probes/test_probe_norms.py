"""The cheap reductions of a recorded step against plain float64 references."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradmedic import Monitor
from gradmedic.monitor.probes.base import (
    UPDATE_SAMPLE,
    foreach_norms,
    global_norm,
    norm32,
    segment_norms,
    spread_sample,
    wide_norm,
)


def _ref(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.double()))


@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1.0, 1e25])
def test_wide_norm_neither_underflows_nor_overflows(scale):
    t = torch.randn(1 << 20, generator=torch.Generator().manual_seed(0)) * scale
    assert float(wide_norm(t)) == pytest.approx(_ref(t), rel=1e-5)


def test_wide_norm_keeps_nan_inf_and_zero():
    t = torch.ones(1 << 20)
    t[7] = math.inf
    assert float(wide_norm(t)) == math.inf
    t[7] = math.nan
    assert math.isnan(float(wide_norm(t)))
    assert float(wide_norm(torch.zeros(1 << 20))) == 0.0


def test_norm32_matches_float64_on_a_feature_map():
    t = torch.randn(64, 64, 32, 32, generator=torch.Generator().manual_seed(1))
    # float32 accumulation over 4M entries: within 1e-4 of the float64 norm
    assert float(norm32(t)) == pytest.approx(_ref(t), rel=1e-4)
    assert float(norm32(t.transpose(0, 1))) == pytest.approx(_ref(t), rel=1e-4)  # strided


def test_foreach_and_global_norms_match_float64():
    gen = torch.Generator().manual_seed(2)
    ts = [torch.randn(512, 512, generator=gen), torch.randn(512, generator=gen) * 1e-25]
    ts += [torch.randn(7, generator=gen) for _ in range(5)]
    wide = [False, True, True, False, False, True, False]
    got = [float(n) for n in foreach_norms(ts, wide)]
    assert got == pytest.approx([_ref(t) for t in ts], rel=1e-5)
    total = math.sqrt(sum(_ref(t) ** 2 for t in ts))
    assert float(global_norm(ts, wide)) == pytest.approx(total, rel=1e-5)


def test_segment_norms_sum_squares_within_segments():
    got = segment_norms([torch.tensor(3.0), torch.tensor(1.0), torch.tensor(4.0)], [0, 1, 0])
    assert got.tolist() == [5.0, 1.0]


def test_spread_sample_covers_the_whole_tensor_in_blocks():
    t = torch.arange(1 << 20, dtype=torch.float32)
    s = spread_sample(t)
    assert s.numel() == UPDATE_SAMPLE and s.shape == (512, 64)
    assert float(s[0, 0]) == 0.0 and float(s[-1, 0]) == 511 * 31 * 64  # every 31st block
    assert spread_sample(torch.zeros(100)).shape == (100,)


def test_update_ratio_of_a_large_layer_is_within_1_percent_of_the_whole():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(256, 512), torch.randint(0, 10, (256,))
    before = model[0].weight.detach().clone()
    with Monitor(model, optimizer=opt, every=1) as mon:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    exact = float((model[0].weight.detach() - before).norm() / before.norm())
    f = mon.frame()
    got = f.query("module == '0' and parameter == 'weight' and quantity == 'update_ratio'")
    assert float(got.value.iloc[0]) == pytest.approx(exact, rel=0.01)
