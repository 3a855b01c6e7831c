"""Torch helpers shared by the experiments: monitored training runs and trace read-outs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..trace import Trace
from ..train import TrainConfig, TrainResult, train
from ..zoo import Dataset

__all__ = [
    "first_last_ratio",
    "linear_names",
    "monitored_run",
    "per_layer_chi",
    "signal_profile",
    "smooth",
]


def monitored_run(
    model: nn.Module,
    data: Dataset,
    *,
    steps: int,
    lr: float,
    optimizer: str = "sgd",
    batch_size: int = 64,
    seed: int = 0,
    record: Iterable[int] | int | None = None,
    rnn_hidden: Iterable[int] | None = None,
    trace_path: Path | None = None,
    grad_transform: Callable[..., Any] | None = None,
    monitor: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` with :func:`gradmedic.train.train` and a Monitor recording ``record``
    (a list of steps, or every k steps; default: the first and the last step)."""
    if record is None:
        record = sorted({0, steps - 1})
    kwargs: dict[str, Any] = {"schedule": record}
    if rnn_hidden is not None:
        kwargs["rnn_hidden"] = list(rnn_hidden)
    kwargs.update(monitor or {})
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed)
    return train(
        model,
        data,
        cfg,
        monitor=kwargs,
        trace_path=trace_path,
        grad_transform=grad_transform,
    )


def linear_names(model: nn.Module, kinds: tuple[type, ...] = (nn.Linear,)) -> list[str]:
    """Qualified names of the modules of ``kinds`` in registration (= forward) order."""
    return [n for n, m in model.named_modules() if isinstance(m, kinds)]


def signal_profile(trace: Trace, names: list[str], step: int = 0) -> list[float]:
    """``||dL/dy||`` at the output of each module in ``names`` at ``step`` (nan if absent)."""
    f = trace.frame
    f = f[(f["quantity"] == "signal_out") & (f["parameter"] == "") & (f["step"] == step)]
    values = dict(zip(f["module"], f["value"], strict=True))
    return [float(values.get(n, math.nan)) for n in names]


def first_last_ratio(profile: list[float]) -> float:
    """``||dL/dh^1|| / ||dL/dh^L||`` from a signal profile."""
    if not profile or not profile[-1] > 0:
        return math.nan
    return profile[0] / profile[-1]


def per_layer_chi(profile: list[float], skip: int = 2) -> float:
    """Measured per-layer squared gain: the geometric mean of ``(s_l / s_{l+1})^2`` over
    consecutive equal-width hidden layers (the first ``skip`` and last one are left out: the
    input and output layers have other widths and the length map needs a few layers to settle
    at its fixed point). Compare with the mean-field ``chi1``."""
    inner = profile[skip:-1]
    ratios = [(a / b) ** 2 for a, b in itertools.pairwise(inner) if b > 0]
    vals = [r for r in ratios if r > 0 and math.isfinite(r)]
    if not vals:
        return math.nan
    return float(np.exp(np.mean(np.log(vals))))


def smooth(values: list[float], k: int = 10) -> np.ndarray:
    """Running mean over ``k`` steps (for readable loss curves)."""
    a = np.asarray(values, dtype=float)
    if len(a) < k or k <= 1:
        return a
    kernel = np.ones(k) / k
    return np.convolve(a, kernel, mode="valid")
