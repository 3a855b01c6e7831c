"""Gradient clippers: callables used between ``loss.backward()`` and ``optimizer.step()``.

Each clipper is called as ``clipper(params)`` with the model's parameters, rescales their
``.grad`` in place and returns the *measured* global gradient norm before clipping
(``sqrt(sum_p ||g_p||^2)``, a Python float: one host synchronisation per step). Pass one to
:func:`gradmedic.workflows.train.train` as ``grad_transform=clipper``, or call it yourself::

    clipper = ClipGradNorm(max_norm=1.0)
    loss.backward()
    norm = clipper(model.parameters())
    optimizer.step()

The four methods:

- :class:`ClipGradNorm` - Pascanu, Mikolov & Bengio 2013 (Algorithm 1): if ``||g|| >= c`` then
  ``g <- (c / ||g||) g``; one global norm over all parameters, so the direction is preserved.
- :class:`ClipGradValue` - Mikolov's element-wise clipping: ``g_i <- clamp(g_i, -c, c)``
  (changes the direction).
- :class:`AGC` - adaptive gradient clipping (Brock, De, Smith & Simonyan 2021, NFNets): for
  every unit ``i`` (row of a Linear weight, output filter of a conv; the whole tensor for 1-D
  parameters), ``G_i <- lambda * max(||W_i||, eps) / ||G_i|| * G_i`` when
  ``||G_i|| / max(||W_i||, eps) > lambda``; ``lambda = 0.01``, ``eps = 1e-3``.
- :class:`AutoClip` - Seetharaman et al. 2020: the threshold is the ``p``-th percentile
  (numpy's linear interpolation) of every global norm seen so far, the current one included,
  then global-norm clipping ``g <- min(eta / ||g||, 1) g``; ``p = 10``.

A non-finite global norm cannot be clipped into a useful direction; by default
(``nonfinite="zero"``) the gradients are set to zero so that the optimizer step does nothing
to the weights (the step is skipped), and the non-finite norm is still returned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from gradmedic._callspec import parse_call
from gradmedic.errors import ConfigError
from gradmedic.remedies.base import RemedyReport
from gradmedic.remedies.registry import parse_remedy, remedy

__all__ = [
    "AGC",
    "CLIPPERS",
    "AutoClip",
    "ClipGradNorm",
    "ClipGradValue",
    "Clipper",
    "global_grad_norm",
    "make_clipper",
]

_NONFINITE = ("zero", "propagate")


def _grads(params: Iterable[torch.nn.Parameter] | torch.Tensor) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        params = [params]
    return [p.grad for p in params if p.grad is not None]


def global_grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """``sqrt(sum ||g||^2)`` over ``grads`` as a float64 0-d tensor (no host sync).

    Per-tensor norms come from one fused ``torch._foreach_norm`` call; they are squared and
    summed in float64 so that a vanished or exploded gradient does not under/overflow in the
    sum.
    """
    if not grads:
        return torch.zeros((), dtype=torch.float64)
    norms = torch._foreach_norm(grads)
    return torch.stack([n.double() for n in norms]).square().sum().sqrt()


class Clipper:
    """Base class: keeps the history of measured norms (``norms``) and clip counts."""

    name = "clipper"

    def __init__(self, nonfinite: str = "zero") -> None:
        if nonfinite not in _NONFINITE:
            raise ConfigError(
                f"nonfinite={nonfinite!r} is invalid; use 'zero' (skip the step) or 'propagate'"
            )
        self.nonfinite = nonfinite
        self.norms: list[float] = []
        self.clipped = 0
        self.skipped = 0

    def __call__(self, params: Iterable[torch.nn.Parameter] | torch.Tensor) -> float:
        grads = _grads(params)
        total = global_grad_norm(grads)
        norm = float(total)  # the one host sync of the step
        self.norms.append(norm)
        if not grads:
            return norm
        if not math.isfinite(norm) and self.nonfinite == "zero":
            torch._foreach_zero_(grads)
            self.skipped += 1
            return norm
        if self._clip(params, grads, norm):
            self.clipped += 1
        return norm

    def _clip(self, params: Any, grads: list[torch.Tensor], norm: float) -> bool:
        raise NotImplementedError

    @property
    def spec(self) -> str:
        """The remedy spec that rebuilds this clipper, e.g. ``clip-grad-norm(max_norm=1.0)``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}<{self.spec}>"


def _scale_to(grads: list[torch.Tensor], threshold: float, norm: float) -> bool:
    """Pascanu's rule: rescale to norm ``threshold`` when ``norm >= threshold``."""
    if norm >= threshold and norm > 0:
        torch._foreach_mul_(grads, threshold / norm)
        return True
    return False


def _positive(name: str, value: Any, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}; e.g. {example}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}; e.g. {example}")
    return float(value)


