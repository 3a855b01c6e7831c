"""``exploding-gradient`` (and ``poor-init``): the growing half of the depth rule.

Called by :func:`gradmedic.diagnosis.rules.depth.rule_depth` when the judged ratio ``r`` is
above 1. A growth is exploding when ``r >= 1e3``, or on a plain chain in the chaotic phase
(per-layer gain >= 1.1 and ``r >= 10``; Schoenholz et al. 2017), or across skip connections
whose forward scale compounds too (pre-activation mean square up 100x; Zhang, Dauphin & Ma
2019, Fixup). Growth driven by the normalisation layers (batch norm without skip connections,
Yang et al. 2019) below 1e3 is only a note, and is never blamed on the init.

Example::

    >>> exploding(ctx, ctx.e2e, 25.0, "relu", {}, False)[0].slug   # doctest: +SKIP
    'exploding-gradient'
"""

from __future__ import annotations

import math
from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.prescribe import init_remedies, path_stack
from gradmedic.diagnosis.rules._shared import num
from gradmedic.diagnosis.rules.attribution import attribution
from gradmedic.diagnosis.rules.poor_init import poor_init
from gradmedic.diagnosis.thresholds import (
    CHAOTIC_LAYER_GAIN,
    CHAOTIC_MIN_GROWTH,
    EXPLODE_ERROR,
    EXPLODE_WARNING,
    FORWARD_GROWTH,
)
from gradmedic.trace.derived import EndToEnd

__all__ = ["exploding", "forward_growth"]


def forward_growth(ctx: Context, e: EndToEnd) -> float | None:
    """Growth of the forward scale along the path at init: mean square of the pre-activation
    (the Monitor's ``preact_ms``, q) at the last activation module over the first; None with
    fewer than two activation modules measured."""
    on_path = set(e.path)
    qs = [
        float(r["preact_ms"])
        for r in ctx.rows
        if r["module"] in on_path
        and r["category"] == "activation"
        and r.get("preact_ms") is not None
        and math.isfinite(r["preact_ms"])
    ]
    if len(qs) < 2 or qs[0] <= 0:
        return None
    return qs[-1] / qs[0]


def exploding(
    ctx: Context,
    e: EndToEnd,
    r: float,
    act: str | None,
    base: dict[str, Any],
    norm_driven: bool,
) -> list[Finding]:
    """The exploding-gradient finding (and poor-init when the weights explain it) for a judged
    ratio ``r > 1``, or ``[]`` when the growth is not exploding. ``base``: the depth rule's
    common evidence; ``norm_driven``: the normalisation layers account for most of ``r``."""
    per = r ** (1.0 / e.crossings)
    growth = forward_growth(ctx, e)
    # On a plain chain every layer multiplies the signal, so a per-layer factor >= 1.1 is
    # the chaotic phase. Off a chain (skip connections) the per-layer factor means nothing:
    # the growth is multiplicative only when the forward scale compounds too.
    chaotic = e.chain and per >= CHAOTIC_LAYER_GAIN and r >= CHAOTIC_MIN_GROWTH
    stream = (
        not e.chain and r >= CHAOTIC_MIN_GROWTH and growth is not None and growth >= FORWARD_GROWTH
    )
    if not (r >= EXPLODE_WARNING or chaotic or stream):
        return []
    sev = "error" if r >= EXPLODE_ERROR else "warning"
    if norm_driven and r < EXPLODE_WARNING:
        sev = "info"
    ev = {**base, **attribution(ctx, e)}
    if growth is not None:
        ev["forward_preact_ms_growth"] = num(growth)
    if not e.chain and not norm_driven:
        cause = (
            f"The backward signal grows {r:.1f}x from '{e.last}' back to '{e.first}' "
            "across a path with skip connections"
            + (
                f", and the forward activations' mean square grows {growth:.3g}x: "
                if growth is not None
                else ": "
            )
            + "each residual block adds a branch as large as its input, so the stream's "
            "variance multiplies block after block (unnormalised ResNets, Zhang et al. "
            "2019, Fixup); zero-initialise the last layer of each branch or normalise it."
        )
        pres = [
            Prescription("zero-init-residual", {}, "each block starts as the identity"),
            Prescription("add-norm", {"kind": "batch"}, "bounds every branch's scale"),
            Prescription("clip-grad-norm", {"max_norm": 1.0}, "cap each step"),
        ]
    elif norm_driven:
        cause = (
            f"The backward signal grows {r:.1f}x across {e.crossings} layers, driven by "
            "the normalisation layers: batch normalisation without skip connections "
            "makes gradients explode with depth at initialisation (Yang et al. 2019)."
        )
        pres = [
            Prescription("add-residual", {}, "identity paths bound the growth"),
            Prescription("clip-grad-norm", {"max_norm": 1.0}, "cap each step"),
        ]
    else:
        cause = (
            f"The backward signal grows {r:.1f}x across {e.crossings} layers "
            f"({per:.2f}x per layer): the weights put the network in the chaotic phase "
            "(chi1 > 1), so every layer amplifies the gradient."
        )
        pres, rejected = init_remedies(path_stack(ctx, e.path), act)
        if rejected:
            ev["rejected_by_theory"] = rejected
        pres.append(Prescription("clip-grad-norm", {"max_norm": 1.0}, "cap each step"))
    found = Finding(
        slug="exploding-gradient",
        severity=sev,
        title=f"Exploding gradient: signal grows {r:.3g}x over {e.crossings} layers",
        cause=cause,
        layers=[e.first, e.last],
        evidence=ev,
        prescriptions=pres,
        step=e.step,
    )
    if norm_driven:
        return [found]
    return [found, *poor_init(ctx, e, act, sev, vanishing=False)]
