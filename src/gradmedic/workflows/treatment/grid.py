"""The learning-rate grid every candidate is searched on, the pruning rules, and the budget.

Each candidate (the untreated model included) is trained at its own best learning rate from one
grid shared by all: the user's rate times :data:`LR_FACTORS` = ``(0.1, 0.3, 1, 3, 10)``. A
remedy that itself scales the rate (``lower-lr``) scales the whole grid. The search:

1. the first wave runs the middle rates, :data:`FIRST_WAVE` = ``(0.3, 1, 3)``;
2. when the best finite, learning rate of a candidate is the lowest (highest) one tried, the
   next lower (higher) rate of the grid is run, until the best is inside what was tried or at
   the end of the grid. With no learning rate at all, the grid is extended downwards past a
   lowest rate that diverged, and upwards past a highest rate that stalled. So a rate that
   diverged is never followed by a higher one, nor a stalled one by a lower one: each candidate
   costs 3 or 4 runs, never 5.

Each run is judged by its losses (:func:`run_status`):

- *diverged*: the loss went non-finite or above :data:`DIVERGE_FACTOR` times the first loss
  (the run is stopped there, :class:`StopRule`), or the run ended more than
  :data:`STALL_PROGRESS` (1%) above its first loss;
- *learning*: its final loss (mean of the last tenth of the steps) is at least 1% below the
  mean of its first tenth;
- *stalled*: anything in between (a plateau, e.g. at chance): it never counts as learning.

A run also stops when the wall-time budget (``treat(budget=...)``, ``--budget 5m``) runs out.
The untreated model at the user's own rate (the run the diagnosis reads) is never stopped for
diverging: the diagnosis needs all of it.

Example::

    >>> next_factors({0.3: "learning", 1.0: "learning", 3.0: "diverged"}, {0.3: 1.2, 1.0: 0.9})
    []
    >>> next_factors({0.3: "learning", 1.0: "learning", 3.0: "learning"},
    ...              {0.3: 1.2, 1.0: 0.9, 3.0: 0.5})
    [10.0]
    >>> parse_budget("5m"), parse_budget("90s"), parse_budget("1.5h")
    (300.0, 90.0, 5400.0)
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

from gradmedic.errors import ConfigError

__all__ = [
    "DIVERGE_FACTOR",
    "FIRST_WAVE",
    "LR_FACTORS",
    "STALL_PROGRESS",
    "StopRule",
    "next_factors",
    "parse_budget",
    "run_status",
]

#: The grid: multiples of the user's learning rate every candidate may be trained at.
LR_FACTORS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
#: The rates every candidate is trained at first.
FIRST_WAVE: tuple[float, ...] = (0.3, 1.0, 3.0)
#: A loss above this many times the run's first loss means the run diverged.
DIVERGE_FACTOR = 4.0
#: How far (relative) the final loss must fall below the first tenth's mean to count as
#: learning, and rise above the first loss to count as diverged.
STALL_PROGRESS = 0.01

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_budget(text: str | float | None) -> float | None:
    """Seconds of a wall-time budget: a number of seconds or ``90s``, ``5m``, ``1.5h``;
    None, ``none`` or ``0`` for no budget.

    Raises ConfigError for anything else.
    """
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip().lower()
        if s in ("", "none", "off"):
            return None
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-z]*)", s)
        if m is None or m.group(2) not in _UNITS:
            raise ConfigError(
                f"budget {text!r} is not a duration; write seconds or a unit, e.g. 90s, 5m, 1.5h"
            )
        value = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"budget must be a positive duration, got {text!r}; e.g. --budget 5m")
    return value or None


@dataclass
class StopRule:
    """``stop(step, loss)`` for :func:`gradmedic.workflows.train.train`: True once the run
    diverged (unless ``prune`` is False) or ran past ``deadline`` (a :func:`time.time` value);
    :attr:`reason` then says which, at which step (``"diverged at step 7"``)."""

    deadline: float | None = None
    prune: bool = True
    reason: str | None = None
    _first: float | None = field(default=None, repr=False)

    def __call__(self, step: int, loss: float) -> bool:
        if self._first is None:
            self._first = loss
        if self.deadline is not None and time.time() > self.deadline:
            return self._stop("budget", step)
        if not self.prune:
            return False
        first = self._first
        too_high = math.isfinite(first) and first > 0 and loss > DIVERGE_FACTOR * first
        if not math.isfinite(loss) or too_high:
            return self._stop("diverged", step)
        return False

    def _stop(self, why: str, step: int) -> bool:
        self.reason = f"{why} at step {step}"
        return True


def run_status(losses: list[float], stopped: str | None = None, nonfinite: int = 0) -> str:
    """``diverged``, ``learning`` or ``stalled`` for a run's losses (see the module docstring);
    ``stopped`` is the :class:`StopRule` reason, ``nonfinite`` the run's non-finite steps.

    >>> run_status([2.3, 2.2, 2.0, 1.5]), run_status([2.3, 2.31, 2.3, 2.3])
    ('learning', 'stalled')
    """
    if not losses or nonfinite or (stopped or "").startswith("diverged"):
        return "diverged"
    k = max(1, len(losses) // 10)
    first, head, final = losses[0], sum(losses[:k]) / k, sum(losses[-k:]) / k
    if not (math.isfinite(final) and math.isfinite(first)):
        return "diverged"
    if final > first + STALL_PROGRESS * abs(first):
        return "diverged"
    return "learning" if final < head - STALL_PROGRESS * abs(head) else "stalled"


def next_factors(status: dict[float, str], finals: dict[float, float]) -> list[float]:
    """The grid factors to run next for one candidate, given the ``status`` of each factor
    already run (``learning``, ``diverged``, ``stalled``, ``failed``) and the final loss of each learning one; empty when its search is over (or the
    first wave is not complete yet)."""
    if any(f not in status for f in FIRST_WAVE):
        return []
    tried = sorted(status)
    lo, hi = tried[0], tried[-1]
    learning = {f: finals[f] for f in tried if status[f] == "learning" and f in finals}
    if learning:
        best = min(learning, key=lambda f: (learning[f], f))
        down, up = best == lo, best == hi
    else:
        down = status[lo] == "diverged"
        up = status[hi] == "stalled" and not down
    out = []
    lower = [f for f in LR_FACTORS if f < lo]
    higher = [f for f in LR_FACTORS if f > hi]
    if down and lower:
        out.append(lower[-1])
    if up and higher:
        out.append(higher[0])
    return out
