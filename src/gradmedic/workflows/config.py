"""The settings of a training run and the optimizers by name.

:class:`TrainConfig` bounds every setting, so a run of an impossible size is refused with what
it would cost before anything is built (``--steps 1e12``, ``--seed 2**70``, ``--lr 1e39``).
Imported by :mod:`gradmedic.workflows.train`, which re-exports all three names.

Example::

    >>> TrainConfig(steps=1e3).steps
    1000
    >>> make_optimizer("momentum", [nn.Parameter(torch.zeros(2))], 0.1).defaults["momentum"]
    0.9
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from gradmedic.errors import ConfigError, unknown_name

__all__ = ["MAX_LR", "MAX_SEED", "MAX_STEPS", "OPTIMIZERS", "TrainConfig", "make_optimizer"]

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
#: Bounds of a run: a diagnosis needs tens to hundreds of steps; seeds are what torch accepts;
#: a learning rate above MAX_LR moves each weight by a million times its gradient.
MAX_STEPS = 1_000_000
MAX_SEED = 2**63 - 1
MAX_LR = 1e6


def _whole(name: str, value: Any, example: str) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, bool):
        try:
            return operator.index(value)  # int, numpy integers
        except TypeError:
            pass
    raise ConfigError(f"{name} must be a whole number, got {value!r}; e.g. {example}")


def _years(seconds: float) -> str:
    if seconds < 3600 * 24 * 365:
        return f"{seconds / 3600:.3g} hours"
    return f"{seconds / (3600 * 24 * 365):.3g} years"


@dataclass
class TrainConfig:
    """Settings of a short training run. ``optimizer``: sgd | momentum (SGD, 0.9) | adam |
    adamw | rmsprop.

    Raises ConfigError for a value out of range: steps 1..:data:`MAX_STEPS`, seed
    0..:data:`MAX_SEED`, a learning rate in (0, :data:`MAX_LR`], batch size and every >= 1.

    >>> TrainConfig(steps=10**12)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    gradmedic.errors.ConfigError: steps=1000000000000 is more than the 1,000,000 a run may take...
    """

    steps: int = 50
    batch_size: int = 64
    lr: float = 0.01
    optimizer: str = "sgd"
    seed: int = 0
    every: int = 1
    rnn_hidden: bool = False

    def __post_init__(self) -> None:
        self.steps = _whole("steps", self.steps, "--steps 50")
        self.batch_size = _whole("batch size", self.batch_size, "--batch-size 64")
        self.seed = _whole("seed", self.seed, "--seed 0")
        self.every = _whole("every", self.every, "--every 1")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}; e.g. --steps 50")
        if self.steps > MAX_STEPS:
            raise ConfigError(
                f"steps={self.steps} is more than the {MAX_STEPS:,} a run may take: a diagnosis "
                f"needs tens to hundreds of steps, and even at 1 ms per step this run would take "
                f"{_years(self.steps * 1e-3)}; e.g. --steps 50"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be from 0 to 2**63 - 1, got {self.seed}; e.g. --seed 0")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)):
            raise ConfigError(f"learning rate must be a number, got {self.lr!r}; e.g. --lr 0.01")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr}")
        if self.lr > MAX_LR:
            raise ConfigError(
                f"learning rate {self.lr:g} is too large: above {MAX_LR:g} each step moves every "
                "weight by more than a million times its gradient (above 3.4e38 the rate is "
                "infinite in float32); to see an exploding run use e.g. --lr 10"
            )
        if self.every < 1:
            raise ConfigError(
                f"every must be >= 1 (record every k-th step), got {self.every}; e.g. --every 1"
            )
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name("optimizer", self.optimizer, OPTIMIZERS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Build an optimizer by name (see :data:`OPTIMIZERS`)."""
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise unknown_name("optimizer", name, OPTIMIZERS)
