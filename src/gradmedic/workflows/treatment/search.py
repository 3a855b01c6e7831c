"""The search: every candidate over the learning-rate grid, then the untreated noise seeds.

:class:`Candidate` holds one candidate's trials by grid factor; :func:`search` drives a
:class:`~gradmedic.workflows.treatment.executors.TrialRunner`: it submits the first wave of
every candidate, extends each candidate's grid as its finished trials decide
(:func:`~gradmedic.workflows.treatment.grid.next_factors`), and once the untreated model's rate
is settled submits it again with two more seeds (the noise band). Nothing is submitted after
the deadline; trials running then stop at their next step. ``on_done(outcome)`` is called for
each finished trial (the progress bar), ``on_primary(outcome)`` once for the untreated run at
the user's rate, and returns the candidates to add (the diagnosis' prescriptions).

Example::

    >>> cands = search(runner, [untreated], cfg, on_primary=lambda out: [])  # doctest: +SKIP
    >>> cands[0].chosen().trial.lr                                            # doctest: +SKIP
    0.03
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gradmedic.workflows.train import TrainConfig
from gradmedic.workflows.treatment.choice import UNTREATED
from gradmedic.workflows.treatment.executors import TrialRunner
from gradmedic.workflows.treatment.grid import FIRST_WAVE, next_factors, run_status
from gradmedic.workflows.treatment.metrics import run_metrics
from gradmedic.workflows.treatment.trials import Trial, TrialOutcome

__all__ = ["NOISE_SEEDS", "Candidate", "search", "status_of"]

#: How many more seeds the untreated model is trained with for the noise band.
NOISE_SEEDS = 2


def status_of(out: TrialOutcome, metrics: dict[str, Any]) -> str:
    """``failed`` (no run), else :func:`~gradmedic.workflows.treatment.grid.run_status`:
    ``diverged``, ``learning`` or ``stalled``."""
    if out.error is not None or out.result is None:
        return "failed"
    return run_status(out.result.losses, out.stopped, metrics.get("nonfinite", 0))


@dataclass
class Candidate:
    """One candidate: ``specs`` (empty for the untreated model), the remedy's own learning-rate
    factor, its report, and its trials by grid factor (``outcomes``) and noise seed."""

    name: str
    specs: list[str]
    lr_factor: float = 1.0
    report: Any = None
    error: str | None = None
    outcomes: dict[float, TrialOutcome] = field(default_factory=dict)
    metrics: dict[float, dict[str, Any]] = field(default_factory=dict)
    noise: list[TrialOutcome] = field(default_factory=list)
    submitted: set[float] = field(default_factory=set)

    def add(self, out: TrialOutcome, noise: bool = False) -> None:
        """Record a finished trial (``noise``: one of the extra seeds)."""
        if noise:
            self.noise.append(out)
            return
        self.outcomes[out.trial.factor] = out
        self.metrics[out.trial.factor] = (
            run_metrics(out.result) if out.result is not None else {"nonfinite": 0}
        )

    def status(self, factor: float) -> str:
        return status_of(self.outcomes[factor], self.metrics[factor])

    def settled(self) -> bool:
        """True when every submitted rate has finished."""
        return self.submitted <= set(self.outcomes)

    def more(self) -> list[float]:
        """Grid factors still to run (see :func:`~gradmedic.workflows.treatment.grid.next_factors`)."""
        if not self.settled():
            return []
        status = {f: self.status(f) for f in self.outcomes}
        finals = {
            f: self.metrics[f]["final_loss"] for f in self.outcomes if status[f] == "learning"
        }
        return [f for f in next_factors(status, finals) if f not in self.submitted]

    def chosen(self) -> TrialOutcome | None:
        """The trial at the candidate's best rate: the learning one with the lowest final loss,
        else the finite one with the lowest final loss, else the one at the user's rate."""
        if not self.outcomes:
            return None
        status = {f: self.status(f) for f in self.outcomes}
        for keep in ({"learning"}, {"learning", "stalled"}):
            ok = [f for f in self.outcomes if status[f] in keep]
            if ok:
                return self.outcomes[min(ok, key=lambda f: (self.metrics[f]["final_loss"], f))]
        return self.outcomes.get(1.0) or self.outcomes[min(self.outcomes)]


def search(
    runner: TrialRunner,
    candidates: list[Candidate],
    cfg: TrainConfig,
    *,
    every: int,
    deadline: float | None,
    on_primary: Callable[[TrialOutcome], list[Candidate]],
    on_done: Callable[[TrialOutcome, int, int], None] | None = None,
) -> tuple[list[Candidate], bool]:
    """Run the search (see the module docstring); ``candidates[0]`` is the untreated model.
    Returns the candidates (those added by ``on_primary`` included) and whether the budget ran
    out before everything planned had run."""
    state = {"planned": 0, "done": 0, "cut": False, "noise": False}
    by_name = {c.name: c for c in candidates}

    def submit(c: Candidate, factor: float, seed: int = cfg.seed, primary: bool = False) -> None:
        if deadline is not None and time.time() > deadline and not primary:
            state["cut"] = True
            return
        if seed == cfg.seed:
            c.submitted.add(factor)
        lr = float(f"{cfg.lr * c.lr_factor * factor:.12g}")  # 0.3, not 0.30000000000000004
        runner.submit(
            Trial(
                c.name,
                tuple(c.specs),
                factor,
                lr,
                seed,
                primary,
                None if primary else every,
                deadline,
            )
        )
        state["planned"] += 1

    base = candidates[0]
    submit(base, 1.0, primary=True)
    for c in candidates:
        for f in FIRST_WAVE:
            if f not in c.submitted and c.error is None:
                submit(c, f)
    while runner.pending():
        out = runner.next_done()
        c = by_name[out.trial.name]
        c.add(out, noise=out.trial.seed != cfg.seed)
        state["done"] += 1
        if on_done is not None:
            on_done(out, state["done"], state["planned"])
        if out.trial.primary:
            for new in on_primary(out):
                if new.name in by_name:
                    continue
                candidates.append(new)
                by_name[new.name] = new
                for f in FIRST_WAVE if new.error is None else ():
                    submit(new, f)
        for f in c.more():
            submit(c, f)
        if c.name == UNTREATED and c.settled() and not c.more() and not state["noise"]:
            state["noise"] = True
            best = c.chosen()
            if best is not None and status_of(best, c.metrics[best.trial.factor]) not in (
                "diverged",
                "failed",
            ):
                for k in range(1, NOISE_SEEDS + 1):
                    submit(c, best.trial.factor, seed=cfg.seed + k)
    if deadline is not None and time.time() > deadline:
        state["cut"] = True
    return candidates, bool(state["cut"])
