"""Helpers several rules share: evidence numbers, activation families, init-scale summaries and
the per-activation fractions over the run.

Private to :mod:`gradmedic.diagnosis.rules`; the numbers they compare against are in
:mod:`gradmedic.diagnosis.thresholds`.

Example::

    >>> num(0.000123456), num(float("inf")), num(None)
    (0.0001235, 'inf', None)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Container
from typing import Any

from gradmedic._json import to_jsonable
from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.table import layer_table
from gradmedic.diagnosis.thresholds import DEFAULT_LR, PRACTICAL_CRITICAL_SW2
from gradmedic.trace.schema import Quantity

__all__ = [
    "DEAD_CAPABLE",
    "DERIVATIVE_BOUND",
    "RELU_LIKE",
    "SATURATING",
    "act_hits",
    "critical_deficit",
    "log10",
    "main_activation",
    "num",
    "pair_summary",
    "previous_weight",
    "reinit_scheme",
    "relative_update",
]

#: Activations whose derivative tends to 0 on (at least) one side: they can saturate.
SATURATING = {"sigmoid", "tanh", "softsign", "hardtanh", "hardsigmoid", "elu", "selu", "celu"}
#: Activations whose units can die (zero output and zero slope for every input below 0).
DEAD_CAPABLE = {"relu", "relu6"}
#: Activations He initialisation is made for (slope about 1 on the positive side).
RELU_LIKE = {"relu", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "relu6", "mish"}
#: Largest derivative of activations whose slope never reaches 1 (sigmoid' <= 1/4).
DERIVATIVE_BOUND = {"sigmoid": 0.25, "hardsigmoid": 1 / 6}


def num(x: float | None, digits: int = 4) -> float | str | None:
    """A JSON-safe evidence number: rounded to ``digits`` significant digits; NaN and +-inf as
    the strings ``"nan"``, ``"inf"``, ``"-inf"`` (:func:`gradmedic._json.to_jsonable`)."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return to_jsonable(x)
    if x == 0:
        return 0.0
    return float(f"{x:.{digits}g}")


def log10(x: float | None) -> float:
    """``log10 x``; -inf for 0, NaN for None, negative or non-finite values."""
    if x is None or not math.isfinite(x) or x <= 0:
        return -math.inf if (x is not None and x == 0) else math.nan
    return math.log10(x)


def relative_update(ctx: Context, row: dict[str, Any]) -> tuple[float | None, str]:
    """Relative weight change per step of a layer and how it was obtained: the measured update
    ratio (with an optimizer), else ``lr x ||dL/dW|| / ||W||`` (SGD's step; ``lr`` from the run,
    else :data:`~gradmedic.diagnosis.thresholds.DEFAULT_LR`)."""
    if row.get("update_ratio") is not None:
        return float(row["update_ratio"]), "measured ||dW_step|| / ||W|| (median over steps)"
    gw = row.get("grad_to_weight")
    if gw is None:
        return None, ""
    lr = ctx.lr if ctx.lr is not None else DEFAULT_LR
    return lr * gw, f"lr x ||dL/dW|| / ||W|| with lr = {lr:g}"


def pair_summary(ctx: Context) -> dict[str, Any]:
    """Theory's view of the weight+activation pairs: activation(s), median ``sigma_w^2`` and
    ``chi1``, the phase of the middle pair, the predicted ratio at ``q*`` and the median
    critical ``sigma_w^2`` (where theory has one); ``{}`` without pairs."""
    pairs = ctx.prediction.pairs
    if not pairs:
        return {}
    acts = sorted({p.act_spec for p in pairs})
    sw2 = statistics.median(p.sw2 for p in pairs)
    chis = [p.chi1 for p in pairs]
    crits = [p.critical_sw2 for p in pairs if p.critical_sw2 is not None]
    out: dict[str, Any] = {
        "activation": acts[0] if len(acts) == 1 else acts,
        "sigma_w2_median": num(sw2),
        "chi1_median": num(statistics.median(chis)),
        "phase": pairs[len(pairs) // 2].phase,
        "theory_ratio_at_q_star": num(ctx.prediction.ratio),
    }
    if crits:
        out["critical_sigma_w2"] = num(statistics.median(crits))
    return out


def critical_deficit(ctx: Context) -> float | None:
    """log10 of the part of the end-to-end ratio that moving sigma_w^2 to its critical value
    would remove: sum over crossed pairs of ``0.5 log10(sw2 / sw2_crit)``, for activations whose
    critical sigma_w^2 is practical (at most
    :data:`~gradmedic.diagnosis.thresholds.PRACTICAL_CRITICAL_SW2`); None when no pair has one."""
    total, used = 0.0, 0
    for p in ctx.prediction.pairs:
        crit = p.critical_sw2
        if crit is None or not (0 < crit <= PRACTICAL_CRITICAL_SW2) or p.sw2 <= 0:
            continue
        total += 0.5 * math.log10(p.sw2 / crit)
        used += 1
    return total if used else None


def main_activation(ctx: Context, path: list[str]) -> str | None:
    """The most common activation among the modules of ``path``, None when there is none."""
    names = [ctx.infos.get(n, {}).get("activation") for n in path]
    names = [n for n in names if n]
    return statistics.mode(names) if names else None


def reinit_scheme(act: str | None) -> str:
    """``kaiming`` for the ReLU family (He et al. 2015), ``xavier`` otherwise (Glorot & Bengio
    2010)."""
    return "kaiming" if act in RELU_LIKE else "xavier"


def previous_weight(ctx: Context, name: str) -> str | None:
    """The closest weight layer (one with ``sw2``) before module ``name`` in model order."""
    o = ctx.infos.get(name, {}).get("ord", 0)
    prev = [(i["ord"], n) for n, i in ctx.infos.items() if "sw2" in i and i.get("ord", 0) < o]
    return max(prev)[1] if prev else None


def _over_run(ctx: Context, quantity: Quantity) -> dict[str, float]:
    """Per module: the larger of ``quantity`` at the first and at the last step that recorded
    it (the cached per-layer tables of those steps)."""
    steps = ctx.quantity_steps(quantity)
    out: dict[str, float] = {}
    if not steps:
        return out
    for s in dict.fromkeys((steps[0], steps[-1])):
        for r in layer_table(ctx.trace, s):
            v = r.get(quantity.value)
            if v is not None:
                out[r["module"]] = max(out.get(r["module"], v), v)
    return out


def act_hits(
    ctx: Context, quantity: Quantity, kinds: Container[str], threshold: float
) -> tuple[dict[str, float], dict[str, float]]:
    """``(per-module values over the run, hits)``: the larger of the init and the last value of
    ``quantity`` per module, and those of activations of ``kinds`` at or above ``threshold``,
    in model order."""
    fr = _over_run(ctx, quantity)
    hits = {
        n: v
        for n, v in fr.items()
        if ctx.infos.get(n, {}).get("activation") in kinds and v >= threshold
    }
    order = sorted(hits, key=lambda n: ctx.infos[n].get("ord", 0))
    return fr, {n: hits[n] for n in order}
