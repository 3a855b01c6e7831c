"""Adaptive gradient clippers for spikes in modern training (Transformers under AdamW).

Like the classic clippers (:mod:`gradmedic.remedies.clipping`) each is called as
``clipper(params)`` between ``loss.backward()`` and ``optimizer.step()``, changes ``.grad`` in
place, returns the global gradient norm measured *before* it acted (a float: one host sync)
and keeps what it did in ``actions`` (one string per call: ``"pass"``, ``"clip"``, ``"skip"``
or ``"warmup"``). Their thresholds adapt to the run, so a spike cannot hide by inflating them:

- :class:`ZClip` (Kumar et al. 2025, "ZClip: Adaptive Spike Mitigation for LLM
  Pre-Training", Alg. 1): exponential moving averages of the mean ``mu`` and variance ``s2``
  of the global norm; with ``z = (g - mu) / s`` a norm with ``z > z_thresh`` is scaled to
  ``g* = mu + (z_thresh**2 / z) s`` (reciprocal clipping: the larger the spike, the harder it
  is pulled down); the EMAs are then updated with the norm actually applied (``g*``), so a
  spike never enters the baseline unclipped. ``mu`` and ``s2`` start as the mean and variance
  of the first ``warmup`` norms (no clipping during warm-up).
- :class:`AdaGC` (Wang et al. 2025, "AdaGC: Improving Training Stability for Large Language
  Model Pretraining", eq. 4-5): one threshold per parameter tensor, an EMA ``gamma_i`` of its
  own (clipped) gradient norm; ``G_i <- lambda_rel gamma_i / ||G_i|| G_i`` when
  ``||G_i|| > lambda_rel gamma_i``; ``gamma_i <- beta gamma_i + (1 - beta) ||G_i*||``. During
  the first ``warmup`` steps ``gamma_i`` is the running mean of the observed norms.
- :class:`SpikeClip` (SPAM, Huang et al. 2025, "SPAM: Spike-Aware Adam with Momentum Reset
  for Stable LLM Training", spike-aware clipping): element-wise against Adam's second moment
  ``v`` (``exp_avg_sq`` in the optimizer state): an entry with ``g^2 > theta v`` is replaced by
  ``sign(g) sqrt(theta v)``; ``theta = 5000``. Needs the optimizer (``bind(optimizer)``);
  entries without a second moment yet are left alone.
- :class:`SkipStep`: drop an update whose global norm is an outlier (as large-model runs do:
  skip the batch rather than take a step off the loss surface): ``z = (g - mu) / s`` against
  EMAs of the non-skipped norms; ``z > z_thresh`` or a non-finite norm zeroes every gradient
  (the optimizer step then changes nothing for SGD; Adam's moments still decay).

Example::

    >>> import torch
    >>> clip = ZClip(warmup=3)
    >>> p = torch.nn.Parameter(torch.zeros(1))
    >>> for g in [1.0, 1.2, 0.8, 1.1, 50.0]:
    ...     p.grad = torch.tensor([g]); _ = clip([p])
    >>> clip.actions, round(p.grad.item(), 3)
    (['warmup', 'warmup', 'warmup', 'pass', 'clip'], 1.006)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.remedies.base import RemedyReport
from gradmedic.remedies.clipping import CLIPPERS, Clipper, training_remedy
from gradmedic.remedies.registry import remedy

__all__ = ["AdaGC", "SkipStep", "SpikeClip", "ZClip"]


def _check(name: str, value: Any, lo: float, hi: float, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo < value < hi:
        raise ConfigError(
            f"{name} must be a number in ({lo:g}, {hi:g}), got {value!r}; e.g. {example}"
        )
    return float(value)


def _warmup(value: Any, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"warmup must be a whole number of steps >= 1, got {value!r}; e.g. {example}"
        )
    return int(value)


class _EmaZ:
    """EMA mean and variance of a scalar series with a plain-mean warm-up (ZClip's estimator)."""

    def __init__(self, alpha: float, warmup: int) -> None:
        self.alpha, self.warmup = alpha, warmup
        self.seen: list[float] = []
        self.mu = math.nan
        self.var = math.nan

    @property
    def ready(self) -> bool:
        return len(self.seen) >= self.warmup

    def z(self, g: float) -> float:
        sd = math.sqrt(self.var) if self.var > 0 else 0.0
        if sd == 0.0:
            return 0.0 if g <= self.mu else math.inf
        return (g - self.mu) / sd

    def warm_up(self, g: float) -> bool:
        """During warm-up take ``g`` into the plain mean and return True; after it, False."""
        if self.ready:
            return False
        self.update(g)
        return True

    def update(self, g: float) -> None:
        if not self.ready:
            self.seen.append(g)
            if self.ready:
                n = len(self.seen)
                self.mu = sum(self.seen) / n
                self.var = sum((v - self.mu) ** 2 for v in self.seen) / n
            return
        a = self.alpha
        self.mu = a * self.mu + (1 - a) * g
        self.var = a * self.var + (1 - a) * (g - self.mu) ** 2


class ZClip(Clipper):
    """Z-score clipping of the global norm (Kumar et al. 2025); see the module docstring.

    Args: ``z_thresh`` (2.5), ``alpha`` EMA decay (0.97), ``warmup`` steps (25).
    """

    name = "zclip"

    def __init__(
        self,
        z_thresh: float = 2.5,
        alpha: float = 0.97,
        warmup: int = 25,
        *,
        nonfinite: str = "zero",
    ) -> None:
        super().__init__(nonfinite)
        self.z_thresh = _check("z_thresh", z_thresh, 0.0, math.inf, "zclip(z_thresh=2.5)")
        self.alpha = _check("alpha", alpha, 0.0, 1.0, "zclip(alpha=0.97)")
        self.stats = _EmaZ(self.alpha, _warmup(warmup, "zclip(warmup=25)"))
        self.actions: list[str] = []

    def _clip(self, params: Any, grads: list[torch.Tensor], norm: float) -> bool:
        s = self.stats
        if s.warm_up(norm):
            self.actions.append("warmup")
            return False
        z = s.z(norm)
        applied = norm
        if z > self.z_thresh:
            sd = math.sqrt(max(s.var, 0.0))
            applied = s.mu + (self.z_thresh**2 / z) * sd if math.isfinite(z) else s.mu
            torch._foreach_mul_(grads, applied / norm)
        self.actions.append("clip" if applied != norm else "pass")
        s.update(applied)
        return applied != norm

    @property
    def spec(self) -> str:
        return (
            f"zclip(z_thresh={self.z_thresh:g}, alpha={self.alpha:g}, warmup={self.stats.warmup})"
        )


class AdaGC(Clipper):
    """Per-tensor adaptive clipping (Wang et al. 2025); see the module docstring.

    Args: ``lambda_rel`` (1.05), ``beta`` EMA decay (0.98), ``warmup`` steps (10).
    """

    name = "adagc"

    def __init__(
        self,
        lambda_rel: float = 1.05,
        beta: float = 0.98,
        warmup: int = 10,
        *,
        nonfinite: str = "zero",
    ) -> None:
        super().__init__(nonfinite)
        self.lambda_rel = _check("lambda_rel", lambda_rel, 0.0, math.inf, "adagc(lambda_rel=1.05)")
        self.beta = _check("beta", beta, 0.0, 1.0, "adagc(beta=0.98)")
        self.warmup = _warmup(warmup, "adagc(warmup=10)")
        self.gamma: torch.Tensor | None = None  # float64, one entry per gradient tensor
        self.steps = 0
        self.actions: list[str] = []

    def _clip(self, params: Any, grads: list[torch.Tensor], norm: float) -> bool:
        norms = torch.stack([n.double() for n in torch._foreach_norm(grads)])
        if self.gamma is None or self.gamma.shape != norms.shape:
            self.gamma, self.steps = torch.zeros_like(norms), 0
        self.steps += 1
        if self.steps <= self.warmup:  # gamma = running mean of the observed norms
            self.gamma += (norms - self.gamma) / self.steps
            self.actions.append("warmup")
            return False
        limit = self.lambda_rel * self.gamma
        scale = torch.where(norms > limit, limit / norms.clamp(min=1e-300), torch.ones_like(norms))
        clipped = bool((scale < 1).any())
        if clipped:
            torch._foreach_mul_(grads, [s.to(g.dtype) for s, g in zip(scale, grads, strict=True)])
        self.gamma = self.beta * self.gamma + (1 - self.beta) * norms * scale
        self.actions.append("clip" if clipped else "pass")
        return clipped

    @property
    def spec(self) -> str:
        return f"adagc(lambda_rel={self.lambda_rel:g}, beta={self.beta:g}, warmup={self.warmup})"


class SpikeClip(Clipper):
    """SPAM's spike-aware element-wise clipping against Adam's second moment (Huang et al.
    2025): ``g <- sign(g) sqrt(theta v)`` where ``g^2 > theta v``. Call :meth:`bind` with the
    Adam/AdamW optimizer first (``train`` does it for you); without a bound optimizer, or
    before Adam has a second moment, nothing is clipped."""

    name = "spike-clip"

    def __init__(self, theta: float = 5000.0, *, nonfinite: str = "zero") -> None:
        super().__init__(nonfinite)
        self.theta = _check("theta", theta, 0.0, math.inf, "spike-clip(theta=5000)")
        self.optimizer: torch.optim.Optimizer | None = None
        self.actions: list[str] = []

    def bind(self, optimizer: torch.optim.Optimizer) -> SpikeClip:
        """Use ``optimizer``'s ``exp_avg_sq`` state as the second moment ``v``."""
        self.optimizer = optimizer
        return self

    def _clip(self, params: Any, grads: list[torch.Tensor], norm: float) -> bool:
        state = self.optimizer.state if self.optimizer is not None else {}
        params = [params] if isinstance(params, torch.Tensor) else params
        clipped = torch.zeros((), dtype=torch.bool)
        for p in params:
            v = state.get(p, {}).get("exp_avg_sq") if p.grad is not None else None
            if v is None:
                continue
            limit = (self.theta * v).sqrt().to(p.grad.dtype)
            over = p.grad.abs() > limit
            p.grad.copy_(torch.where(over, p.grad.sign() * limit, p.grad))
            clipped = clipped | over.any()
        did = bool(clipped)
        self.actions.append("clip" if did else "pass")
        return did

    @property
    def spec(self) -> str:
        return f"spike-clip(theta={self.theta:g})"


class SkipStep(Clipper):
    """Skip an update whose global norm is an outlier (``z > z_thresh`` against EMAs of the
    accepted norms, or non-finite); see the module docstring.

    Args: ``z_thresh`` (6.0), ``alpha`` EMA decay (0.97), ``warmup`` steps (25).
    """

    name = "skip-step"

    def __init__(self, z_thresh: float = 6.0, alpha: float = 0.97, warmup: int = 25) -> None:
        super().__init__("zero")
        self.z_thresh = _check("z_thresh", z_thresh, 0.0, math.inf, "skip-step(z_thresh=6)")
        self.alpha = _check("alpha", alpha, 0.0, 1.0, "skip-step(alpha=0.97)")
        self.stats = _EmaZ(self.alpha, _warmup(warmup, "skip-step(warmup=25)"))
        self.actions: list[str] = []

    def __call__(self, params: Iterable[torch.nn.Parameter] | torch.Tensor) -> float:
        n_skipped = self.skipped
        norm = super().__call__(params)
        if self.skipped > n_skipped:  # non-finite: the base class zeroed the gradients
            self.actions.append("skip")
        return norm

    def _clip(self, params: Any, grads: list[torch.Tensor], norm: float) -> bool:
        s = self.stats
        if s.warm_up(norm):
            self.actions.append("warmup")
            return False
        if s.z(norm) > self.z_thresh:
            torch._foreach_zero_(grads)
            self.skipped += 1
            self.actions.append("skip")
            return False
        s.update(norm)
        self.actions.append("pass")
        return False

    @property
    def spec(self) -> str:
        return f"skip-step(z_thresh={self.z_thresh:g}, alpha={self.alpha:g}, warmup={self.stats.warmup})"


CLIPPERS.update({"zclip": ZClip, "adagc": AdaGC, "spike-clip": SpikeClip, "skip-step": SkipStep})


@remedy("zclip", order=141)
def _zclip_remedy(
    model: nn.Module, /, z_thresh: float = 2.5, alpha: float = 0.97, warmup: int = 25
) -> tuple[nn.Module, RemedyReport]:
    """clip global-norm spikes by their z-score against an EMA (Kumar et al. 2025)"""
    return model, training_remedy(ZClip(z_thresh, alpha, warmup))


@remedy("adagc", order=142)
def _adagc_remedy(
    model: nn.Module, /, lambda_rel: float = 1.05, beta: float = 0.98, warmup: int = 10
) -> tuple[nn.Module, RemedyReport]:
    """clip each tensor against an EMA of its own gradient norm (Wang et al. 2025)"""
    return model, training_remedy(AdaGC(lambda_rel, beta, warmup))


@remedy("spike-clip", order=143)
def _spike_clip_remedy(
    model: nn.Module, /, theta: float = 5000.0
) -> tuple[nn.Module, RemedyReport]:
    """clip gradient entries against Adam's second moment (SPAM, Huang et al. 2025)"""
    return model, training_remedy(SpikeClip(theta))


@remedy("skip-step", order=144)
def _skip_step_remedy(
    model: nn.Module, /, z_thresh: float = 6.0, alpha: float = 0.97, warmup: int = 25
) -> tuple[nn.Module, RemedyReport]:
    """skip updates whose global norm is an outlier"""
    return model, training_remedy(SkipStep(z_thresh, alpha, warmup))
