"""``poor-init``: the weight scale explains a large part of a vanishing or exploding signal.

Emitted by the depth rule (:func:`gradmedic.diagnosis.rules.depth.rule_depth`) beside the
vanishing/exploding finding it explains. Where theory has a practical critical scale for the
activation (ReLU family: ``sigma_w^2 = 2``, He et al. 2015; tanh: ~1, Glorot & Bengio 2010;
Schoenholz et al. 2017 for the general critical line) the weights are judged against it,
``sum 0.5 log10(sw2 / sw2_crit)`` over the crossed pairs: a network at its critical scale is
not badly initialised whatever else moves its signal (skip connections, normalisation,
functional ops). Otherwise the measured weight gains count.

The prescriptions are those theory predicts to fix the stack
(:func:`gradmedic.diagnosis.prescribe.init_remedies`), each with its predicted ratio; a scheme
that would not (Xavier on a deep sigmoid stack: ``sqrt(chi1)^(L-1)`` with ``chi1 = 0.056`` at
``sw2 = 1``) is named in the cause as not enough, with its prediction.

Example::

    >>> poor_init(ctx, ctx.e2e, "relu", "error", vanishing=True)[0].slug   # doctest: +SKIP
    'poor-init'
"""

from __future__ import annotations

import math
import statistics

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding
from gradmedic.diagnosis.prescribe import init_remedies, path_stack
from gradmedic.diagnosis.rules._shared import (
    RELU_LIKE,
    critical_deficit,
    log10,
    num,
    pair_summary,
)
from gradmedic.diagnosis.thresholds import (
    POOR_INIT_MIN_DECADES,
    POOR_INIT_MIN_SHARE,
    PRACTICAL_CRITICAL_SW2,
)
from gradmedic.trace.derived import EndToEnd

__all__ = ["poor_init"]


def poor_init(
    ctx: Context, e: EndToEnd, act: str | None, sev: str, *, vanishing: bool
) -> list[Finding]:
    """A poor-init finding of severity ``sev`` when the weight scale accounts for at least
    :data:`~gradmedic.diagnosis.thresholds.POOR_INIT_MIN_DECADES` decades and
    :data:`~gradmedic.diagnosis.thresholds.POOR_INIT_MIN_SHARE` of ``log10 r``, in the
    direction of the problem (``vanishing`` or exploding); ``[]`` otherwise.

    ``evidence``: ``log10_weight_contribution`` (the part blamed on the weights),
    ``log10_measured_weights`` (the measured weight gains), ``log10_weight_scale_vs_critical``
    and theory's pair summary (``sigma_w2_median``, ``critical_sigma_w2``, ``chi1_median``)."""
    w = e.contributions.get("weights", 0.0)
    total = log10(e.ratio) if e.ratio > 0 else -math.inf
    deficit = critical_deficit(ctx)
    weight_part = w if math.isfinite(w) else 0.0
    practical = act in RELU_LIKE | {"tanh", "softsign"}
    if deficit is not None and practical:
        weight_part = deficit
    if abs(weight_part) < POOR_INIT_MIN_DECADES:
        return []
    if math.isfinite(total) and abs(total) > 0 and weight_part / total < POOR_INIT_MIN_SHARE:
        return []
    if (weight_part < 0) != vanishing:
        return []
    ps = pair_summary(ctx)
    sw2 = ps.get("sigma_w2_median")
    if sw2 is None:  # no Linear+activation pair theory models: the weights on the path
        sws = [ctx.infos[n]["sw2"] for n in e.path if "sw2" in ctx.infos.get(n, {})]
        sw2 = num(statistics.median(sws)) if sws else None
        ps = {**ps, "sigma_w2_median": sw2}
    crit = ps.get("critical_sigma_w2")
    pres, rejected = init_remedies(path_stack(ctx, e.path), act)
    cause = (
        f"The initial weight scale (sigma_w^2 = fan_in Var(W) = {sw2}"
        + (
            f", critical {crit} for {act}"
            if crit is not None and crit <= PRACTICAL_CRITICAL_SW2
            else ""
        )
        + f") accounts for 10^{weight_part:.1f} of the end-to-end signal ratio"
        + "".join(f"; {spec} alone is not enough: {why}" for spec, why in rejected.items())
        + (f"; {pres[0]}: {pres[0].reason.split('; ')[-1]}" if pres else "")
        + "."
    )
    evidence = {
        "log10_weight_contribution": num(weight_part),
        "log10_measured_weights": num(w),
        "log10_weight_scale_vs_critical": num(deficit),
        **ps,
    }
    if rejected:
        evidence["rejected_by_theory"] = rejected
    return [
        Finding(
            slug="poor-init",
            severity=sev,
            title="Weight initialisation off the critical scale",
            cause=cause,
            layers=[p.weight for p in ctx.prediction.pairs] or [e.first, e.last],
            evidence=evidence,
            prescriptions=pres,
            step=e.step,
        )
    ]
