"""Derived quantities, each defined here and nowhere else.

- **End-to-end backward-signal ratio** (Glorot & Bengio 2010, eq. 6; Schoenholz et al. 2017,
  Sec. 5): ``r = ||dL/dh^first|| / ||dL/dh^last||``, the signal at the output of the first and
  of the last weighted layer (Linear/Conv/recurrent) on one step. ``diagnose``'s ratio,
  ``treat``'s health (``|log10 r|``, decades away from 1) and the lab's ratio are all
  :func:`signal_ratio`. Mean-field theory predicts it as ``sqrt(chi1)^(L-1)``.
- **Gradient spikes**: steps whose global gradient norm is at least :data:`SPIKE_FACTOR` times
  a robust running baseline and more than :data:`SPIKE_Z` of its standard deviations above it
  (:func:`spike_steps`): an EMA of the norm's mean and variance (weight :data:`SPIKE_EMA`)
  updated only with non-spike values, so a spike cannot inflate it (the z-score of ZClip, Kumar
  et al. 2025); a norm that grows steadily carries its baseline along. The diagnosis's
  ``gradient-spikes`` finding and the report's spike markers both call it.
- **Global gradient norm**: ``sqrt(sum_p ||g_p||^2)`` over every parameter, recorded by the
  Monitor as ``grad_norm_total`` (:func:`global_grad_norm` reads it back).

Example::

    >>> spike_steps([(0, 1.0), (1, 1.1), (2, 0.9), (3, 12.0), (4, 1.0)])
    [3]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gradmedic.trace.schema import Quantity
from gradmedic.trace.view import Trace

__all__ = [
    "SPIKE_EMA",
    "SPIKE_FACTOR",
    "SPIKE_Z",
    "EndToEnd",
    "end_to_end",
    "end_to_end_rows",
    "global_grad_norm",
    "health",
    "is_auxiliary",
    "pow10",
    "signal_ratio",
    "spike_baseline",
    "spike_steps",
]

#: A global gradient norm this many times the running baseline (and :data:`SPIKE_Z` standard
#: deviations above it) is a spike.
SPIKE_FACTOR = 10.0
#: The z-score above the baseline's EMA mean, in units of its EMA standard deviation, that a
#: spike exceeds (ZClip's 2.5 clips; a finding needs a clear outlier).
SPIKE_Z = 3.0
#: The weight of a new non-spike norm in the baseline's EMAs (ZClip's alpha = 0.97 is 0.03,
#: for runs of thousands of steps; a diagnosis runs tens).
SPIKE_EMA = 0.1
#: Values that enter the baseline unclipped before its variance means anything.
_SPIKE_WARMUP = 4


def pow10(x: float) -> float:
    """``10**x`` that returns 0 or inf instead of raising on under/overflow."""
    if x == -math.inf or x < -400:
        return 0.0
    if x > 400:
        return math.inf
    return 10.0**x


@dataclass
class EndToEnd:
    """The end-to-end backward-signal measurement at one step.

    ``ratio`` = signal_out(first weighted layer) / signal_out(last weighted layer);
    ``path``: the hooked modules from the first to the last weighted layer (model order);
    ``crossings``: weighted layers the signal crosses (their number on the path minus one);
    ``gain_product``: product of the measured gains of ``path[1:]`` (equal to ``ratio`` on a
    plain chain); ``chain``: True when every module's input signal is the previous module's
    output signal (no skip connection or branch on the path); ``contributions``: log10 of the
    end-to-end ratio split by cause: ``weights``, ``activation`` (derivative), ``dead_units``,
    ``norm`` (normalisation), ``structural`` (pooling/reshaping/dropout), ``other`` (modules
    without a model: unknown activations, custom layers) and ``between``: the signal lost or
    gained *between* hooked modules, ``sum log10(signal_out(prev) / signal_in(next))`` over the
    junctions of the path (functional calls such as ``torch.sigmoid`` in ``forward``, or skip
    connections adding to the signal). Since ``so_{k-1}/so_k = (so_{k-1}/si_k)(si_k/so_k)`` the
    parts add up to ``log10 ratio`` exactly when every module on the path has both signals.
    """

    step: int
    first: str
    last: str
    ratio: float
    crossings: int
    path: list[str]
    gain_product: float | None
    chain: bool
    contributions: dict[str, float] = field(default_factory=dict)
    predicted_product: float | None = None


def is_auxiliary(name: str) -> bool:
    """True for modules of an auxiliary branch: a path segment of the qualified name starts
    with ``aux`` (``aux_heads.0`` of :class:`gradmedic.remedies.heads.AuxiliaryHeads`,
    GoogLeNet's ``aux1``/``aux2``, ``aux_classifier``). Their layers end a side output, not the
    main path, so the end-to-end ratio never starts or ends there."""
    return any(seg.lower().startswith("aux") for seg in str(name).split("."))


def _on_main_path(r: dict[str, Any]) -> bool:
    return r["category"] in ("weight", "recurrent") and not is_auxiliary(r["module"])


def _weighted_names(rows: list[dict[str, Any]]) -> list[str]:
    return [
        r["module"]
        for r in rows
        if _on_main_path(r)
        and r["signal_out"] is not None
        and math.isfinite(r["signal_out"])
        and r["signal_out"] > 0
    ]


def end_to_end_rows(rows: list[dict[str, Any]], step: int) -> EndToEnd | None:
    """The end-to-end measurement over per-layer ``rows`` (:meth:`Trace.layer_rows`, with
    ``predicted_gain`` where theory added it); None when fewer than two weighted layers carry
    a backward signal."""
    if not rows:
        return None
    weighted = _weighted_names(rows)
    # The first weighted layer may have received no signal at all (blocked upstream): keep it.
    candidates = [r["module"] for r in rows if _on_main_path(r) and r["signal_out"] is not None]
    if len(candidates) < 2 or not weighted:
        return None
    first, last = candidates[0], weighted[-1]
    idx = {r["module"]: i for i, r in enumerate(rows)}
    if idx[first] >= idx[last]:
        return None
    path_rows = [r for r in rows[idx[first] : idx[last] + 1] if not is_auxiliary(r["module"])]
    so_first = rows[idx[first]]["signal_out"]
    so_last = rows[idx[last]]["signal_out"]
    ratio = so_first / so_last if so_last else math.nan
    crossings = sum(1 for r in path_rows if r["category"] in ("weight", "recurrent")) - 1
    chain = True
    prev = path_rows[0]
    for r in path_rows[1:]:
        si, so = r["signal_in"], prev["signal_out"]
        if si is None or so is None:
            chain = False
            break
        if not math.isclose(si, so, rel_tol=1e-4, abs_tol=1e-300):
            chain = False
            break
        prev = r
    contributions = {"weights": 0.0, "activation": 0.0, "dead_units": 0.0, "norm": 0.0}
    contributions.update(structural=0.0, other=0.0, between=0.0)
    prev_out = path_rows[0]["signal_out"]
    for r in path_rows[1:]:
        si = r["signal_in"]
        if prev_out is not None and si is not None and prev_out > 0 and si > 0:
            contributions["between"] += math.log10(prev_out / si)
        prev_out = r["signal_out"]
    log_prod = 0.0
    pred_log = 0.0
    pred_ok = True
    prod_ok = True
    for r in path_rows[1:]:
        g = r["gain"]
        if g is None or not math.isfinite(g):
            prod_ok = False
            continue
        lg = math.log10(g) if g > 0 else -math.inf
        log_prod += lg
        cat = r["category"]
        if cat in ("weight", "recurrent"):
            contributions["weights"] += lg
        elif cat == "activation":
            dead = r.get("dead_frac") or 0.0
            dead_part = 0.5 * math.log10(max(1.0 - dead, 1e-300)) if dead > 0 else 0.0
            dead_part = max(dead_part, lg) if math.isfinite(lg) else dead_part
            contributions["dead_units"] += dead_part
            contributions["activation"] += lg - dead_part
        elif cat == "norm":
            contributions["norm"] += lg
        elif cat == "structural":
            contributions["structural"] += lg
        else:
            contributions["other"] += lg
        pg = r.get("predicted_gain")
        if pg is None or not (pg > 0):
            pred_ok = False
        else:
            pred_log += math.log10(pg)
    gain_product = pow10(log_prod) if prod_ok else None
    return EndToEnd(
        step=int(step),
        first=first,
        last=last,
        ratio=float(ratio),
        crossings=int(crossings),
        path=[r["module"] for r in path_rows],
        gain_product=gain_product,
        chain=chain,
        contributions={k: float(v) for k, v in contributions.items()},
        predicted_product=pow10(pred_log) if pred_ok else None,
    )


def end_to_end(trace: Trace, step: int | None = None) -> EndToEnd | None:
    """:func:`end_to_end_rows` on the trace's measured rows at ``step`` (default: the first
    step with a backward signal). ``predicted_product`` stays None here: use
    ``gradmedic.diagnosis.end_to_end`` for the version with theory's predictions."""
    steps = trace.signal_steps() or trace.steps
    if not steps:
        return None
    s = steps[0] if step is None else int(step)
    return end_to_end_rows(trace.layer_rows(s), s)