class ClipGradNorm(Clipper):
    """Global-norm clipping (Pascanu et al. 2013, Algorithm 1).

    ``if ||g|| >= max_norm: g <- max_norm / ||g|| * g``. The threshold heuristic from the paper:
    look at the average norm over many updates; half to ten times it still converges.

    >>> p = torch.nn.Parameter(torch.zeros(2)); p.grad = torch.tensor([3.0, 4.0])
    >>> ClipGradNorm(1.0)([p]), p.grad.tolist()
    (5.0, [0.6000000238418579, 0.800000011920929])
    """

    name = "clip-grad-norm"

    def __init__(self, max_norm: float = 1.0, *, nonfinite: str = "zero") -> None:
        super().__init__(nonfinite)
        self.max_norm = _positive("max_norm", max_norm, "clip-grad-norm(max_norm=1.0)")

    def _clip(self, params: Any, grads: list[torch.Tensor], norm: float) -> bool:
        return _scale_to(grads, self.max_norm, norm)

    @property
    def spec(self) -> str:
        return f"clip-grad-norm(max_norm={self.max_norm:g})"


class ClipGradValue(Clipper):
    """Element-wise clipping ``g_i <- clamp(g_i, -clip_value, clip_value)`` (Mikolov 2012).

    Returns the global norm measured before clipping.
    """

    name = "clip-grad-value"

    def __init__(self, clip_value: float = 1.0, *, nonfinite: str = "zero") -> None:
        super().__init__(nonfinite)
        self.clip_value = _positive("clip_value", clip_value, "clip-grad-value(clip_value=0.5)")

    def _clip(self, params: Any, grads: list[torch.Tensor], norm: float) -> bool:
        c = self.clip_value
        for g in grads:
            g.clamp_(-c, c)
        return True

    @property
    def spec(self) -> str:
        return f"clip-grad-value(clip_value={self.clip_value:g})"


class AGC(Clipper):
    """Adaptive gradient clipping, unit-wise (Brock et al. 2021).

    For each parameter ``W`` with gradient ``G``, unit norms are taken over every dimension
    but the first (rows of a Linear weight (out, in), filters of a conv (out, in, k, k)); a
    1-D parameter (bias, norm gain) is one unit. With ``n_W = max(||W_i||, eps)``:
    ``G_i <- clip_factor * n_W / ||G_i|| * G_i`` if ``||G_i|| / n_W > clip_factor``.
    The ``eps`` floor keeps zero-initialised weights trainable (their gradient is clipped to
    ``clip_factor * eps``, i.e. almost frozen).

    NFNets do not clip the final classifier; pass ``skip_last=True`` to leave the last
    parameters (the classifier's weight and bias: the final two tensors in registration
    order) unclipped.
    """

    name = "agc"

    def __init__(
        self,
        clip_factor: float = 0.01,
        eps: float = 1e-3,
        *,
        skip_last: bool = False,
        nonfinite: str = "zero",
    ) -> None:
        super().__init__(nonfinite)
        self.clip_factor = _positive("clip_factor", clip_factor, "agc(clip_factor=0.01)")
        self.eps = _positive("eps", eps, "agc(clip_factor=0.01, eps=1e-3)")
        self.skip_last = bool(skip_last)

    def _clip(self, params: Any, grads: list[torch.Tensor], norm: float) -> bool:
        if isinstance(params, torch.Tensor):
            params = [params]
        pairs = [(p.detach(), p.grad) for p in params if p.grad is not None]
        if self.skip_last:
            pairs = pairs[:-2]
        any_clipped = torch.zeros((), dtype=torch.bool)
        for w, g in pairs:
            if w.dim() > 1:
                dims = tuple(range(1, w.dim()))
                w_norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
                g_norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
            else:
                w_norm = torch.linalg.vector_norm(w)
                g_norm = torch.linalg.vector_norm(g)
            max_norm = w_norm.clamp(min=self.eps) * self.clip_factor
            over = g_norm > max_norm
            scale = torch.where(over, max_norm / g_norm.clamp(min=1e-30), torch.ones_like(g_norm))
            g.mul_(scale.to(g.dtype))
            any_clipped = any_clipped | over.any()
        return bool(any_clipped)

    @property
    def spec(self) -> str:
        return f"agc(clip_factor={self.clip_factor:g})"


