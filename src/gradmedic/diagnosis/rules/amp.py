"""``amp-skipped-steps`` and ``amp-no-overflow``: what a GradScaler did, from the every-step
curves (``step_skipped`` and ``amp_scale`` of every iteration, ``amp_overflow`` naming where a
recorded skipped step overflowed).

A GradScaler starts at a large scale (2**16) and halves it whenever the scaled gradients
overflow float16, skipping that ``optimizer.step()``: skips while the scale settles are its
overflow probe, normal, and reported as an info note with their count. Skipping is a warning
only when it persists after the scale settled (its first unskipped step): more than
:data:`~gradmedic.diagnosis.thresholds.AMP_PERSIST_SHARE` of the later steps (at least
:data:`~gradmedic.diagnosis.thresholds.AMP_PERSIST_MIN`) with the scale still falling in the
last third of the run, or every step was skipped (the model
never updated); the finding then names the first module whose fp16 output overflowed. A scaler
that saw no overflow at all gets an info note: under bf16 autocast (float32's range) no scaler
is needed.

Example::

    >>> [f.slug for f in rule_amp(Context.build(trace))]   # doctest: +SKIP
    ['amp-skipped-steps']
"""

from __future__ import annotations

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.registry import rule
from gradmedic.diagnosis.rules._shared import num
from gradmedic.diagnosis.thresholds import AMP_PERSIST_MIN, AMP_PERSIST_SHARE
from gradmedic.trace.schema import Quantity

__all__ = ["rule_amp"]


def _first_overflow(ctx: Context, steps: list[int]) -> str | None:
    """The module named by the first ``amp_overflow`` row at one of ``steps`` ("" = none)."""
    f = ctx.trace.frame
    rows = f[(f["quantity"] == Quantity.AMP_OVERFLOW) & (f["step"].isin(steps))]
    rows = rows.sort_values("step", kind="stable")
    return None if rows.empty else str(rows["module"].iloc[0])


@rule(slugs=("amp-skipped-steps", "amp-no-overflow"))  # silent (not skipped) without a scaler
def rule_amp(ctx: Context) -> list[Finding]:
    """``evidence``: ``skipped`` (count), ``steps``, ``skipped_steps`` (first 20),
    ``settled_at`` (the first unskipped step), ``skipped_after_settling``, ``scale_first``,
    ``scale_last``, ``overflow_module``."""
    flags = ctx.trace.series(Quantity.STEP_SKIPPED)
    if not flags:
        return []
    scale = ctx.trace.series(Quantity.AMP_SCALE)
    skipped = [s for s, v in flags if v >= 0.5]
    n = len(flags)
    ev = {
        "skipped": len(skipped),
        "steps": n,
        "skipped_steps": skipped[:20],
        "scale_first": num(scale[0][1]) if scale else None,
        "scale_last": num(scale[-1][1]) if scale else None,
    }
    if not skipped:
        return [
            Finding(
                slug="amp-no-overflow",
                severity="info",
                title=f"The GradScaler saw no overflow in {n} steps",
                cause=(
                    "No step overflowed at the loss scale: with float16 the scaler only probed; "
                    "under bf16 autocast (float32's exponent range) no GradScaler is needed."
                ),
                evidence=ev,
            )
        ]
    settled = next((s for s, v in flags if v < 0.5), None)
    later = [s for s in skipped if settled is not None and s > settled]
    n_after = sum(1 for s, _ in flags if settled is not None and s > settled)
    tail = flags[min(n - 1, (2 * n) // 3)][0]  # the scale still falling in the last third
    persists = settled is None or (
        len(later) >= AMP_PERSIST_MIN
        and len(later) > AMP_PERSIST_SHARE * n_after
        and any(s >= tail for s in later)
    )
    ev.update(settled_at=settled, skipped_after_settling=len(later))
    if not persists:
        return [
            Finding(
                slug="amp-skipped-steps",
                severity="info",
                title=f"GradScaler skipped {len(skipped)} of {n} steps while its scale settled",
                cause=(
                    f"The scaled gradients overflowed float16 at {len(skipped)} step(s) and the "
                    f"scaler lowered its scale (to {ev['scale_last']}) and skipped them: its "
                    "normal overflow probe, not an error."
                ),
                evidence=ev,
                step=skipped[0],
            )
        ]
    where = _first_overflow(ctx, later or skipped)
    ev["overflow_module"] = where
    named = f"; the first fp16 output to overflow was {where!r}" if where else ""
    what = (
        f"every one of the {n} steps (the model never updated)"
        if settled is None
        else f"{len(later)} of the {n_after} steps after its scale settled at step {settled}"
    )
    return [
        Finding(
            slug="amp-skipped-steps",
            severity="warning",
            title=f"GradScaler keeps skipping steps ({len(skipped)} of {n})",
            cause=(
                f"The scaled gradients overflowed float16 at {what}, with the scale falling from "
                f"{ev['scale_first']} to {ev['scale_last']}{named}: values that large do not fit "
                "float16 at any useful scale."
            ),
            layers=[where] if where else [],
            evidence=ev,
            prescriptions=[
                Prescription(
                    "bf16-autocast",
                    {},
                    "torch.autocast(dtype=torch.bfloat16) has float32's range; drop the scaler",
                    manual=True,
                ),
                Prescription(
                    "scaler-init-scale",
                    {"init_scale": 2.0**8},
                    "GradScaler(init_scale=...) lower than the default 2**16",
                    manual=True,
                ),
            ],
            step=(later or skipped)[0],
        )
    ]
