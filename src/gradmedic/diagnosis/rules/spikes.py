"""``gradient-spikes``: steps whose global gradient norm jumps far above its running baseline.

A spike is a step whose global gradient norm (:func:`gradmedic.trace.derived.global_grad_norm`,
every iteration since the Monitor keeps every-step curves) is at least
:data:`~gradmedic.trace.derived.SPIKE_FACTOR` times a robust running baseline, an EMA of the
norm's mean and variance that spikes do not update (ZClip's z-score, Kumar et al. 2025;
:func:`gradmedic.trace.derived.spike_steps`, the one definition the report's figure uses too). Such a step can throw the weights off the loss surface (a cliff, Pascanu, Mikolov &
Bengio 2013); it matters when the loss rises after it (by
:data:`~gradmedic.diagnosis.thresholds.LOSS_JUMP` within
:data:`~gradmedic.diagnosis.thresholds.LOSS_JUMP_WINDOW` steps, or stops being finite): a
warning. A spike the loss shrugs off is an info note. Without a recorded loss a spike is a
warning (its effect cannot be told).

A norm that rises steadily and geometrically up to the "spikes" is a divergence, not a spike:
there is no stationary run whose median a clipping threshold could come from (Pascanu et al.'s
heuristic), so clipping at that median (1.9e23 on unscaled regression data) would be absurd.
The finding then names the growth per step and prescribes what the growth calls for
(:func:`~gradmedic.diagnosis.rules.nonfinite_causes.growth_remedies`: a learning-rate cut sized
from it, standardised data when the data are unscaled).

Example::

    >>> [(f.slug, f.severity) for f in rule_spikes(Context.build(trace))]   # doctest: +SKIP
    [('gradient-spikes', 'warning')]
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.registry import rule
from gradmedic.diagnosis.rules._shared import num
from gradmedic.diagnosis.rules.nonfinite_causes import growth_remedies
from gradmedic.diagnosis.rules.origin import growth_before, run_start
from gradmedic.diagnosis.thresholds import LOSS_JUMP, LOSS_JUMP_WINDOW, SPIKE_FACTOR
from gradmedic.trace.derived import global_grad_norm, spike_baseline, spike_steps
from gradmedic.trace.schema import Quantity

__all__ = ["rule_spikes"]


def _harmful(spikes: list[int], loss_at: dict[int, float]) -> list[int]:
    """The spike steps after which the loss rose by :data:`LOSS_JUMP` over the median of the
    window before (the spike's own step included) or stopped being finite."""
    harmful = []
    for s in spikes:
        before = [loss_at[k] for k in range(s - LOSS_JUMP_WINDOW, s + 1) if k in loss_at]
        after = [loss_at[k] for k in range(s + 1, s + LOSS_JUMP_WINDOW + 1) if k in loss_at]
        if before and after:
            ref = statistics.median(before)
            if any(not math.isfinite(v) or v > LOSS_JUMP * ref for v in after):
                harmful.append(s)
    return harmful


def _times(ratio: float) -> str:
    """A spike factor as a reader takes it in: ``40x``, ``2.7e+11x`` from 1000 on."""
    return f"{ratio:.0f}x" if ratio < 1000 else f"{ratio:.1e}x"


@rule(slug="gradient-spikes", requires=(Quantity.GRAD_NORM_TOTAL,), priority=60)
def rule_spikes(ctx: Context) -> list[Finding]:
    """One finding for all spikes of the run, at the largest one's step.

    ``evidence``: ``baseline_grad_norm`` (the running baseline at the largest spike, what it
    is measured against), ``median_grad_norm`` (of the values that are not spikes), ``spike_steps``
    (the first 20), ``max_grad_norm``, ``factor``, and ``loss_jumped_after`` (the spikes the
    loss rose after, the first 20). The first prescription clips at the median norm."""
    series = global_grad_norm(ctx.trace)
    spikes = spike_steps(series, SPIKE_FACTOR)
    if not spikes:
        return []
    norm_at = dict(series)
    base = {s: mean for s, _, mean, _ in spike_baseline(series, SPIKE_FACTOR)}
    calm = [v for s, v in series if math.isfinite(v) and v > 0 and s not in spikes]
    med = statistics.median(calm) if calm else base[spikes[0]]
    top = max(spikes, key=lambda s: norm_at[s])
    top_norm = norm_at[top]
    loss_at = dict(ctx.trace.series(Quantity.LOSS))
    harmful = _harmful(spikes, loss_at)
    growth = growth_before(ctx, spikes[-1], run_start(ctx, spikes[0]))
    if growth is not None:
        return [_diverging(ctx, growth, top, top_norm, spikes, harmful)]
    severity = "warning" if harmful or not loss_at else "info"
    ref = base[top]
    clip = float(f"{ref:.2g}")
    return [
        Finding(
            slug="gradient-spikes",
            severity=severity,
            title=f"Gradient-norm spikes ({_times(top_norm / ref)} the running baseline)",
            cause=(
                f"The total gradient norm jumped to {top_norm:.3g} at step {top}, "
                f"{_times(top_norm / ref)} its running baseline {ref:.3g} (median {med:.3g}): "
                "steps that large throw the "
                "weights off the loss surface (a cliff, Pascanu et al. 2013)."
            ),
            layers=[],
            evidence={
                "baseline_grad_norm": num(ref),
                "median_grad_norm": num(med),
                "spike_steps": spikes[:20],
                "max_grad_norm": num(top_norm),
                "factor": SPIKE_FACTOR,
                "loss_jumped_after": harmful[:20],
            },
            prescriptions=[
                Prescription("clip-grad-norm", {"max_norm": clip}, "clip at the baseline norm"),
                Prescription("zclip", {"z_thresh": 2.5}, "clip at an EMA z-score (ZClip)"),
                Prescription("skip-step", {"z_thresh": 6.0}, "drop an outlier update"),
                Prescription("autoclip", {"percentile": 10}, "adaptive threshold"),
            ],
            step=top,
        )
    ]


def _diverging(
    ctx: Context,
    growth: dict[str, Any],
    top: int,
    top_norm: float,
    spikes: list[int],
    harmful: list[int],
) -> Finding:
    """The finding for a norm that grows geometrically up to its spikes (a divergence)."""
    text, pres, ev = growth_remedies(ctx, growth)
    return Finding(
        slug="gradient-spikes",
        severity="warning",
        title=f"Gradient norm diverges: {_times(growth['per_step'])} per step",
        cause=(
            f"The total gradient norm grows {growth['per_step']:.3g}x per step from "
            f"{growth['first_norm']:.3g} at step {growth['first_step']} (up to "
            f"{top_norm:.3g} at step {top}): a divergence from the start, not isolated spikes, "
            f"so there is no stationary norm to clip at{text}."
        ),
        layers=[],
        evidence={
            **ev,
            "spike_steps": spikes[:20],
            "max_grad_norm": num(top_norm),
            "growth_from_step": growth["first_step"],
            "loss_jumped_after": harmful[:20],
        },
        prescriptions=pres,
        step=top,
    )
