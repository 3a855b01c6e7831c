"""``divergence``: the loss rises well above its best, or stops being finite after rising.

Read from the every-step curves (the Monitor keeps the loss and the global gradient norm of
every iteration). The loss diverges when the median of its last
:data:`~gradmedic.diagnosis.thresholds.DIVERGE_WINDOW` finite values is
:data:`~gradmedic.diagnosis.thresholds.DIVERGE_LOSS_FACTOR` times its best so far and above
its first value, or when it turns NaN/Inf after it rose (its last finite value
:data:`~gradmedic.diagnosis.thresholds.LOSS_JUMP` times its best) or after the global gradient
norm grew geometrically (:func:`~gradmedic.diagnosis.rules.origin.growth_before`). The finding
names the step where the rise began: the first after the best whose loss is ``LOSS_JUMP``
times the best (or is non-finite), which comes before any NaN.

The learning rate cut comes from the update-to-weight ratio ``||dW|| / ||W||`` per layer
(median over the run): above :data:`~gradmedic.diagnosis.thresholds.UPDATE_RATIO_HIGH` per step
the rate is too high for that layer; the cut brings the largest to
:data:`~gradmedic.diagnosis.thresholds.UPDATE_RATIO_TARGET` (a tenfold cut without the ratio).
Warm-up and adaptive clipping (ZClip, Kumar et al. 2025) are prescribed beside it.

Example::

    >>> [f.slug for f in rule_divergence(Context.build(trace))]   # doctest: +SKIP
    ['divergence']
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.registry import rule
from gradmedic.diagnosis.rules._shared import num
from gradmedic.diagnosis.rules.origin import growth_before, run_start
from gradmedic.diagnosis.thresholds import (
    DIVERGE_LOSS_FACTOR,
    DIVERGE_WINDOW,
    LOSS_JUMP,
    UPDATE_RATIO_HIGH,
    UPDATE_RATIO_TARGET,
)
from gradmedic.trace.schema import Quantity

__all__ = ["loss_divergence", "lr_cut", "rule_divergence", "update_ratios"]

#: The learning-rate factors a cut is rounded down to (a 1-3-10 grid).
_GRID = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001)


def loss_divergence(
    losses: list[tuple[int, float]], norm_grew: Any = None
) -> dict[str, Any] | None:
    """``{"best", "best_step", "began", "peak", "nonfinite_step"}`` when ``losses`` (step,
    value) diverge (see the module), else None. ``norm_grew(step)``: whether the gradient norm
    grew geometrically up to ``step`` (makes a NaN after it a divergence)."""
    finite: list[tuple[int, float]] = []
    bad = None
    for s, v in losses:
        if not math.isfinite(v):
            bad = s
            break
        finite.append((s, v))
    if len(finite) < 2:
        return None
    best_step, best = min(finite, key=lambda p: p[1])
    if bad is not None:
        best_step, best = min(finite, key=lambda p: p[1])
        rose = finite[-1][1] >= LOSS_JUMP * best and finite[-1][0] > best_step
        if not (rose or (norm_grew is not None and norm_grew(bad))):
            return None
    else:
        # the best before the tail, and the tail's median against it
        if len(finite) < DIVERGE_WINDOW + 1:
            return None
        head = finite[:-DIVERGE_WINDOW]
        best_step, best = min(head, key=lambda p: p[1])
        tail = statistics.median(v for _, v in finite[-DIVERGE_WINDOW:])
        if not (best > 0 and tail >= DIVERGE_LOSS_FACTOR * best and tail > finite[0][1]):
            return None
    after = [(s, v) for s, v in finite if s > best_step]
    began = next((s for s, v in after if v >= LOSS_JUMP * best), bad)
    if began is None:
        began = after[0][0] if after else best_step
    peak = max((v for _, v in after), default=best)
    return {
        "best": best,
        "best_step": best_step,
        "began": began,
        "peak": peak,
        "nonfinite_step": bad,
    }


def update_ratios(ctx: Context) -> dict[str, float]:
    """Median ``||dW|| / ||W||`` per step of each module's weights over the run."""
    f = ctx.trace.frame
    upd = f[(f["quantity"] == Quantity.UPDATE_RATIO) & (f["parameter"] != "")]
    upd = upd[upd["value"].map(lambda v: math.isfinite(v))]
    if upd.empty:
        return {}
    return {str(k): float(v) for k, v in upd.groupby("module")["value"].median().items()}


def lr_cut(ratios: dict[str, float]) -> float:
    """The learning-rate factor that brings the largest update ratio to
    :data:`UPDATE_RATIO_TARGET`, rounded down to a 1-3-10 grid (0.1 without ratios)."""
    top = max(ratios.values(), default=0.0)
    if not top > UPDATE_RATIO_TARGET:
        return 0.1
    want = UPDATE_RATIO_TARGET / top
    return next((g for g in _GRID if g <= want), _GRID[-1])


@rule(slug="divergence", requires=(Quantity.LOSS,), priority=55)
def rule_divergence(ctx: Context) -> list[Finding]:
    """One warning at the step where the rise began. ``evidence``: ``best_loss``,
    ``best_step``, ``began_step``, ``peak_loss``, ``nonfinite_step``, ``update_ratio`` (the
    layers above :data:`UPDATE_RATIO_HIGH`, largest first) and ``lr_factor``."""
    losses = ctx.trace.series(Quantity.LOSS)

    def norm_grew(step: int) -> bool:
        return growth_before(ctx, step, run_start(ctx, step)) is not None

    d = loss_divergence(losses, norm_grew)
    if d is None:
        return []
    ratios = update_ratios(ctx)
    high = {m: r for m, r in sorted(ratios.items(), key=lambda kv: -kv[1]) if r > UPDATE_RATIO_HIGH}
    factor = lr_cut(ratios)
    if d["nonfinite_step"] is not None:
        what = f"turned non-finite at step {d['nonfinite_step']} after rising"
    else:
        what = f"rose to {d['peak']:.3g}, {d['peak'] / d['best']:.3g}x its best"
    why = (
        f"; the weights of {len(high)} layer(s) move by up to {max(high.values()):.2g} of their "
        f"norm per step (above {UPDATE_RATIO_HIGH:g}: a learning rate too high for them)"
        if high
        else ""
    )
    return [
        Finding(
            slug="divergence",
            severity="warning",
            title=f"Training diverges from step {d['began']}: the learning rate is too high",
            cause=(
                f"The loss was {d['best']:.3g} at step {d['best_step']} and {what}, rising from "
                f"step {d['began']}{why}."
            ),
            layers=list(high)[:10],
            evidence={
                "best_loss": num(d["best"]),
                "best_step": d["best_step"],
                "began_step": d["began"],
                "peak_loss": num(d["peak"]),
                "nonfinite_step": d["nonfinite_step"],
                "update_ratio": {m: num(r) for m, r in list(high.items())[:10]},
                "lr_factor": factor,
            },
            prescriptions=[
                Prescription("lower-lr", {"factor": factor}, "bring ||dW||/||W|| to ~1e-3"),
                Prescription(
                    "lr-warmup",
                    {"steps": max(10, 2 * int(d["began"]))},
                    "ramp the learning rate up linearly over the first steps",
                    manual=True,
                ),
                Prescription("zclip", {"z_thresh": 2.5}, "clip norm spikes (ZClip)"),
            ],
            step=d["began"],
        )
    ]
