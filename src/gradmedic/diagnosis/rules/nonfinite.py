"""``nonfinite-gradient``: the first module whose output (forward) or gradient (backward) was
NaN/Inf, and the step.

The Monitor records a ``nonfinite_forward`` / ``nonfinite_backward`` row naming the first
module (in execution order) whose forward output or backward gradient was not finite, and a
``nonfinite`` row when only a parameter gradient was. A module that is non-finite at the very
first recorded step, before any update, computes the NaN itself (a log or sqrt of a negative, a
division by zero, an overflowing exp): clipping cannot help, so nothing is prescribed. Later,
an update made the values non-finite: clipping and a smaller learning rate keep steps bounded
(Pascanu, Mikolov & Bengio 2013).

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
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.registry import rule
from gradmedic.trace.schema import Quantity

__all__ = ["rule_nonfinite"]

#: The quantities of the Monitor's non-finite event rows.
_EVENTS = [
    q.value for q in (Quantity.NONFINITE_FORWARD, Quantity.NONFINITE_BACKWARD, Quantity.NONFINITE)
]


@rule(slug="nonfinite-gradient", priority=10)
def rule_nonfinite(ctx: Context) -> list[Finding]:
    """One error at the first step with a non-finite value; ``evidence``: ``first_step``, the
    first forward / backward module, the number of steps with non-finite values, whether the
    module itself produced it (``born_in_module``) and the first step whose loss was not
    finite."""
    f = ctx.trace.frame
    bad = f[f["quantity"].isin(_EVENTS)]
    if bad.empty:
        return []
    first_step = int(bad["step"].min())
    at = bad[bad["step"] == first_step]
    fwd = at[at["quantity"] == Quantity.NONFINITE_FORWARD]["module"].tolist()
    bwd = at[at["quantity"] == Quantity.NONFINITE_BACKWARD]["module"].tolist()
    bad_loss = [s for s, v in ctx.trace.series(Quantity.LOSS) if not math.isfinite(v)]
    start = ctx.trace.steps[0] if ctx.trace.steps else 0
    n_steps = int(bad["step"].nunique())
    if fwd:
        where = fwd[0]
        born = first_step == start
        cause = f"Module '{where}' produced NaN/Inf in the forward pass at step {first_step}" + (
            " before any update, so the module itself computes it (a log or sqrt of a "
            "negative, a division by zero, an overflowing exp); fix that operation."
            if born
            else "; an earlier update (an exploding step) made its input or weights non-finite."
        )
    elif bwd:
        where = bwd[0]
        born = False
        cause = (
            f"The gradient became NaN/Inf in backward at module '{where}' (step {first_step}): "
            "a step overflowed or the module's derivative is undefined there."
        )
    else:
        where = ""
        born = False
        cause = f"A parameter gradient became NaN/Inf at step {first_step}."
    pres = []
    if not born:
        pres = [
            Prescription("clip-grad-norm", {"max_norm": 1.0}, "cap each step's size"),
            Prescription("lower-lr", {"factor": 0.1}, "smaller steps keep values finite"),
        ]
    evidence: dict[str, Any] = {
        "first_step": first_step,
        "first_forward_module": fwd[0] if fwd else None,
        "first_backward_module": bwd[0] if bwd else None,
        "steps_with_nonfinite": n_steps,
        "born_in_module": born,
    }
    if bad_loss:
        evidence["first_nonfinite_loss_step"] = min(bad_loss)
    return [
        Finding(
            slug="nonfinite-gradient",
            severity="error",
            title=f"Non-finite values from step {first_step}" + (f" in '{where}'" if where else ""),
            cause=cause,
            layers=[where] if where else [],
            evidence=evidence,
            prescriptions=pres,
            step=first_step,
        )
    ]
