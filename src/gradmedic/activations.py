"""Derivatives of PyTorch activation modules, for saturation and dead-unit statistics.

For an activation module ``phi`` applied to pre-activations ``x`` the Monitor measures the
local derivative ``phi'(x)`` elementwise. Its mean over a batch is the factor by which the
activation scales the backward signal (article section 1.2: sigmoid's derivative is at most
0.25, so every sigmoid layer divides the gradient by at least 4). A unit is *saturated* when
``|phi'(x)|`` is below 1% of the activation's maximum slope (Glorot & Bengio 2010 call a sigmoid
unit saturated near 0 or 1); it is *dead* when its output is zero for every sample in the batch
(a ReLU whose pre-activation is negative everywhere, Maas et al. 2013).

Example::

    >>> import torch
    >>> d = derivative_for(torch.nn.Sigmoid())
    >>> float(d.fn(torch.zeros(3)).mean()), d.max_slope
    (0.25, 0.25)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ACTIVATION_TYPES", "Derivative", "derivative_for", "is_activation"]

#: Fraction of the maximum slope below which a unit counts as saturated.
SATURATION_FRACTION = 0.01


@dataclass(frozen=True)
class Derivative:
    """The elementwise derivative of one activation module and its largest absolute value."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    max_slope: float
    #: for slopes that are 0 or 1 only (relu, relu6, hardtanh): the boolean mask where phi' = 1,
    #: cheaper to count than the float derivative
    active: Callable[[torch.Tensor], torch.Tensor] | None = None

    def count_active(self, x: torch.Tensor) -> torch.Tensor:
        """Number of entries where phi' = 1 (only for 0/1 slopes)."""
        if self.name == "relu":  # clamp + sign + sum: 2-3x cheaper than summing a bool mask
            return x.clamp(min=0).sign_().sum()
        return self.active(x).sum()  # type: ignore[misc]


_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    return 1 - torch.tanh(x).square()


def _gelu(x: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * x.square()) / _SQRT_2PI
    return cdf + x * pdf


