"""``saturating-activation``: units of a squashing activation that pass (almost) no gradient.

The Monitor counts, per activation module, the share of entries whose slope is below 1 % of
the activation's maximum (``saturated_frac``). For sigmoid, tanh and the other saturating
activations such a unit multiplies the backward signal by almost 0; large pre-activations
(weights or inputs too large) push units there (Glorot & Bengio 2010, Sec. 3, for sigmoid
and tanh). A layer is judged by the larger of its value at initialisation and at the last
recorded step, so saturation that sets in during training counts too.

Example::

    >>> [f.slug for f in rule_saturation(Context.build(trace))]   # doctest: +SKIP
    ['saturating-activation']
"""

from __future__ import annotations

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.registry import rule
from gradmedic.diagnosis.rules._shared import SATURATING, act_hits, num
from gradmedic.diagnosis.thresholds import (
    SATURATION_ERROR,
    SATURATION_REPORT,
    SATURATION_WARNING,
)
from gradmedic.trace.schema import Quantity

__all__ = ["rule_saturation"]


@rule(slug="saturating-activation", requires=(Quantity.SATURATED_FRAC,), priority=30)
def rule_saturation(ctx: Context) -> list[Finding]:
    """One finding listing the saturating activation layers at or above
    :data:`~gradmedic.diagnosis.thresholds.SATURATION_REPORT`; severity by the worst layer.

    ``evidence``: ``saturated_frac`` per layer, ``dphi_mean_at_init`` (the mean slope) per
    layer, and the threshold's definition."""
    _, hits = act_hits(ctx, Quantity.SATURATED_FRAC, SATURATING, SATURATION_REPORT)
    if not hits:
        return []
    worst = max(hits.values())
    if worst >= SATURATION_ERROR:
        sev = "error"
    elif worst >= SATURATION_WARNING:
        sev = "warning"
    else:
        sev = "info"
    names = list(hits)
    act = ctx.infos[names[0]].get("activation")
    dphi = {n: num(ctx.row(n).get("dphi_mean")) for n in names}
    return [
        Finding(
            slug="saturating-activation",
            severity=sev,
            title=f"Saturated {act} units (up to {worst:.0%} of a layer)",
            cause=(
                f"Up to {worst:.0%} of the {act} units sit where the derivative is below 1% of "
                "its maximum, so almost no gradient passes them; large pre-activations (weights "
                "or inputs too large) push them there."
            ),
            layers=names,
            evidence={
                "saturated_frac": {n: num(hits[n], 3) for n in names},
                "dphi_mean_at_init": dphi,
                "threshold": "|phi'| < 1% of max phi'",
            },
            prescriptions=[
                Prescription("swap-activation", {"to": "relu"}, "no saturation for x > 0"),
                Prescription("reinit", {"scheme": "xavier"}, "keeps pre-activations O(1)"),
                Prescription("add-norm", {"kind": "batch"}, "re-centres pre-activations"),
            ],
        )
    ]