class AutoClip(Clipper):
    """AutoClip (Seetharaman, Wichern, Pardo & Le Roux 2020): quantile clipping.

    The threshold at step t is ``np.percentile(history, percentile)`` over all finite global
    norms observed so far *including the current one*, then global-norm clipping
    ``g <- min(eta / ||g||, 1) g``. ``history`` pre-loads norms (e.g. from a previous run).

    >>> clip = AutoClip(10, history=range(1, 100))
    >>> p = torch.nn.Parameter(torch.zeros(1)); p.grad = torch.tensor([100.0])
    >>> clip([p]), round(clip.threshold, 6), round(p.grad.item(), 4)
    (100.0, 10.9, 10.9)
    """

    name = "autoclip"

    def __init__(
        self,
        percentile: float = 10.0,
        *,
        history: Iterable[float] | None = None,
        nonfinite: str = "zero",
    ) -> None:
        super().__init__(nonfinite)
        p = _positive("percentile", percentile, "autoclip(percentile=10)")
        if p > 100:
            raise ConfigError(
                f"percentile must be in (0, 100], got {percentile!r}; e.g. autoclip(percentile=10)"
            )
        self.percentile = p
        self.history: list[float] = [float(v) for v in (history or [])]
        self.threshold: float = math.nan

    def _clip(self, params: Any, grads: list[torch.Tensor], norm: float) -> bool:
        if math.isfinite(norm):
            self.history.append(norm)
        if not self.history:
            return False
        self.threshold = float(np.percentile(np.asarray(self.history), self.percentile))
        if norm > self.threshold and self.threshold > 0:
            torch._foreach_mul_(grads, self.threshold / norm)
            return True
        return False

    @property
    def spec(self) -> str:
        return f"autoclip(percentile={self.percentile:g})"


#: Clipper remedy names and the classes that implement them.
CLIPPERS: dict[str, type[Clipper]] = {
    "clip-grad-norm": ClipGradNorm,
    "clip-grad-value": ClipGradValue,
    "agc": AGC,
    "autoclip": AutoClip,
}


def make_clipper(spec: Any) -> Clipper | None:
    """Build a clipper from a remedy spec (``clip-grad-norm(max_norm=0.5)``, ``agc``,
    ``autoclip(percentile=10)``, a :class:`~gradmedic.diagnosis.finding.Prescription`), or
    return ``None`` when ``spec`` names a remedy that is not a clipper (``reinit(...)``).

    The parameters are bound by the remedy registry (:func:`~gradmedic.remedies.registry.
    parse_remedy`): unknown ones raise UnknownNameError listing the valid ones, bad values
    ConfigError.

    >>> make_clipper("clip-grad-norm(max_norm=0.5)")
    ClipGradNorm<clip-grad-norm(max_norm=0.5)>
    >>> make_clipper("reinit(scheme=kaiming)") is None
    True
    """
    if spec is None:
        return None
    if isinstance(spec, Clipper):
        return spec
    name = parse_call(str(spec), what="remedy")[0]
    if name not in CLIPPERS:
        return None
    _, params = parse_remedy(spec)
    return CLIPPERS[name](**params)


# ---------------------------------------------------------------------------------------------
# registration: the training-side remedies (the model is left unchanged)


def training_remedy(clipper: Clipper) -> RemedyReport:
    """The report of a training-side remedy: ``clipper`` becomes the run's grad_transform."""
    rep = RemedyReport(spec=clipper.spec, grad_transform=clipper)
    rep.changes.append(
        f"training: {clipper.spec} between loss.backward() and optimizer.step() (model unchanged)"
    )
    return rep


@remedy("clip-grad-norm", order=110)
def _clip_grad_norm_remedy(
    model: nn.Module, /, max_norm: float = 1.0
) -> tuple[nn.Module, RemedyReport]:
    """clip the global gradient norm (Pascanu et al. 2013)"""
    return model, training_remedy(ClipGradNorm(max_norm))


@remedy("clip-grad-value", order=120)
def _clip_grad_value_remedy(
    model: nn.Module, /, clip_value: float = 1.0
) -> tuple[nn.Module, RemedyReport]:
    """clip every gradient element to [-c, c]"""
    return model, training_remedy(ClipGradValue(clip_value))


@remedy("agc", order=130)
def _agc_remedy(
    model: nn.Module, /, clip_factor: float = 0.01, eps: float = 1e-3, skip_last: bool = False
) -> tuple[nn.Module, RemedyReport]:
    """adaptive unit-wise gradient clipping (Brock et al. 2021)"""
    return model, training_remedy(AGC(clip_factor, eps, skip_last=skip_last))


@remedy("autoclip", order=140)
def _autoclip_remedy(
    model: nn.Module, /, percentile: float = 10.0
) -> tuple[nn.Module, RemedyReport]:
    """clip to a percentile of the norms seen so far (Seetharaman et al. 2020)"""
    return model, training_remedy(AutoClip(percentile))


@remedy("lower-lr", order=150)
def _lower_lr_remedy(model: nn.Module, /, factor: float = 0.1) -> tuple[nn.Module, RemedyReport]:
    """multiply the learning rate by factor"""
    if not factor > 0 or not math.isfinite(factor):
        raise ConfigError(f"lower-lr: factor={factor!r} must be a positive number; e.g. factor=0.1")
    rep = RemedyReport(spec=f"lower-lr(factor={float(factor):g})", lr_factor=float(factor))
    rep.changes.append(f"training: learning rate x {float(factor):g} (model unchanged)")
    return model, rep
