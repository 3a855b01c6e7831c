"""Which candidate ``treat`` picks, and what kind of verdict that is.

Every row is a candidate at its own best learning rate (the untreated model first); the
untreated model's final loss over three seeds gives the noise band
(:class:`~gradmedic.workflows.treatment.verdict.NoiseBand`). Rule (:data:`BEST_RULE`):

- *eligible* (:func:`eligible`): the run has no non-finite step, is *learning* (neither
  diverged nor stalled: :func:`~gradmedic.workflows.treatment.grid.run_status`), and its final
  loss is below its first loss. Only an eligible candidate can be best.
- *better*: an eligible candidate whose final loss is below the band's low end; when the
  untreated model learned at no rate of the grid (NaN, diverging) every eligible candidate is.
- *healthy*: gradient health (``|log10|`` of the first/last backward-signal ratio, through time
  for recurrent models) within :data:`HEALTHY_DECADES` of 1.

1. *cured*: better and healthy; the lowest final loss wins;
2. *improved*: better but not healthy, then healthy (where the untreated model is not) but not
   better; the lowest final loss wins;
3. else, when the user's own run (the untreated model at the user's rate) was non-finite or
   diverged but the untreated model learned at another rate: that rate is the treatment
   (*cured* when healthy, else *improved*);
4. else *no cure*: the untreated model stays, and the verdict says what the best candidate did.

Example::

    >>> rows = [{"name": UNTREATED, "health": 5.0, "final_loss": 2.0, "first_loss": 2.3,
    ...          "nonfinite": 0, "status": "learning"},
    ...         {"name": "add-norm", "health": 0.3, "final_loss": 1.7, "first_loss": 2.3,
    ...          "nonfinite": 0, "status": "learning"}]
    >>> choose(rows, band_low=1.95)
    ('add-norm', 'cured')
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "BEST_RULE",
    "HEALTHY_DECADES",
    "UNTREATED",
    "broken",
    "choose",
    "classify",
    "eligible",
    "margins",
]

#: The name of the untreated model's row.
UNTREATED = "untreated"
#: Gradient health within this many decades of a ratio of 1 counts as restored.
HEALTHY_DECADES = 2.0

BEST_RULE = (
    "each candidate at its own best rate of the grid; eligible: no non-finite step, neither "
    "diverged nor stalled (final loss >= 1% below its first tenth's), final loss below its "
    "first loss; better: final loss below the untreated noise band (3 seeds), or any "
    "eligible run when the untreated model learns "
    "at no rate; healthy: |log10 first/last signal ratio| <= 2; 1) cured (better and healthy) "
    "-> lowest final loss; 2) improved (better, else healthy where the untreated model is not) "
    "-> lowest final loss; 3) a non-finite or diverging run at your rate that learns at another "
    "rate: that rate; 4) else no cure (untreated)"
)


def _health(row: dict[str, Any]) -> float:
    h = row.get("health", math.nan)
    return math.inf if h is None or math.isnan(h) else float(h)


def eligible(row: dict[str, Any]) -> bool:
    """Finite and learning: ran, no non-finite step, status ``learning`` (neither diverged
    nor stalled), final loss below the first loss."""
    if row.get("error") or row.get("status") != "learning" or row.get("nonfinite", 1):
        return False
    first, final = row.get("first_loss", math.nan), row.get("final_loss", math.nan)
    return math.isfinite(final) and math.isfinite(first) and final < first


def broken(row: dict[str, Any]) -> bool:
    """A run that is non-finite or diverging: a non-finite step or final loss, or status
    ``diverged`` (stopped as diverging, or ending clearly above its first loss)."""
    if row.get("nonfinite") or row.get("status") == "diverged":
        return True
    return not math.isfinite(row.get("final_loss", math.nan))


def classify(row: dict[str, Any], band_low: float | None, base_health: float) -> str:
    """``cured``, ``improved``, ``no better`` or ``not learning`` for a candidate's row;
    ``band_low`` None means the untreated model learned at no rate."""
    if not eligible(row):
        return "not learning"
    better = band_low is None or row["final_loss"] < band_low
    healthy = _health(row) <= HEALTHY_DECADES
    if better and healthy:
        return "cured"
    if better or (healthy and base_health > HEALTHY_DECADES):
        return "improved"
    return "no better"


def choose(
    rows: list[dict[str, Any]], band_low: float | None, yours_broken: bool = False
) -> tuple[str, str]:
    """(name of the best row, verdict kind ``cured`` | ``improved`` | ``no cure``) by
    :data:`BEST_RULE`; ``rows[0]`` is the untreated model at its best rate, ``yours_broken``
    whether the untreated run at the user's own rate was non-finite or diverging."""
    base = rows[0]
    kinds = {r["name"]: classify(r, band_low, _health(base)) for r in rows[1:]}
    by_loss = sorted(rows[1:], key=lambda r: (r["final_loss"], _health(r)))
    tiers = [
        ("cured", lambda r: kinds[r["name"]] == "cured"),
        ("improved", lambda r: kinds[r["name"]] == "improved" and _better(r, band_low)),
        ("improved", lambda r: kinds[r["name"]] == "improved"),
    ]
    for kind, test in tiers:
        for r in by_loss:
            if test(r):
                return r["name"], kind
    if yours_broken and eligible(base):
        return UNTREATED, "cured" if _health(base) <= HEALTHY_DECADES else "improved"
    return UNTREATED, "no cure"


def _better(row: dict[str, Any], band_low: float | None) -> bool:
    return band_low is None or row["final_loss"] < band_low


def margins(base: dict[str, Any], best: dict[str, Any], band_low: float | None) -> dict[str, Any]:
    """Best against untreated: health and loss of both, ``health_gain_decades`` (untreated
    health minus best health), ``loss_gain``, ``loss_ratio``, the learning rates, and
    ``below_band`` (the band's low end minus the best loss; positive when below it, None
    without a band)."""
    l0, l1 = base.get("final_loss", math.nan), best.get("final_loss", math.nan)
    return {
        "health_untreated": base.get("health", math.nan),
        "health_best": best.get("health", math.nan),
        "health_gain_decades": _health(base) - _health(best)
        if math.isfinite(_health(best))
        else math.nan,
        "signal_ratio_untreated": base.get("first_last_signal_ratio", math.nan),
        "signal_ratio_best": best.get("first_last_signal_ratio", math.nan),
        "loss_untreated": l0,
        "loss_best": l1,
        "loss_gain": l0 - l1 if math.isfinite(l0) else math.nan,
        "loss_ratio": (l1 / l0) if l0 and math.isfinite(l0) else math.nan,
        "lr_untreated": base.get("lr", math.nan),
        "lr_best": best.get("lr", math.nan),
        "below_band": None if band_low is None else band_low - l1,
    }
