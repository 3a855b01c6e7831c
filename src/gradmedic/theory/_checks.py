"""Argument checks shared by the theory modules: each raises :class:`ConfigError` saying what
the number means and which values are allowed.

Example::

    >>> _check_sw2(2.0)
    2.0
    >>> _check_sb2(-0.1)
    Traceback (most recent call last):
    ...
    gradmedic.errors.ConfigError: sigma_b2 must be >= 0 (the bias variance; use 0 for zero-initialised biases); got -0.1
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from gradmedic.errors import ConfigError


def _finite(value: Any, name: str, hint: str) -> float:
    """``float(value)``; raises ConfigError unless it is a finite real number (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number ({hint}); got {value!r}")
    return float(value)


def _check_sw2(sw2: Any) -> float:
    """The weight variance ``sigma_w^2 = fan_in Var(W)``: finite and > 0."""
    hint = "the weight variance times fan_in: 1.0 is LeCun, 2.0 is He for ReLU"
    v = _finite(sw2, "sigma_w2", hint)
    if v <= 0:
        raise ConfigError(f"sigma_w2 must be > 0 ({hint}); got {v:g}")
    return v


def _check_sb2(sb2: Any) -> float:
    """The bias variance ``sigma_b^2``: finite and >= 0."""
    hint = "the bias variance; use 0 for zero-initialised biases"
    v = _finite(sb2, "sigma_b2", hint)
    if v < 0:
        raise ConfigError(f"sigma_b2 must be >= 0 ({hint}); got {v:g}")
    return v


def _check_q(q: Any) -> float:
    """A pre-activation variance ``q``: finite and >= 0."""
    hint = "the pre-activation variance"
    v = _finite(q, "q", hint)
    if v < 0:
        raise ConfigError(f"q must be >= 0 ({hint}); got {v:g}")
    return v


def _check_depth(depth: Any) -> int:
    """A number of weight layers: an integer >= 1 (bools refused)."""
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 1:
        raise ConfigError(
            f"depth must be an integer >= 1 (the number of weight layers); got {depth!r}"
        )
    return int(depth)
