"""Adaptive clippers against slow references written straight from the papers' equations."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from gradmedic.errors import ConfigError
from gradmedic.remedies import apply
from gradmedic.remedies.adaptive_clipping import AdaGC, SkipStep, SpikeClip, ZClip
from gradmedic.remedies.clipping import make_clipper

SPIKY = [1.0, 1.3, 0.9, 1.1, 0.95, 1.2, 30.0, 1.05, 0.9, 400.0, 1.1, 1.0, 0.97, 1.4, 12.0, 1.0]


def _one_param(norm: float) -> torch.nn.Parameter:
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    p.grad = torch.tensor([0.6 * norm, 0.8 * norm], dtype=torch.float64)  # ||g|| = norm
    return p


def _zclip_reference(norms, z_thresh, alpha, warmup):
    """ZClip, Kumar et al. 2025 Alg. 1: the norm applied at each step."""
    out, seen, mu, var = [], [], None, None
    for g in norms:
        if len(seen) < warmup:
            seen.append(g)
            out.append(g)
            if len(seen) == warmup:
                mu = sum(seen) / warmup
                var = sum((v - mu) ** 2 for v in seen) / warmup
            continue
        sd = math.sqrt(var)
        z = (g - mu) / sd if sd > 0 else (0.0 if g <= mu else math.inf)
        applied = mu + (z_thresh**2 / z) * sd if z > z_thresh else g
        out.append(applied)
        mu = alpha * mu + (1 - alpha) * applied
        var = alpha * var + (1 - alpha) * (applied - mu) ** 2
    return out


@pytest.mark.parametrize(("z_thresh", "alpha", "warmup"), [(2.5, 0.97, 5), (1.5, 0.9, 3)])
def test_zclip_matches_the_reference(z_thresh, alpha, warmup):
    clip = ZClip(z_thresh, alpha, warmup)
    got = []
    for g in SPIKY:
        p = _one_param(g)
        assert clip([p]) == pytest.approx(g, rel=1e-12)  # returns the norm before clipping
        got.append(float(torch.linalg.vector_norm(p.grad)))
    assert got == pytest.approx(_zclip_reference(SPIKY, z_thresh, alpha, warmup), rel=1e-9)
    assert clip.actions[:warmup] == ["warmup"] * warmup
    assert clip.actions[6] == "clip" and clip.actions[9] == "clip"


def _adagc_reference(per_step_norms, lambda_rel, beta, warmup):
    """AdaGC, Wang et al. 2025 eq. 4-5, per tensor: the norm applied at each step."""
    gammas, out = None, []
    for t, norms in enumerate(per_step_norms, start=1):
        if gammas is None:
            gammas = [0.0] * len(norms)
        if t <= warmup:
            gammas = [gm + (n - gm) / t for gm, n in zip(gammas, norms, strict=True)]
            out.append(list(norms))
            continue
        applied = [min(n, lambda_rel * gm) for n, gm in zip(norms, gammas, strict=True)]
        gammas = [beta * gm + (1 - beta) * a for gm, a in zip(gammas, applied, strict=True)]
        out.append(applied)
    return out


def test_adagc_matches_the_reference_per_tensor():
    clip = AdaGC(lambda_rel=1.05, beta=0.9, warmup=3)
    steps = [(g, 2.0 * (1.0 if k % 5 else 3.0)) for k, g in enumerate(SPIKY)]
    got = []
    for a, b in steps:
        pa, pb = _one_param(a), _one_param(b)
        clip([pa, pb])
        got.append([float(torch.linalg.vector_norm(p.grad)) for p in (pa, pb)])
    ref = _adagc_reference(steps, 1.05, 0.9, 3)
    for g_row, r_row in zip(got, ref, strict=True):
        assert g_row == pytest.approx(r_row, rel=1e-9)


def test_spike_clip_caps_entries_at_sqrt_theta_v():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=0.1)
    clip = SpikeClip(theta=4.0).bind(opt)
    p.grad = torch.tensor([1.0, -1.0, 1.0])
    clip([p])  # no second moment yet: untouched
    assert p.grad.tolist() == [1.0, -1.0, 1.0] and clip.actions == ["pass"]
    opt.step()
    v = opt.state[p]["exp_avg_sq"].clone()  # (1 - 0.999) * 1 = 1e-3 per entry
    p.grad = torch.tensor([0.05, -0.5, 0.01])
    clip([p])
    limit = math.sqrt(4.0 * float(v[0]))
    assert limit == pytest.approx(0.0632456, rel=1e-5)
    assert p.grad.tolist() == pytest.approx([0.05, -limit, 0.01], rel=1e-6)
    assert clip.actions == ["pass", "clip"]


def test_skip_step_drops_outliers_and_keeps_them_out_of_the_baseline():
    clip = SkipStep(z_thresh=4.0, alpha=0.9, warmup=5)
    kept = []
    for g in [*SPIKY, math.nan]:
        p = _one_param(g)
        clip([p])
        kept.append(bool(torch.linalg.vector_norm(p.grad) > 0))
    skipped = [i for i, k in enumerate(kept) if not k]
    assert skipped == [6, 9, 14, 16]  # the spikes 30, 400, 12 and the NaN
    assert clip.actions[16] == "skip"
    accepted = [g for i, g in enumerate(SPIKY) if i not in skipped]
    assert clip.stats.mu < 2 * statistics.median(accepted)


def test_clippers_are_remedies_with_bound_parameters():
    assert make_clipper("zclip(z_thresh=3)").spec == "zclip(z_thresh=3, alpha=0.97, warmup=25)"
    model = torch.nn.Linear(2, 2)
    _, rep = apply(model, "adagc(lambda_rel=1.1)")
    assert rep.grad_transform.spec == "adagc(lambda_rel=1.1, beta=0.98, warmup=10)"
    with pytest.raises(ConfigError, match=r"alpha must be a number in \(0, 1\), got 1.5"):
        ZClip(alpha=1.5)
    with pytest.raises(ConfigError, match=r"warmup must be a whole number of steps >= 1"):
        SkipStep(warmup=0)
