"""``nonfinite-gradient``: the first NaN/Inf, where it was born and what made it.

The Monitor records a ``nonfinite_forward`` / ``nonfinite_backward`` row naming the first
module (in execution order) whose forward output or backward gradient was not finite, a
``nonfinite_loss`` row when the loss (or its gradient at the model's output) was the first,
and a ``nonfinite`` row when only a parameter gradient was; a non-finite recorded loss counts
too. The rule names the origin by mechanism (:mod:`~gradmedic.diagnosis.rules.origin`, the
causes and their fixes in :mod:`~gradmedic.diagnosis.rules.nonfinite_causes`), in this order:

1. weight-scale overflow: in the first steps of a run (before the weights moved much) theory's
   forward scale from the initial ``sigma_w^2`` passes the dtype's range at the measured
   module (or its square at the output): re-initialise;
2. weights already non-finite (an earlier update put NaN/Inf there): clipping and a smaller
   learning rate keep steps bounded (Pascanu, Mikolov & Bengio 2013);
3. overflow after exploding updates (the gradient norm grew geometrically up to it): a learning
   rate cut sized from the growth, standardised data when the data are unscaled;
4. a module that computes NaN/Inf from a finite input with finite weights (at a run's first
   step always: nothing was updated): fix that operation;
5. the loss (no module output non-finite): an epsilon, a clamp or a fused loss.

A NaN at a run's first step is never told as "an earlier update put it there".

The rule needs no particular quantity: a trace without non-finite rows had no non-finite
value (the Monitor watches for them by default).

Example::

    >>> [f.slug for f in rule_nonfinite(Context.build(trace))]   # doctest: +SKIP
    ['nonfinite-gradient']
"""

from __future__ import annotations

import math
from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.datascale import input_mean_square
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.registry import rule
from gradmedic.diagnosis.rules.nonfinite_causes import (
    Cause,
    divergence,
    loss_born,
    module_born,
    weight_scale,
)
from gradmedic.diagnosis.rules.origin import (
    NONFINITE_LOSS,
    forward_scale,
    growth_before,
    loss_origin,
    params_finite_before,
    run_start,
)
from gradmedic.trace.schema import Quantity

__all__ = ["rule_nonfinite"]

#: The quantities of the Monitor's non-finite event rows.
_EVENTS = [
    str(q)
    for q in (
        Quantity.NONFINITE_FORWARD,
        Quantity.NONFINITE_BACKWARD,
        Quantity.NONFINITE,
        Quantity.NONFINITE_GRADIENT,
        NONFINITE_LOSS,
    )
]
#: Steps after a run's start within which the initial weights still explain an overflow.
_EARLY = 2
#: Decades below the dtype's limit within which theory's scale explains a measured overflow.
_NEAR = 2.0


def _overflow_at(ctx: Context, step: int, start: int, where: str | None) -> Cause | None:
    """The weight-scale cause when theory's forward scale explains the overflow (see 1.)."""
    if step - start > _EARLY:
        return None
    fs = forward_scale(ctx, input_mean_square(ctx.trace.meta.get("data_stats")))
    if fs is None or fs.log10_growth <= 0.1:
        return None
    if where is not None:  # the scale theory predicts at that module (or the last before it)
        o = ctx.infos.get(where, {}).get("ord", 10**9)
        at = [v for n, v in fs.log10_rms.items() if ctx.infos[n].get("ord", 0) <= o]
        near = bool(at) and at[-1] >= fs.log10_max - _NEAR - 0.6
    else:  # only the loss or a gradient: the output's square passes the limit
        last = list(fs.log10_rms.values())[-1]
        near = 2 * last >= fs.log10_max - _NEAR
    return weight_scale(ctx, step, where, fs) if near else None


def _updates(step: int) -> Cause:
    cause = (
        f"The weights were already non-finite at step {step}: an earlier update (a NaN "
        "gradient or an exploding step) put NaN/Inf there."
    )
    pres = [
        Prescription("clip-grad-norm", {"max_norm": 1.0}, "cap each step's size"),
        Prescription("lower-lr", {"factor": 0.1}, "smaller steps keep values finite"),
    ]
    return "weights", cause, pres, {"origin": "weights"}


def _judge(ctx: Context, step: int, fwd: list[str], bwd: list[str]) -> Cause:
    start = run_start(ctx, step)
    fresh = step == start
    where = fwd[0] if fwd else None
    scale = _overflow_at(ctx, step, start, where)
    if scale is not None:
        return scale
    if where is not None and not fresh and not params_finite_before(ctx, where, step, start):
        return _updates(step)
    growth = None if fresh else growth_before(ctx, step, start)
    if growth is not None:
        return divergence(ctx, step, growth, f"'{where}'" if where else "the loss")
    if where is not None:
        return module_born(ctx, step, where, fresh)
    kind = loss_origin(ctx, step, bwd)
    if kind is not None:
        return loss_born(ctx, step, kind)
    if bwd:
        cause = (
            f"The gradient became NaN/Inf in backward at module '{bwd[0]}' (step {step}) from "
            "a finite gradient at its output: its derivative is undefined there (sqrt at 0, "
            "0/0) or overflows."
        )
        return "backward", cause, [], {"origin": "backward"}
    return "unknown", f"A parameter gradient became NaN/Inf at step {step}.", [], {}


@rule(slug="nonfinite-gradient", priority=10)
def rule_nonfinite(ctx: Context) -> list[Finding]:
    """One error at the first step with a non-finite value; ``evidence``: ``first_step``, the
    first forward / backward module, the number of steps with non-finite values,
    ``born_in_module`` (the module computed it from finite values), ``origin`` (``module``,
    ``loss``, ``weight-scale``, ``updates``, ``weights``, ``backward``), the mechanism's own
    numbers and the first step whose loss was not finite."""
    f = ctx.trace.frame
    bad = f[f["quantity"].isin(_EVENTS)]
    bad_loss = [s for s, v in ctx.trace.series(Quantity.LOSS) if not math.isfinite(v)]
    if bad.empty and not bad_loss:
        return []
    first_step = min(([int(bad["step"].min())] if not bad.empty else []) + bad_loss[:1])
    at = bad[bad["step"] == first_step]
    fwd = at[at["quantity"] == Quantity.NONFINITE_FORWARD]["module"].tolist()
    bwd = at[at["quantity"] == Quantity.NONFINITE_BACKWARD]["module"].tolist()
    origin, cause, pres, extra = _judge(ctx, first_step, fwd, bwd)
    where = fwd[0] if fwd else (bwd[0] if bwd and origin == "backward" else "")
    evidence: dict[str, Any] = {
        "first_step": first_step,
        "first_forward_module": fwd[0] if fwd else None,
        "first_backward_module": bwd[0] if bwd else None,
        "steps_with_nonfinite": len(set(bad["step"].astype(int)) | set(bad_loss)),
        "born_in_module": origin == "module",
        **extra,
    }
    if bad_loss:
        evidence["first_nonfinite_loss_step"] = min(bad_loss)
    title = f"Non-finite values from step {first_step}" + (f" in '{where}'" if where else "")
    if origin == "loss":
        title = f"NaN/Inf born in the loss at step {first_step}"
    elif origin == "weight-scale":
        title = f"Weight-scale overflow at step {first_step}" + (f" in '{where}'" if where else "")
    return [
        Finding(
            slug="nonfinite-gradient",
            severity="error",
            title=title,
            cause=cause,
            layers=[where] if where else [],
            evidence=evidence,
            prescriptions=pres,
            step=first_step,
        )
    ]