def signal_ratio(trace: Trace, step: int | None = None) -> float:
    """The end-to-end backward-signal ratio at ``step`` (default: the first step with a
    signal); NaN when the trace cannot tell (fewer than two weighted layers with a signal)."""
    e = end_to_end(trace, step)
    return math.nan if e is None else e.ratio


def health(ratio: float) -> float:
    """Gradient health of a ratio: ``|log10 r|``, decades away from 1 (0 is ideal); inf for a
    ratio of 0, inf or NaN (no usable signal)."""
    if not (ratio > 0) or not math.isfinite(ratio):
        return math.inf
    return abs(math.log10(ratio))


def global_grad_norm(trace: Trace) -> list[tuple[int, float]]:
    """``(step, ||g||)`` of the global gradient norm over every recorded step."""
    return trace.series(Quantity.GRAD_NORM_TOTAL)


def spike_steps(series: Sequence[tuple[int, float]], factor: float = SPIKE_FACTOR) -> list[int]:
    """Steps whose value is at least ``factor`` times the running baseline and more than
    :data:`SPIKE_Z` standard deviations above it.

    The baseline starts at the first finite value and is an EMA of the mean and variance
    (:data:`SPIKE_EMA`) updated only with values that are not spikes, after its first few
    values each clipped at :data:`SPIKE_Z` standard deviations above the mean (ZClip's
    update), so neither a spike nor a smaller outlier inflates it. The first value is never
    a spike (initialisation scale is the depth rules' business, not a jump during training);
    non-finite and zero values are not spikes (non-finite ones are non-finite events) and do
    not move the baseline. Needs at least 5 finite values; fewer give no spikes.

    Example::

        >>> spike_steps([(0, 1.0), (1, 1.2), (2, 30.0), (3, 40.0), (4, 1.1)])  # 40 stays one
        [2, 3]
    """
    return [s for s, spike, *_ in spike_baseline(series, factor) if spike]


def spike_baseline(
    series: Sequence[tuple[int, float]], factor: float = SPIKE_FACTOR
) -> list[tuple[int, bool, float, float]]:
    """``(step, is_spike, baseline mean, baseline std)`` of every finite positive value after
    the first, the baseline as it was before that value (see :func:`spike_steps`)."""
    finite = [(int(s), float(v)) for s, v in series if math.isfinite(v) and v > 0]
    if len(finite) < 5:
        return []
    mean, var, n = finite[0][1], 0.0, 1
    out = []
    for s, v in finite[1:]:
        sd = math.sqrt(var)
        spike = v >= factor * mean and v - mean > SPIKE_Z * sd
        out.append((s, spike, mean, sd))
        if not spike:  # once warmed up, an outlier enters clipped at z = SPIKE_Z (as in ZClip)
            delta = (min(v, mean + SPIKE_Z * sd) if n >= _SPIKE_WARMUP else v) - mean
            n += 1
            mean += SPIKE_EMA * delta
            var = (1.0 - SPIKE_EMA) * (var + SPIKE_EMA * delta * delta)
    return out
