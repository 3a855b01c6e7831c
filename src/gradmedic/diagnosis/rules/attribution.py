"""Attribution of an end-to-end decay or growth to its causes (used by the depth rule).

``log10 r`` splits over the modules on the path (:class:`~gradmedic.trace.derived.EndToEnd`'s
``contributions``): weight layers (``sqrt(sw2)`` each), activation derivatives
(``sqrt(E[phi'^2])``, sigmoid's at most 0.25), dead units (``sqrt(1 - dead_frac)``),
normalisation, pooling/reshaping, unmodelled modules, and what happens *between* hooked
modules (functional calls such as ``torch.sigmoid`` in ``forward``, skip connections). The
product of the per-layer gains is set beside the measured ratio: equal on a plain chain,
different when skip connections carry the signal around the modules.

Example::

    >>> attribution(ctx, ctx.e2e)["share"]                     # doctest: +SKIP
    {'activation': 0.72, 'weights': 0.28}
"""

from __future__ import annotations

import math
from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.rules._shared import (
    DERIVATIVE_BOUND,
    RELU_LIKE,
    critical_deficit,
    log10,
    num,
    pair_summary,
)
from gradmedic.diagnosis.thresholds import CRITICAL_DEFICIT_DECADES, SHARE_MIN_DECADES
from gradmedic.nn.taxonomy import module_category
from gradmedic.trace.derived import EndToEnd

__all__ = ["attribution", "chain_note", "top_cause"]


def attribution(ctx: Context, e: EndToEnd) -> dict[str, Any]:
    """Evidence: ``log10`` of the ratio and of each contribution, each cause's ``share`` of the
    judged ratio (pooling/reshaping excluded), and ``log10_weight_scale_vs_critical`` where
    theory has a practical critical weight scale."""
    lr_ = log10(e.ratio)
    c = e.contributions
    out: dict[str, Any] = {
        "log10_ratio": num(lr_),
        "log10_weights": num(c.get("weights")),
        "log10_activation_derivative": num(c.get("activation")),
        "log10_dead_units": num(c.get("dead_units")),
        "log10_normalisation": num(c.get("norm")),
        "log10_other": num(c.get("other")),
        "log10_structural": num(c.get("structural")),
        "log10_between_modules": num(c.get("between")),
    }
    # Shares of the judged decay: pooling/reshaping is taken out of the judged ratio.
    judged = {k: v for k, v in c.items() if k != "structural"}
    total = sum(v for v in judged.values() if math.isfinite(v))
    if math.isfinite(total) and abs(total) > 1e-9:
        out["share"] = {
            k: num(v / total, 3)
            for k, v in judged.items()
            if math.isfinite(v) and abs(v) > SHARE_MIN_DECADES
        }
    deficit = critical_deficit(ctx)
    if deficit is not None:
        out["log10_weight_scale_vs_critical"] = num(deficit)
    return out


def chain_note(e: EndToEnd) -> dict[str, Any]:
    """Evidence: the product of the measured gains, whether the path is a plain chain, and
    theory's predicted product at the measured pre-activation scales."""
    return {
        "gain_product": num(e.gain_product),
        "plain_chain": e.chain,
        "predicted_product_at_measured_q": num(e.predicted_product),
    }


def top_cause(ctx: Context, e: EndToEnd, act: str | None) -> tuple[str, str]:
    """``(key, phrase)`` of the largest contribution to a decay: ``dead_units`` when they block
    the signal completely, else the most negative finite contribution (the weight scale when a
    ReLU-family stack sits far below its critical scale)."""
    c = {k: v for k, v in e.contributions.items() if math.isfinite(v) and k != "structural"}
    deficit = critical_deficit(ctx)
    if e.contributions.get("dead_units", 0.0) == -math.inf:
        return "dead_units", "dead units block the signal completely"
    if not c:
        return "unknown", "the layers on the path"
    key = min(c, key=lambda k: c[k])
    sw2 = pair_summary(ctx).get("sigma_w2_median")
    if key == "activation":
        bound = DERIVATIVE_BOUND.get(act or "")
        extra = f" (at most {bound:g})" if bound else ""
        if deficit is not None and deficit < -CRITICAL_DEFICIT_DECADES and act in RELU_LIKE:
            crit = pair_summary(ctx).get("critical_sigma_w2")
            return "weights", (
                f"the weight scale (sigma_w^2 = {sw2}, below the critical {crit} for {act}, "
                "so the weights do not make up for the activation's derivative)"
            )
        return key, f"the {act or 'activation'} derivative{extra}"
    if key == "weights":
        return key, f"the weight scale (sigma_w^2 = {sw2})" if sw2 else "the weight scale"
    if key == "dead_units":
        return key, "dead units (zero for every sample)"
    if key == "norm":
        return key, "the normalisation layers"
    if key == "between":
        return key, (
            "operations between the hooked modules (functional calls in forward such as "
            "torch.sigmoid or F.tanh, which the Monitor sees only through the signal they "
            "remove, or skip connections)"
        )
    others = [
        str(ctx.infos.get(n, {}).get("type"))
        for n in e.path
        if ctx.infos.get(n) and module_category(ctx.infos[n]) == "other"
    ]
    kinds = ", ".join(sorted(set(others))[:3])
    return key, (
        "modules gradmedic has no derivative model for"
        + (f" ({kinds}: an activation it does not know or a custom layer)" if kinds else "")
    )
