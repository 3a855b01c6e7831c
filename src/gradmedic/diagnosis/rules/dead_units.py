"""``dead-relu``: ReLU units that output zero for every sample, so they get no gradient.

The Monitor counts, per activation module, the share of units whose output is zero on every
sample of the batch (``dead_frac``; for a convolution the unit is a channel, dead only when it
is zero at every position of every sample). Such a unit's weights receive no gradient and it
cannot recover (Maas, Hannun & Ng 2013; Lu et al. 2019). A layer is judged by the larger of its
value at initialisation and at the last recorded step; strongly negative biases before the dead
units are named as the cause.

Example::

    >>> [f.slug for f in rule_dead_units(Context.build(trace))]   # doctest: +SKIP
    ['dead-relu']
"""

from __future__ import annotations

import statistics

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.registry import rule
from gradmedic.diagnosis.rules._shared import DEAD_CAPABLE, act_hits, num, previous_weight
from gradmedic.diagnosis.thresholds import DEAD_ERROR, DEAD_REPORT, DEAD_WARNING, NEGATIVE_BIAS
from gradmedic.trace.schema import Quantity

__all__ = ["rule_dead_units"]


@rule(slug="dead-relu", requires=(Quantity.DEAD_FRAC,), priority=40)
def rule_dead_units(ctx: Context) -> list[Finding]:
    """One finding listing the ReLU layers with at least
    :data:`~gradmedic.diagnosis.thresholds.DEAD_REPORT` dead units. Error when a layer is at
    :data:`~gradmedic.diagnosis.thresholds.DEAD_ERROR` and the mean over all ReLU layers at
    :data:`~gradmedic.diagnosis.thresholds.DEAD_WARNING`; warning when either holds; else info.

    ``evidence``: ``dead_frac`` per reported layer, ``mean_dead_frac`` over all ReLU layers,
    and ``bias_mean_before``: the mean bias of the weight layer before each reported one."""
    fr, hits = act_hits(ctx, Quantity.DEAD_FRAC, DEAD_CAPABLE, DEAD_REPORT)
    if not hits:
        return []
    relus = [n for n in fr if ctx.infos.get(n, {}).get("activation") in DEAD_CAPABLE]
    mean_dead = statistics.fmean(fr[n] for n in relus)
    worst = max(hits.values())
    if worst >= DEAD_ERROR and mean_dead >= DEAD_WARNING:
        sev = "error"
    elif mean_dead >= DEAD_WARNING or worst >= DEAD_ERROR:
        sev = "warning"
    else:
        sev = "info"
    names = list(hits)
    bias = {}
    for n in names:
        prev = previous_weight(ctx, n)
        if prev and "b_mean" in ctx.infos[prev]:
            bias[n] = num(ctx.infos[prev]["b_mean"])
    neg_bias = (
        bool(bias)
        and statistics.fmean(v for v in bias.values() if isinstance(v, float)) < NEGATIVE_BIAS
    )
    cause = (
        f"{mean_dead:.0%} of the ReLU units (up to {worst:.0%} in a layer) output zero for "
        "every sample, so their weights get no gradient and cannot recover"
        + (": the biases before them are strongly negative." if neg_bias else ".")
    )
    return [
        Finding(
            slug="dead-relu",
            severity=sev,
            title=f"Dead ReLU units ({mean_dead:.0%} of all, up to {worst:.0%} of a layer)",
            cause=cause,
            layers=names,
            evidence={
                "dead_frac": {n: num(hits[n], 3) for n in names},
                "mean_dead_frac": num(mean_dead, 3),
                "bias_mean_before": bias,
            },
            prescriptions=[
                Prescription("swap-activation", {"to": "leaky_relu"}, "slope 0.01 for x < 0"),
                Prescription("reinit", {"scheme": "kaiming"}, "zero biases, He scale"),
            ],
        )
    ]
