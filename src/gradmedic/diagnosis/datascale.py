"""The scale of the training data, and when it is too large for the usual initialisations.

Every init scheme (Glorot & Bengio 2010; He et al. 2015) and every default learning rate
assumes inputs of unit variance. For plain SGD on a least-squares problem the error is
multiplied at every step by ``|1 - lr lambda|`` per eigen-direction of the curvature
``lambda ~ 2 E[x^2]`` (a linear layer's Hessian is ``2 E[x x^T]``), so inputs of standard
deviation 577 (``x`` in [-1000, 1000]) make ``lr = 0.01`` multiply the error by ~6.7e3 per step,
and targets of 1e9 make the first loss ~1e18: standardising inputs and targets (zero mean, unit
variance) removes both. :func:`data_stats` records the first batch's statistics (the
workflows put them in the trace's metadata as ``data_stats``), :func:`unscaled` says which are
too large.

Example::

    >>> import torch
    >>> x = torch.linspace(-1000, 1000, 64).unsqueeze(1)
    >>> s = data_stats((x, 2 * x**3))
    >>> s["input_std"], unscaled(s)
    (586.4, ['inputs (std 586.4, mean 0)', 'targets (std 7.918e+08, mean 0)'])
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["UNSCALED", "data_stats", "first_batch_stats", "input_mean_square", "unscaled"]

#: A standard deviation (or mean magnitude) of inputs or float targets from which the data count
#: as unscaled: 100x the unit scale that init schemes and default learning rates assume (the
#: MSE loss and its gradient are then ~1e4x larger; SGD's step ~1e4x too large per direction).
UNSCALED = 100.0


def _stats(t: torch.Tensor, prefix: str) -> dict[str, Any]:
    v = t.detach().double().reshape(-1)
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return {}
    return {
        f"{prefix}_mean": float(f"{float(v.mean()):.4g}"),
        f"{prefix}_std": float(f"{float(v.std(correction=0)):.4g}"),
        f"{prefix}_ms": float(f"{float((v * v).mean()):.4g}"),
        f"{prefix}_absmax": float(f"{float(v.abs().max()):.4g}"),
    }


def data_stats(batch: Any) -> dict[str, Any]:
    """Mean, standard deviation, mean square and largest magnitude of the inputs and targets
    of one ``(inputs, targets)`` batch (finite entries, float64); ``target_float`` says whether
    the targets are real numbers (regression) rather than class indices. ``{}`` for a batch
    that is not a pair of tensors."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        return {}
    x, y = batch
    out: dict[str, Any] = {}
    if isinstance(x, torch.Tensor) and not x.dtype.is_complex:
        out.update(_stats(x, "input"))
        out["input_dtype"] = str(x.dtype).replace("torch.", "")
    if isinstance(y, torch.Tensor):
        out["target_float"] = bool(y.is_floating_point())
        if y.is_floating_point():
            out.update(_stats(y, "target"))
    return out


def first_batch_stats(source: Any, batch_size: int, seed: int) -> dict[str, Any]:
    """:func:`data_stats` of the first batch ``source.batches(batch_size, seed)`` yields (a
    :class:`gradmedic.workflows.train.BatchSource`); ``{}`` when getting it fails: the run that
    follows reports the data's own error."""
    try:
        return data_stats(next(iter(source.batches(batch_size, seed))))
    except Exception:
        return {}


def unscaled(stats: dict[str, Any] | None) -> list[str]:
    """The parts of the data (``inputs``, ``targets``) whose standard deviation or mean
    magnitude is at least :data:`UNSCALED`, each with its numbers; ``[]`` when none or unknown.
    Integer inputs (token ids) are not judged."""
    out = []
    if not stats:
        return out
    for part, word in (("input", "inputs"), ("target", "targets")):
        if part == "input" and not str(stats.get("input_dtype", "float")).startswith(
            ("float", "bfloat")
        ):
            continue
        std, mean = stats.get(f"{part}_std"), stats.get(f"{part}_mean")
        if std is None or mean is None or not (math.isfinite(std) and math.isfinite(mean)):
            continue
        if std >= UNSCALED or abs(mean) >= UNSCALED:
            out.append(f"{word} (std {std:.4g}, mean {mean:.3g})")
    return out


def input_mean_square(stats: dict[str, Any] | None) -> float | None:
    """The inputs' mean square ``E[x^2]`` when recorded and finite, else None."""
    v = (stats or {}).get("input_ms")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else None
