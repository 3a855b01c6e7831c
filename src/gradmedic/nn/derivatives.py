"""Elementwise derivatives ``phi'(x)`` of PyTorch activations, as torch functions.

The Monitor evaluates them on a bounded sample of pre-activations to measure the mean slope,
the mean squared slope (the activation's backward gain, ``sqrt(E[phi'^2])``) and the share of
saturated or inactive units. Each is checked against autograd in ``tests/nn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "SATURATION_FRACTION",
    "SELU_ALPHA",
    "SELU_LAMBDA",
    "DerivFn",
    "Derivative",
    "dcelu",
    "delu",
    "dgelu",
    "dhardswish",
    "dleaky",
    "dmish",
    "dshrink",
    "dsigmoid",
    "dsilu",
    "dsoftsign",
    "dtanh",
    "mask_between",
    "step_between",
]

#: Fraction of the maximum slope below which a unit counts as saturated.
SATURATION_FRACTION = 0.01

Tensor = torch.Tensor
DerivFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Derivative:
    """The elementwise derivative of one activation module and its largest absolute value.

    ``active``: for slopes that are 0 or 1 only (relu, relu6, hardtanh, threshold), the boolean
    mask where ``phi' = 1``; cheaper to count than the float derivative.
    """

    name: str
    fn: DerivFn
    max_slope: float
    active: Callable[[Tensor], Tensor] | None = None

    def count_active(self, x: Tensor) -> Tensor:
        """Number of entries where phi' = 1 (only for 0/1 slopes)."""
        if self.name == "relu":  # clamp + sign + sum: 2-3x cheaper than summing a bool mask
            return x.clamp(min=0).sign_().sum()
        return self.active(x).sum()  # type: ignore[misc]


_SQRT_2PI = math.sqrt(2.0 * math.pi)
SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772


def mask_between(lo: float | None, hi: float | None) -> Callable[[Tensor], Tensor]:
    def fn(x: Tensor) -> Tensor:
        if hi is None:
            return x > lo
        if lo is None:
            return x < hi
        return (x > lo) & (x < hi)

    return fn


def step_between(lo: float | None, hi: float | None) -> DerivFn:
    mask = mask_between(lo, hi)
    return lambda x: mask(x).to(x.dtype)


def dleaky(slope: float | Tensor) -> DerivFn:
    def fn(x: Tensor) -> Tensor:
        s = slope
        if isinstance(s, Tensor) and s.numel() > 1 and x.dim() >= 2:
            s = s.detach().to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
        elif isinstance(s, Tensor):
            s = s.detach().to(x.dtype).reshape(())
        return torch.where(x > 0, torch.ones_like(x), torch.zeros_like(x) + s)

    return fn


def delu(alpha: float, scale: float = 1.0) -> DerivFn:
    def fn(x: Tensor) -> Tensor:
        return scale * torch.where(x > 0, torch.ones_like(x), alpha * torch.exp(x.clamp(max=0)))

    return fn


def dsigmoid(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def dtanh(x: Tensor) -> Tensor:
    return 1 - torch.tanh(x).square()


def dgelu(x: Tensor) -> Tensor:
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * x.square()) / _SQRT_2PI
    return cdf + x * pdf


def dsilu(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def dsoftsign(x: Tensor) -> Tensor:
    return (1 + x.abs()).reciprocal().square()


def dhardswish(x: Tensor) -> Tensor:  # x relu6(x + 3) / 6: slope (2x + 3) / 6 on (-3, 3)
    inner = (x > -3) & (x < 3)
    return torch.where(x >= 3, torch.ones_like(x), inner * (2 * x + 3) / 6)


def dmish(x: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(F.mish(x).sum(), x)
    return g


def dcelu(alpha: float) -> DerivFn:
    return lambda x: torch.where(x > 0, torch.ones_like(x), torch.exp(x.clamp(max=0) / alpha))


def dshrink(lam: float) -> DerivFn:
    return lambda x: (x.abs() > lam).to(x.dtype)
