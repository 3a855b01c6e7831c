"""Transformer logit instabilities: ``attention-logit-growth`` and ``output-logit-divergence``.

Wortsman et al. (2023, "Small-scale proxies for large-scale Transformer training
instabilities") reproduce at small scale two instabilities first seen in large runs
(Dehghani et al. 2023; Chowdhery et al. 2022):

* **attention logit growth** (§3.1, Fig. 3): the logits ``q·k/√d`` grow with the learning
  rate until the attention softmax is one-hot and its gradient vanishes (entropy collapse);
  QK-layernorm (LayerNorm on q and k) bounds them. Fires when an attention module's
  ``attn_logit_max`` reaches :data:`~gradmedic.diagnosis.thresholds.ATTN_LOGIT_WARNING` after
  growing :data:`~gradmedic.diagnosis.thresholds.ATTN_LOGIT_GROWTH`-fold over the run (or is
  non-finite): a warning.
* **output logit divergence** (§3.2, Fig. 5): the softmax normaliser ``log Z`` drifts far from
  0 and the loss diverges; z-loss ``1e-4·log²Z`` keeps it near 0. Fires when the output's
  ``|log Z|`` reaches :data:`~gradmedic.diagnosis.thresholds.OUTPUT_LOGZ_WARNING` after drifting
  :data:`~gradmedic.diagnosis.thresholds.OUTPUT_LOGZ_DRIFT` nats (or is non-finite): a warning.

Example::

    >>> [f.slug for f in rule_attention_logits(Context.build(trace))]   # doctest: +SKIP
    ['attention-logit-growth']
"""

from __future__ import annotations

import math

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.registry import rule
from gradmedic.diagnosis.rules._shared import num
from gradmedic.diagnosis.thresholds import (
    ATTN_LOGIT_GROWTH,
    ATTN_LOGIT_WARNING,
    OUTPUT_LOGZ_DRIFT,
    OUTPUT_LOGZ_WARNING,
    Z_LOSS_COEFFICIENT,
)
from gradmedic.trace.schema import Quantity

__all__ = ["rule_attention_logits", "rule_output_logits"]

_SOURCE = "Wortsman et al. 2023"


def _bad(v: float) -> bool:
    return not math.isfinite(v)


@rule(
    slug="attention-logit-growth",
    requires=(Quantity.ATTN_LOGIT_MAX,),
    applies_to=("attention",),
    priority=62,
)
def rule_attention_logits(ctx: Context) -> list[Finding]:
    """One finding for every attention module whose logit scale grew past the threshold.

    ``evidence``: per module ``first``, ``peak`` (the largest, inf when non-finite), ``growth``
    (peak / first) and the threshold ``warning_at``; ``step`` is the peak's step."""
    f = ctx.trace.quantity(Quantity.ATTN_LOGIT_MAX.value)
    hits: dict[str, dict[str, float]] = {}
    peak_step = None
    for name, g in f.sort_values("step", kind="stable").groupby("module", sort=False):
        vals = [float(v) for v in g["value"]]
        steps = [int(s) for s in g["step"]]
        bad = [s for s, v in zip(steps, vals, strict=True) if _bad(v)]
        fin = [v for v in vals if not _bad(v)]
        peak = math.inf if bad else max(fin)
        first = vals[0]
        growth = peak / first if first > 0 and not _bad(first) else math.inf
        if bad or (peak >= ATTN_LOGIT_WARNING and growth >= ATTN_LOGIT_GROWTH):
            hits[str(name)] = {"first": first, "peak": peak, "growth": growth}
            at = bad[0] if bad else steps[vals.index(peak)]
            peak_step = at if peak_step is None else min(peak_step, at)
    if not hits:
        return []
    worst = max(hits, key=lambda n: hits[n]["peak"])
    w = hits[worst]
    return [
        Finding(
            slug="attention-logit-growth",
            severity="warning",
            title=f"Attention logits grew to {w['peak']:.3g} ({worst})",
            cause=(
                f"The largest attention logit |q·k|/√d of {worst} grew from {w['first']:.3g} to "
                f"{w['peak']:.3g}: at a gap of {ATTN_LOGIT_WARNING:g} the softmax is one-hot and "
                "its gradient vanishes (attention logit growth, "
                f"{_SOURCE} §3.1; Dehghani et al. 2023)."
            ),
            layers=sorted(hits),
            evidence={
                "modules": {n: {k: num(v) for k, v in h.items()} for n, h in hits.items()},
                "warning_at": ATTN_LOGIT_WARNING,
            },
            prescriptions=[
                Prescription("qk-layernorm", {}, "LayerNorm on q and k bounds the logits"),
                Prescription("lower-lr", {"factor": 0.3}, "logit growth scales with the lr"),
            ],
            step=peak_step,
        )
    ]


@rule(
    slug="output-logit-divergence",
    requires=(Quantity.OUTPUT_LOGZ_MAX, Quantity.OUTPUT_LOGZ_MEAN),
    priority=63,
)
def rule_output_logits(ctx: Context) -> list[Finding]:
    """A finding when the output softmax normaliser log Z diverged from where it started.

    ``evidence``: ``first_logz`` (mean log Z at the first recorded step), ``peak_abs_logz``
    (largest |log Z| of the row maxima and means), ``drift`` (nats), ``warning_at``."""
    hi = ctx.trace.series(Quantity.OUTPUT_LOGZ_MAX)
    mean = ctx.trace.series(Quantity.OUTPUT_LOGZ_MEAN)
    if not mean:
        return []
    first = mean[0][1]
    worst_step, peak = mean[0][0], 0.0
    for step, v in [*hi, *mean]:
        a = math.inf if _bad(v) else abs(v)
        if a > peak:
            worst_step, peak = step, a
    drift = max((abs(v - first) if not _bad(v) else math.inf for _, v in mean), default=0.0)
    if not (
        _bad(first)
        or peak == math.inf
        or (peak >= OUTPUT_LOGZ_WARNING and drift >= OUTPUT_LOGZ_DRIFT)
    ):
        return []
    return [
        Finding(
            slug="output-logit-divergence",
            severity="warning",
            title=f"Output logits diverge: |log Z| reached {peak:.3g}",
            cause=(
                f"The softmax normaliser log Z of the model's output drifted from {first:.3g} to "
                f"|log Z| = {peak:.3g} (step {worst_step}): the output logits diverge, which "
                f"precedes loss divergence ({_SOURCE} §3.2); z-loss "
                f"{Z_LOSS_COEFFICIENT:g}·log²Z keeps log Z near 0."
            ),
            layers=[],
            evidence={
                "first_logz": num(first),
                "peak_abs_logz": num(peak),
                "drift": num(drift),
                "warning_at": OUTPUT_LOGZ_WARNING,
            },
            prescriptions=[
                Prescription("z-loss", {"coefficient": Z_LOSS_COEFFICIENT}, "keeps log Z near 0"),
                Prescription("lower-lr", {"factor": 0.3}, "smaller steps keep the logits small"),
            ],
            step=worst_step,
        )
    ]
