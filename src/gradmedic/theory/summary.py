"""Everything the theory predicts for a plain MLP, as a JSON-ready dict and as terminal text.

:func:`summary` gathers the length fixed point, ``chi1``, the depth scales, the phase, the
predicted end-to-end gradient ratio and the critical weight variance (Poole et al. 2016;
Schoenholz et al. 2017) for one ``(activation, sigma_w2, sigma_b2, depth)``; it is what
``gradmedic theory`` prints. Non-finite numbers follow :mod:`gradmedic._json`.

Example::

    >>> print(format_summary(summary("relu", 2.0, 0.0, 10)).splitlines()[1])
    phase              critical
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gradmedic._json import to_jsonable
from gradmedic.theory._checks import _check_depth, _check_sb2, _check_sw2
from gradmedic.theory.critical import critical_sw2_cached
from gradmedic.theory.depth import (
    CRITICAL_TOL,
    TRAINABLE_XI_C_FACTOR,
    depth_scales_cached,
    predicted_gradient_ratio,
)
from gradmedic.theory.registry import ActivationLike, as_activation

__all__ = ["format_summary", "summary"]


def _json_num(x: float, key: str, non_finite: dict[str, str]) -> float | str:
    """``x`` encoded by gradmedic._json (NaN/inf as "nan"/"inf"/"-inf"), named in non_finite."""
    enc = to_jsonable(float(x))
    if isinstance(enc, str):
        non_finite[key] = enc
    return enc


def summary(act: ActivationLike, sw2: float, sb2: float, depth: int) -> dict[str, Any]:
    """Everything the theory predicts for a plain MLP, as a strict-JSON-safe dict.

    Keys: ``activation`` (spec string), ``sigma_w2``, ``sigma_b2``, ``depth``, ``q_star``,
    ``chi1``, ``c_star``, ``layer_gain`` (sqrt chi1), ``xi_q``, ``xi_c``, ``xi_grad``, ``phase``,
    ``norm_ratio`` (``||dL/dh^1|| / ||dL/dh^L||``), ``sq_norm_ratio``, ``log10_norm_ratio``,
    ``critical_sigma_w2`` (at this ``sigma_b2``), ``six_xi_c`` (trainable-depth rule of thumb),
    ``trainable`` (``depth <= 6 xi_c``; ``6 |xi_grad|`` when xi_c is undefined), ``notes``
    (list of strings) and ``non_finite``: the keys whose value is not finite. Non-finite numbers
    are stored as the strings ``"inf"``, ``"-inf"`` or ``"nan"`` (see :mod:`gradmedic._json`).

    Example::

        >>> d = summary("tanh", 2.0, 0.05, 30)
        >>> d["phase"], round(d["chi1"], 5), d["trainable"]
        ('chaotic', 1.04767, True)
    """
    a = as_activation(act)
    sw2, sb2, depth = _check_sw2(sw2), _check_sb2(sb2), _check_depth(depth)
    ds = depth_scales_cached(a, sw2, sb2)
    ratio = predicted_gradient_ratio(a, sw2, sb2, depth)
    crit = critical_sw2_cached(a, sb2)
    k = ds.chi1
    ph = "critical" if abs(k - 1.0) < CRITICAL_TOL else ("ordered" if k < 1.0 else "chaotic")
    six = TRAINABLE_XI_C_FACTOR * ds.xi_c
    if math.isnan(six):
        trainable = depth <= TRAINABLE_XI_C_FACTOR * abs(ds.xi_grad)
    else:
        trainable = depth <= six
    notes: list[str] = []
    if math.isinf(ds.q_star):
        notes.append(
            "q* diverges: the length map grows without bound, so xi_q, xi_c and c* are "
            "undefined; chi1 is its q -> inf limit"
        )
    elif ds.q_star == 0.0:
        notes.append("q* = 0: pre-activations shrink to zero and the net is linear near 0")
    if ph == "ordered":
        notes.append("ordered phase: gradients vanish towards the input layers")
    elif ph == "chaotic":
        notes.append("chaotic phase: gradients explode towards the input layers")
    else:
        notes.append(f"critical (|chi1 - 1| < {CRITICAL_TOL:g}): gradients keep their scale")
    nf: dict[str, str] = {}
    d: dict[str, Any] = {
        "activation": a.spec,
        "sigma_w2": sw2,
        "sigma_b2": sb2,
        "depth": depth,
        "q_star": _json_num(ds.q_star, "q_star", nf),
        "chi1": _json_num(k, "chi1", nf),
        "c_star": _json_num(ds.c_star, "c_star", nf),
        "layer_gain": _json_num(ratio.layer_gain, "layer_gain", nf),
        "xi_q": _json_num(ds.xi_q, "xi_q", nf),
        "xi_c": _json_num(ds.xi_c, "xi_c", nf),
        "xi_grad": _json_num(ds.xi_grad, "xi_grad", nf),
        "phase": ph,
        "norm_ratio": _json_num(ratio.norm_ratio, "norm_ratio", nf),
        "sq_norm_ratio": _json_num(ratio.sq_norm_ratio, "sq_norm_ratio", nf),
        "log10_norm_ratio": _json_num(ratio.log10_norm_ratio, "log10_norm_ratio", nf),
        "critical_sigma_w2": _json_num(crit, "critical_sigma_w2", nf),
        "six_xi_c": _json_num(six, "six_xi_c", nf),
        "trainable": bool(trainable),
        "notes": notes,
    }
    d["non_finite"] = nf
    return d


def _fmt(d: Mapping[str, Any], key: str, spec: str = ".6g") -> str:
    v = d.get(key)
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def format_summary(d: Mapping[str, Any]) -> str:
    """A plain-text block of :func:`summary` output, for terminals.

    Example::

        >>> print(format_summary(summary("relu", 2.0, 0.0, 10)).splitlines()[0])
        activation         relu   sigma_w2=2  sigma_b2=0  depth=10
    """
    depth = d.get("depth")
    steps = depth - 1 if isinstance(depth, int) else "L-1"
    xg = d.get("xi_grad")
    xg_note = ""
    if isinstance(xg, float):
        xg_note = "  (negative: exploding)" if xg < 0 else "  (positive: vanishing)"
    trainable = "yes" if d.get("trainable") else "no"
    if d.get("six_xi_c") == "nan":
        xg_abs = f"{abs(xg):.4g}" if isinstance(xg, float) else "n/a"
        rule = f"6 |xi_grad| = {xg_abs}; xi_c undefined"
    else:
        rule = f"6 xi_c = {_fmt(d, 'six_xi_c', '.4g')}"
    rows = [
        (
            "activation",
            f"{d.get('activation')}   sigma_w2={_fmt(d, 'sigma_w2', 'g')}  "
            f"sigma_b2={_fmt(d, 'sigma_b2', 'g')}  depth={depth}",
        ),
        ("phase", f"{d.get('phase')}"),
        ("q*", _fmt(d, "q_star")),
        ("chi1", f"{_fmt(d, 'chi1')}   (per-layer factor of ||dL/dh||^2)"),
        ("layer gain", f"{_fmt(d, 'layer_gain')}   (sqrt(chi1), per-layer factor of ||dL/dh||)"),
        ("c*", _fmt(d, "c_star")),
        ("xi_q", f"{_fmt(d, 'xi_q', '.4g')} layers"),
        ("xi_c", f"{_fmt(d, 'xi_c', '.4g')} layers"),
        ("xi_grad", f"{_fmt(d, 'xi_grad', '.4g')} layers{xg_note}"),
        (
            "norm ratio",
            f"{_fmt(d, 'norm_ratio', '.3g')}   (||dL/dh^1|| / ||dL/dh^L||, {steps} layer steps)",
        ),
        ("sq-norm ratio", _fmt(d, "sq_norm_ratio", ".3g")),
        (
            "critical sigma_w2",
            f"{_fmt(d, 'critical_sigma_w2')}   (chi1 = 1 at sigma_b2={_fmt(d, 'sigma_b2', 'g')})",
        ),
        ("trainable", f"{trainable}   (depth {depth} vs {rule})"),
    ]
    width = max(len(k) for k, _ in rows) + 1
    lines = [f"{k:<{width}} {v}" for k, v in rows]
    lines += [f"{'note':<{width}} {n}" for n in d.get("notes", [])]
    return "\n".join(lines)
