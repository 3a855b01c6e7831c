"""The noise band, the loss trend and the verdict line ``treat`` prints first.

- :class:`NoiseBand`: the untreated model at its best rate, trained with the run's seed and
  two more (for a zoo spec the seed also draws the init; an ``nn.Module`` keeps its weights and
  only the data order changes). A candidate is better only below the band's low end, and the
  verdict says by how much.
- :func:`steps_to`: how many steps the trend of a loss curve (a least-squares line through its
  second half) needs to reach a target loss; None when the loss is not falling.
- :func:`verdict_line`: *cured*, *improved* (not cured, and what is missing) or *no cure within
  N steps* (what the best candidate did and how many steps its trend suggests), in one line.

Example::

    >>> band = NoiseBand.of([2.30, 2.31, 2.29], lr=0.1, seeds=[0, 1, 2])
    >>> band.low, band.high, band.text()
    (2.29, 2.31, 'untreated noise band 2.29-2.31 (3 seeds at lr 0.1)')
    >>> steps_to([2.0 - 0.01 * i for i in range(100)], 0.5)
    151
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradmedic.workflows.treatment.choice import HEALTHY_DECADES, UNTREATED, eligible

__all__ = ["NoiseBand", "steps_to", "verdict_line"]

#: Trends that need more than this many times the run's steps are reported as such.
TREND_LIMIT = 100


@dataclass(frozen=True)
class NoiseBand:
    """Final losses of the untreated model over several seeds at one rate: ``low``..``high``."""

    low: float
    high: float
    losses: tuple[float, ...]
    seeds: tuple[int, ...]
    lr: float

    @classmethod
    def of(cls, losses: list[float], *, lr: float, seeds: list[int]) -> NoiseBand:
        """The band of the finite ``losses`` (a non-finite one widens it to infinity)."""
        finite = [v for v in losses if math.isfinite(v)]
        low = min(finite) if finite else math.inf
        high = max(finite) if len(finite) == len(losses) else math.inf
        return cls(low, high, tuple(losses), tuple(seeds), lr)

    def text(self) -> str:
        return (
            f"untreated noise band {self.low:.4g}-{self.high:.4g} "
            f"({len(self.losses)} seeds at lr {self.lr:.3g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "losses": list(self.losses),
            "seeds": list(self.seeds),
            "lr": self.lr,
        }


def steps_to(losses: list[float], target: float) -> int | None:
    """Total steps after which the line fitted to the second half of ``losses`` reaches
    ``target`` (``len(losses)`` when it already has); None when the fitted loss is not
    falling or the curve is too short or not finite."""
    half = [v for v in losses[len(losses) // 2 :] if math.isfinite(v)]
    if len(half) < 3:
        return None
    x = np.arange(len(half), dtype=float)
    slope, icpt = np.polyfit(x, np.asarray(half), 1)
    end = icpt + slope * (len(half) - 1)
    if end <= target:
        return len(losses)
    if slope >= -1e-9 * max(abs(end), 1e-30):  # flat up to rounding
        return None
    return len(losses) + math.ceil((end - target) / -slope)


def _trend(losses: list[float], target: float, steps: int) -> str:
    need = steps_to(losses, target)
    if need is None:
        return "its loss is no longer falling, so more steps alone will not get it there"
    if need > TREND_LIMIT * steps:
        return f"its loss trend needs more than {TREND_LIMIT * steps} steps to get there"
    return f"its loss trend suggests about {need} steps to get there"


def _measured(row: dict[str, Any]) -> bool:
    r = row.get("first_last_signal_ratio")
    return r is not None and not math.isnan(r)


def _h(row: dict[str, Any]) -> str:
    return f"{row['health']:.3g}" if _measured(row) else "unmeasured"


def _did(row: dict[str, Any], base: dict[str, Any], extra: str = "") -> str:
    """``name at lr X: loss a -> b (extra), gradient health h0 -> h1 decades from 1``."""
    return (
        f"{row['name']} at lr {row['lr']:.3g}: loss {row['first_loss']:.4g} -> "
        f"{row['final_loss']:.4g}{f' ({extra})' if extra else ''}, gradient health "
        f"{_h(base)} -> {_h(row)} decades from 1"
    )


def _your_run(yours: dict[str, Any]) -> str:
    if yours.get("nonfinite"):
        n = yours.get("steps") or "its"
        return (
            f"your run at lr {yours['lr']:.3g} is non-finite on {yours['nonfinite']} of {n} steps"
        )
    return (
        f"your run at lr {yours['lr']:.3g} diverges (loss {yours['first_loss']:.4g} -> "
        f"{yours['final_loss']:.4g})"
    )


def verdict_line(
    kind: str,
    best: dict[str, Any],
    rows: list[dict[str, Any]],
    band: NoiseBand | None,
    yours: dict[str, Any],
    yours_broken: bool,
    steps: int,
    curves: dict[str, list[float]],
    *,
    healthy: bool = False,
) -> str:
    """The verdict in one line (see the module docstring). ``rows[0]`` is the untreated model
    at its best rate, ``yours`` the untreated run at the user's rate, ``curves`` the losses
    of each row's chosen run; ``healthy``: the diagnosis of the untreated run found nothing
    (then, with no candidate, there is nothing to cure rather than no cure)."""
    base = rows[0]
    if best["name"] == UNTREATED and kind != "no cure":
        return (
            f"{kind} by the learning rate alone: {_your_run(yours)}; at lr {best['lr']:.3g} "
            f"the untreated model trains (loss {best['first_loss']:.4g} -> "
            f"{best['final_loss']:.4g}, gradient health {_h(best)} decades from 1) "
            "and no remedy beat that beyond the noise band"
        )
    if band is None:
        against = "the untreated model goes non-finite or diverges at every rate of the grid"
    else:
        against = band.text()
    if kind in ("cured", "improved"):
        below = band is None or best["final_loss"] < band.low
        extra = f"{band.low - best['final_loss']:.3g} below the {against}" if band and below else ""
        head = f"{kind}: {_did(best, base, extra)}"
        if band is None:
            head += f"; {against}"
        if kind == "cured":
            return head
        missing = []
        if not _measured(best):
            missing.append(
                "its gradient health cannot be measured (the trace holds no first/last "
                "backward-signal pair: a single weight layer, or no finite step)"
            )
        elif best["health"] > HEALTHY_DECADES:
            missing.append(
                f"its gradient health stays {best['health']:.3g} decades from 1, which more "
                "steps do not change"
            )
        if not below:
            trend = _trend(curves.get(best["name"], []), band.low, steps)  # type: ignore[union-attr]
            missing.append(f"its loss does not get below the {against}; {trend}")
        return f"{head}; not cured within {steps} steps: " + "; ".join(missing)
    prefix = f"no cure within {steps} steps: "
    if yours_broken:
        prefix += _your_run(yours) + "; "
    learners = sorted((r for r in rows[1:] if eligible(r)), key=lambda r: r["final_loss"])
    if len(rows) == 1 and healthy and not yours_broken:
        return (
            f"nothing to cure: the diagnosis of the untreated model found no problem "
            f"(at lr {yours['lr']:.3g}: loss {yours['first_loss']:.4g} -> "
            f"{yours['final_loss']:.4g}, gradient health {_h(yours)} decades from 1), so no "
            "remedy was tried"
        )
    if len(rows) == 1:
        return prefix + (
            "the diagnosis names no remedy gradmedic can apply to this model (see the changes "
            "to make by hand)"
        )
    if not learners:
        return prefix + "no candidate trained to a finite, falling loss at any rate of the grid"
    top = learners[0]
    trend = _trend(curves.get(top["name"], []), band.low, steps) if band else ""
    return (
        prefix
        + f"the best candidate, {_did(top, base)}, does not get below the {against}"
        + (f"; {trend}" if trend else "")
    )
