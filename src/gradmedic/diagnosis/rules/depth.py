"""``vanishing-gradient``, ``exploding-gradient`` (and ``poor-init``) for feed-forward stacks.

Judged on the backward signal ``r = ||dL/dh^first|| / ||dL/dh^last||`` at initialisation
(:func:`gradmedic.trace.derived.signal_ratio`), never on weight-gradient ratios alone: Glorot &
Bengio (2010, eq. 14) show those stay equal across layers while ``r`` vanishes.

* Vanishing: ``r < 1e-3`` is a warning, ``r < 1e-6`` or a first layer whose relative update
  per step is below ``1e-6`` an error, ``r < 1e-2`` over two or more crossings a note.
* Exploding: ``r > 1e3`` (warning) / ``1e6`` (error), or a chaotic-phase plain chain (measured
  per-layer gain >= 1.1, i.e. chi1 >= 1.21, Schoenholz et al. 2017) whose signal grows more
  than tenfold. Off a plain chain (skip connections) the per-layer factor means nothing; there
  a tenfold growth is exploding only when the forward scale multiplies too (pre-activation mean
  square up 100x from the first to the last activation): the residual stream's variance
  compounds block after block in unnormalised ResNets with He-initialised branches (Zhang,
  Dauphin & Ma 2019, Fixup); normalised ResNets grow it only linearly. Growth driven by batch
  normalisation without skip connections (Yang et al. 2019) is named as such.
* Pooling, reshaping, padding and dropout spread the signal over more or fewer entries without
  changing what the layers before them learn; their gain is taken out of the judged ratio.
  Modules gradmedic has no model for (an unknown activation, a custom layer) stay in.

The numbers are in :mod:`gradmedic.diagnosis.thresholds`; the split of ``log10 r`` by cause
in :mod:`gradmedic.diagnosis.rules.attribution`.

Example::

    >>> [f.slug for f in rule_depth(Context.build(trace))]       # doctest: +SKIP
    ['vanishing-gradient', 'poor-init']
"""

from __future__ import annotations

import math
from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.prescribe import init_remedies, path_stack
from gradmedic.diagnosis.registry import rule
from gradmedic.diagnosis.rules._shared import (
    DERIVATIVE_BOUND,
    log10,
    main_activation,
    num,
    pair_summary,
    relative_update,
)
from gradmedic.diagnosis.rules.attribution import attribution, chain_note, top_cause
from gradmedic.diagnosis.rules.exploding import exploding
from gradmedic.diagnosis.rules.poor_init import poor_init
from gradmedic.diagnosis.thresholds import (
    DEEP_CROSSINGS,
    LEARN_MIN_UPDATE,
    NORM_DRIVEN_SHARE,
    VANISH_ERROR,
    VANISH_INFO,
    VANISH_INFO_MIN_CROSSINGS,
    VANISH_WARNING,
)
from gradmedic.trace.derived import EndToEnd
from gradmedic.trace.schema import Quantity

__all__ = ["rule_depth"]


@rule(
    slugs=("vanishing-gradient", "exploding-gradient", "poor-init"),
    requires=(Quantity.SIGNAL_OUT,),
    priority=20,
)
def rule_depth(ctx: Context) -> list[Finding]:
    """Vanishing or exploding backward signal across the weighted layers at initialisation,
    with a poor-init finding when the weight scale explains it.

    ``evidence``: ``measured_ratio`` and ``judged_ratio`` (pooling/reshaping taken out),
    ``layers_crossed``, ``per_layer_factor``, the first/last layer, the ratio at the last
    recorded step, the chain note, theory's pair summary, the first layer's relative update,
    and the attribution of ``log10 r`` by cause."""
    e = ctx.e2e
    if e is None or e.crossings < 1:
        return []
    r = e.ratio
    structural = e.contributions.get("structural", 0.0)
    # Taken out only while 10**structural stays a float (|log10| < 300).
    if structural and math.isfinite(structural) and abs(structural) < 300:
        r = r / 10**structural
    if not math.isfinite(r) and not math.isinf(r):
        return []
    first = ctx.row(e.first)
    act = main_activation(ctx, e.path)
    upd, upd_how = relative_update(ctx, first)
    base: dict[str, Any] = {
        "measured_ratio": num(e.ratio),
        "judged_ratio": num(r),
        "layers_crossed": e.crossings,
        "per_layer_factor": num(r ** (1.0 / e.crossings)) if r > 0 else 0.0,
        "first_layer": e.first,
        "last_layer": e.last,
        "measured_ratio_last_step": num(ctx.e2e_last.ratio) if ctx.e2e_last else None,
        **chain_note(e),
        **pair_summary(ctx),
    }
    if upd is not None:
        base["first_layer_relative_update"] = num(upd)
        base["relative_update_basis"] = upd_how
    norm_driven = e.contributions.get("norm", 0.0) > NORM_DRIVEN_SHARE * max(log10(r), 1e-9)
    if r < VANISH_WARNING or (r < VANISH_INFO and e.crossings >= VANISH_INFO_MIN_CROSSINGS):
        return _vanishing(ctx, e, r, act, base, upd)
    if r > 1.0:
        return exploding(ctx, e, r, act, base, norm_driven)
    return []


def _vanishing(
    ctx: Context,
    e: EndToEnd,
    r: float,
    act: str | None,
    base: dict[str, Any],
    upd: float | None,
) -> list[Finding]:
    """The vanishing-gradient finding for a judged ratio ``r`` below the info threshold, and
    poor-init when the weights explain it."""
    cannot_learn = upd is not None and upd < LEARN_MIN_UPDATE
    if r < VANISH_ERROR or (r < VANISH_WARNING and cannot_learn):
        sev = "error"
    elif r < VANISH_WARNING:
        sev = "warning"
    else:
        sev = "info"
    key, phrase = top_cause(ctx, e, act)
    ev = {**base, **attribution(ctx, e), "first_layer_can_learn": not cannot_learn}
    ratio_txt = "0 (blocked)" if r == 0 else f"{r:.1e}"
    cause = (
        f"The backward signal falls to {ratio_txt} of its value across {e.crossings} layers "
        f"(from '{e.last}' back to '{e.first}'); most of the decay comes from {phrase}"
        + ("; the first layer effectively does not learn." if cannot_learn else ".")
    )
    stack = path_stack(ctx, e.path)
    pres, rejected = init_remedies(stack, act, dead=key == "dead_units")
    if rejected:
        ev["rejected_by_theory"] = rejected
    if e.crossings >= DEEP_CROSSINGS:
        if act not in DERIVATIVE_BOUND:  # normalising q does not lift sigmoid' <= 1/4
            pres.append(
                Prescription(
                    "add-norm",
                    {"kind": "layer"},
                    "rescales every layer's pre-activations to q = 1",
                    predicted={"basis": "not a mean-field number; treat measures it"},
                )
            )
        pres.append(
            Prescription(
                "add-residual",
                {},
                "identity path for the gradient",
                predicted={
                    "basis": "x + F(x) has Jacobian I + J_F: the identity carries the signal "
                    "unchanged (He et al. 2016, identity mappings)"
                },
            )
        )
    vanishing = Finding(
        slug="vanishing-gradient",
        severity=sev,
        title=f"Vanishing gradient: signal ratio {ratio_txt} over {e.crossings} layers",
        cause=cause,
        layers=[e.first, e.last],
        evidence=ev,
        prescriptions=pres,
        step=e.step,
    )
    return [vanishing, *poor_init(ctx, e, act, sev, vanishing=True)]
