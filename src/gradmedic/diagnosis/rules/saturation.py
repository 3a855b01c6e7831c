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

import math
from typing import Any

import numpy as np

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.prescribe import fans, scheme_sw2
from gradmedic.diagnosis.registry import rule
from gradmedic.diagnosis.rules._shared import SATURATING, act_hits, num, previous_weight
from gradmedic.diagnosis.thresholds import (
    SATURATION_ERROR,
    SATURATION_REPORT,
    SATURATION_WARNING,
)
from gradmedic.theory import get_activation
from gradmedic.theory.gains import theory_activation
from gradmedic.trace.schema import Quantity

__all__ = ["rule_saturation", "saturated_share"]


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
    top = max(names, key=lambda n: hits[n])
    evidence = {
        "saturated_frac": {n: num(hits[n], 3) for n in names},
        "dphi_mean_at_init": dphi,
        "threshold": "|phi'| < 1% of max phi'",
    }
    cause = (
        f"Up to {worst:.0%} of the {act} units sit where the derivative is below 1% of its "
        "maximum, so almost no gradient passes them; large pre-activations (weights or inputs "
        "too large) push them there"
    )
    pres = [Prescription("swap-activation", {"to": "relu"}, "no saturation for x > 0")]
    scale = _weight_scale(ctx, top)
    if scale is None:
        pres += [
            Prescription("reinit", {"scheme": "xavier"}, "keeps pre-activations O(1)"),
            Prescription("add-norm", {"kind": "batch"}, "re-centres pre-activations"),
        ]
    else:
        text, fixes, ev = scale
        cause += text
        pres += fixes
        evidence.update(ev)
    return [
        Finding(
            slug="saturating-activation",
            severity=sev,
            title=f"Saturated {act} units (up to {worst:.0%} of a layer)",
            cause=cause + ".",
            layers=names,
            evidence=evidence,
            prescriptions=pres,
        )
    ]


def saturated_share(spec: str, q: float) -> float | None:
    """Theory's share of units with ``|phi'(sqrt(q) z)| < 1%`` of ``max |phi'|`` for
    ``z ~ N(0, 1)`` (what the Monitor's ``saturated_frac`` measures); None when theory has no
    model of ``spec``.

    >>> round(saturated_share("sigmoid", 100 / 3), 2)      # field case 14: W ~ N(0, 1), x ~ U[0, 1)
    0.3
    """
    try:
        a = get_activation(spec)
        z = np.linspace(-12.0, 12.0, 24001)
        slope = np.abs(a.dphi(np.sqrt(q) * z))
        peak = float(a.dphi_extrema().sup_abs)
    except Exception:
        return None
    w = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    return float(np.sum(w[slope < 0.01 * peak]))


def _weight_scale(ctx: Context, name: str) -> tuple[str, list[Prescription], dict[str, Any]] | None:
    """When the weight layer before activation ``name`` is what makes ``q`` large: the
    sentence, the re-scaling prescriptions with theory's saturated share after them, and the
    evidence; None without a weight layer, a measured ``q`` or a model of the activation."""
    prev = previous_weight(ctx, name)
    info, q = ctx.infos.get(prev or "", {}), ctx.row(name).get("preact_ms")
    spec = theory_activation(ctx.infos.get(name, {}))
    sw2, (fi, fo) = info.get("sw2"), fans(info)
    if prev is None or q is None or spec is None or not sw2 or not math.isfinite(sw2):
        return None
    new_sw2 = scheme_sw2("xavier", spec, fi, fo) or 1.0
    q_after = q * new_sw2 / sw2
    after = saturated_share(spec, q_after)
    pred = {"preact_ms_after": num(q_after), "saturated_frac_after": num(after, 3)}
    text = (
        f"; here the weights of '{prev}' (sigma_w^2 = fan_in Var(W) = {sw2:.3g}) make the "
        f"pre-activations' mean square {q:.3g}, and theory puts {saturated_share(spec, q):.0%} "
        f"of the units in the flat tails at that scale, {after:.0%} at sigma_w^2 = {new_sw2:.3g}"
    )
    if info.get("functional"):  # a bare Parameter: no module for reinit to act on
        std = float(f"{math.sqrt(new_sw2 / fi):.3g}")
        fix = Prescription(
            "scale-init",
            {"std": std},
            f"draw '{info.get('param', prev)}' with std sqrt({new_sw2:.3g}/fan_in)",
            predicted=pred,
            manual=True,
        )
    else:
        fix = Prescription("reinit", {"scheme": "xavier"}, "pre-activations O(1)", predicted=pred)
    ev = {"weight_layer": prev, "sigma_w2": num(sw2), "preact_ms": num(q), **pred}
    return text, [fix], ev