def _silu(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _softsign(x: torch.Tensor) -> torch.Tensor:
    return (1 + x.abs()).reciprocal().square()


def _mask(lo: float | None, hi: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        if hi is None:
            return x > lo
        if lo is None:
            return x < hi
        return (x > lo) & (x < hi)

    return fn


def _step(lo: float | None, hi: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    mask = _mask(lo, hi)
    return lambda x: mask(x).to(x.dtype)


def _leaky(slope: float | torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        s = slope
        if isinstance(s, torch.Tensor) and s.numel() > 1 and x.dim() >= 2:
            s = s.detach().to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
        elif isinstance(s, torch.Tensor):
            s = s.detach().to(x.dtype).reshape(())
        return torch.where(x > 0, torch.ones_like(x), torch.zeros_like(x) + s)

    return fn


def _elu(alpha: float, scale: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return scale * torch.where(x > 0, torch.ones_like(x), alpha * torch.exp(x.clamp(max=0)))

    return fn


_SELU_LAMBDA = 1.0507009873554805
_SELU_ALPHA = 1.6732632423543772

#: Activation module types the Monitor collects statistics for (subclasses included).
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.Sigmoid,
    nn.Tanh,
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Softsign,
    nn.Hardtanh,  # nn.ReLU6 is a Hardtanh subclass
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Mish,
    nn.Softplus,
    nn.RReLU,
    nn.LogSigmoid,
    nn.Tanhshrink,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Threshold,
)


def is_activation(module: nn.Module) -> bool:
    """True when ``module`` is an elementwise activation the Monitor knows how to differentiate."""
    return isinstance(module, ACTIVATION_TYPES)


def derivative_for(module: nn.Module) -> Derivative | None:
    """Return the elementwise derivative of an activation module, or ``None`` if unknown.

    Subclasses resolve to their nearest known base (``nn.ReLU6`` is a ``Hardtanh(0, 6)``).
    """
    m = module
    if isinstance(m, nn.Sigmoid):
        return Derivative("sigmoid", _sigmoid, 0.25)
    if isinstance(m, nn.Tanh):
        return Derivative("tanh", _tanh, 1.0)
    if isinstance(m, nn.ReLU):
        return Derivative("relu", _step(0.0, None), 1.0, _mask(0.0, None))
    if isinstance(m, nn.LeakyReLU):
        return Derivative("leaky_relu", _leaky(m.negative_slope), max(1.0, abs(m.negative_slope)))
    if isinstance(m, nn.PReLU):
        top = float(m.weight.detach().abs().max())
        return Derivative("prelu", _leaky(m.weight), max(1.0, top))
    if isinstance(m, nn.CELU):  # before ELU: not a subclass, but the same derivative shape
        a = float(m.alpha)
        return Derivative("celu", lambda x: torch.where(x > 0, 1.0, torch.exp(x / a)), 1.0)
    if isinstance(m, nn.ELU):
        a = float(m.alpha)
        return Derivative("elu", _elu(a), max(1.0, a))
    if isinstance(m, nn.SELU):
        return Derivative(
            "selu", _elu(_SELU_ALPHA, _SELU_LAMBDA), _SELU_LAMBDA * max(1.0, _SELU_ALPHA)
        )
    if isinstance(m, nn.GELU):
        return Derivative("gelu", _gelu, 1.128904)
    if isinstance(m, nn.SiLU):
        return Derivative("silu", _silu, 1.099839)
    if isinstance(m, nn.Softsign):
        return Derivative("softsign", _softsign, 1.0)
    if isinstance(m, nn.Hardtanh):
        name = "relu6" if isinstance(m, nn.ReLU6) else "hardtanh"
        lo, hi = float(m.min_val), float(m.max_val)
        return Derivative(name, _step(lo, hi), 1.0, _mask(lo, hi))
    if isinstance(m, nn.Hardsigmoid):
        return Derivative("hardsigmoid", lambda x: _step(-3.0, 3.0)(x) / 6.0, 1.0 / 6.0)
    if isinstance(m, nn.Hardswish):  # x * relu6(x + 3) / 6: slope (2x + 3) / 6 on (-3, 3)
        inner = _mask(-3.0, 3.0)

        def hardswish(x: torch.Tensor) -> torch.Tensor:
            return torch.where(x >= 3, torch.ones_like(x), inner(x) * (2 * x + 3) / 6)

        return Derivative("hardswish", hardswish, 1.5)
    if isinstance(m, nn.RReLU):  # random slope in training; its mean in expectation
        return Derivative("rrelu", _leaky((m.lower + m.upper) / 2), 1.0)
    if isinstance(m, nn.LogSigmoid):
        return Derivative("logsigmoid", lambda x: torch.sigmoid(-x), 1.0)
    if isinstance(m, nn.Tanhshrink):
        return Derivative("tanhshrink", lambda x: torch.tanh(x).square(), 1.0)
    if isinstance(m, (nn.Softshrink, nn.Hardshrink)):
        lam = float(m.lambd)
        active = lambda x: x.abs() > lam  # noqa: E731
        return Derivative(type(m).__name__.lower(), lambda x: active(x).to(x.dtype), 1.0, active)
    if isinstance(m, nn.Threshold):
        th = float(m.threshold)
        return Derivative("threshold", _step(th, None), 1.0, _mask(th, None))
    if isinstance(m, nn.Softplus):
        b = float(m.beta)
        return Derivative("softplus", lambda x: torch.sigmoid(b * x), 1.0)
    if isinstance(m, nn.Mish):

        def mish(x: torch.Tensor) -> torch.Tensor:
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                y = nn.functional.mish(x)
                (g,) = torch.autograd.grad(y.sum(), x)
            return g

        return Derivative("mish", mish, 1.0886)
    return None
