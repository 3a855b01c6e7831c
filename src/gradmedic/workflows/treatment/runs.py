"""``treat``: every candidate at its own best learning rate, a noise band, an honest verdict.

:func:`treat`

1. trains the untreated model at the user's rate with the Monitor on (the run the diagnosis
   reads), and at the other first-wave rates of the grid
   (:mod:`~gradmedic.workflows.treatment.grid`);
2. diagnoses that run and turns its prescriptions into candidates, each swap of activation
   completed with the init theory makes critical for it
   (:mod:`~gradmedic.workflows.treatment.candidates`,
   :mod:`~gradmedic.workflows.treatment.pairing`), or takes the remedies you name;
3. trains every candidate over the grid (stopping diverging runs; a rate that diverged or
   stalled bounds the grid on its side), and the untreated
   model at its best rate with two more seeds (:mod:`~gradmedic.workflows.treatment.search`),
   as independent trials in worker processes when cores are free
   (:mod:`~gradmedic.workflows.treatment.executors`), within a wall-time budget;
4. measures each candidate at its best rate (:mod:`~gradmedic.workflows.treatment.metrics`),
   picks the best and words the verdict (:mod:`~gradmedic.workflows.treatment.choice`,
   :mod:`~gradmedic.workflows.treatment.verdict`);
5. returns a :class:`~gradmedic.workflows.treatment.result.TreatmentResult` and, given
   ``out=``, saves the verified weights, transform and learning rate.

Example::

    >>> res = treat("mlp:depth=20,width=32,act=sigmoid", "digits",   # doctest: +SKIP
    ...             config=TrainConfig(steps=40), remedies=["add-residual"])
    >>> res.verdict_kind, res.best_row["lr"]                          # doctest: +SKIP
    ('cured', 0.12)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from gradmedic.errors import GradmedicError
from gradmedic.remedies import apply
from gradmedic.workflows.train import TrainConfig
from gradmedic.workflows.treatment.advice import advice
from gradmedic.workflows.treatment.candidates import candidates, diagnose_untreated
from gradmedic.workflows.treatment.choice import UNTREATED, broken, choose, classify, margins
from gradmedic.workflows.treatment.executors import make_runner
from gradmedic.workflows.treatment.grid import LR_FACTORS, parse_budget
from gradmedic.workflows.treatment.result import TreatmentResult
from gradmedic.workflows.treatment.search import Candidate, search, status_of
from gradmedic.workflows.treatment.trials import TrialContext, TrialOutcome
from gradmedic.workflows.treatment.verdict import NoiseBand, verdict_line

__all__ = ["DEFAULT_BUDGET", "TRIAL_RECORDS", "treat"]

#: The wall-time budget of a treatment unless told otherwise.
DEFAULT_BUDGET = "5m"
#: The candidate added when the user's run diverges and no prescription lowers the rate.
LOWER_LR = "lower-lr(factor=0.1)"
#: Trials other than the diagnosed run record about this many steps (init included).
TRIAL_RECORDS = 10

_EMPTY = ("first_last_signal_ratio", "signal_ratio_median", "health", "saturated_frac")
_EMPTY += ("dead_frac", "final_loss", "first_loss", "time_per_step")


def _row(c: Candidate, out: TrialOutcome | None, user_lr: float) -> dict[str, Any]:
    rep = c.report
    row: dict[str, Any] = {
        "name": c.name,
        "specs": list(c.specs),
        "changes": list(getattr(rep, "changes", [])),
        "warnings": list(getattr(rep, "warnings", [])),
        "error": c.error,
        "rates": [
            {
                "lr": o.trial.lr,
                "status": status_of(o, c.metrics[f]),
                "final_loss": c.metrics[f].get("final_loss", math.nan),
                "stopped": o.stopped,
            }
            for f, o in sorted(c.outcomes.items())
        ],
    }
    row.update({k: math.nan for k in _EMPTY})
    row.update({"nonfinite": 0, "diverged_at": None, "status": "not run", "stopped": None})
    row["steps"] = 0
    if out is None:
        row["error"] = row["error"] or "not run: the time budget was spent"
        row["lr"] = user_lr * c.lr_factor
        return row
    row.update(c.metrics[out.trial.factor])
    row["status"] = status_of(out, c.metrics[out.trial.factor])
    row.update({"lr": out.trial.lr, "lr_factor": out.trial.lr / user_lr, "stopped": out.stopped})
    row["steps"] = len(out.result.losses) if out.result is not None else 0
    row["error"] = out.error or c.error
    return row


def _band(c: Candidate) -> NoiseBand | None:
    """The untreated noise band at its chosen rate; None when the untreated model went
    non-finite or diverged at every rate (then every finite, learning candidate beats it)."""
    best = c.chosen()
    if best is None or best.result is None:
        return None
    if status_of(best, c.metrics[best.trial.factor]) in ("diverged", "failed"):
        return None
    runs = [best, *(o for o in c.noise if o.result is not None)]
    losses = [o.result.final_loss if o.result is not None else math.nan for o in runs]
    return NoiseBand.of(losses, lr=best.trial.lr, seeds=[o.trial.seed for o in runs])


def _diverging(c: Candidate) -> bool:
    """The untreated run at the user's rate diverged (or went non-finite) from a finite first
    loss: a learning-rate problem, unlike a NaN born in the first forward pass."""
    out = c.outcomes.get(1.0)
    if out is None or out.result is None or not out.result.losses:
        return False
    first = out.result.losses[0]
    return math.isfinite(first) and status_of(out, c.metrics[1.0]) == "diverged"


def _model_of(ctx: TrialContext, c: Candidate, out: TrialOutcome) -> nn.Module | None:
    state = out.load_state()
    if state is None:
        return None
    model, _ = ctx.prepare(c.specs, ctx.config.seed)
    model.load_state_dict(state)
    return model


def treat(
    model: str | nn.Module,
    data: Any,
    *,
    loss: Any = None,
    config: TrainConfig | None = None,
    remedies: list[str] | str | None = None,
    out: str | Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    budget: str | float | None = DEFAULT_BUDGET,
    executor: str = "auto",
    workers: int | None = None,
) -> TreatmentResult:
    """Diagnose, try each prescription (and a combination theory supports) at its own best
    learning rate, compare against the untreated model's noise band, and say what cured it.

    Args:
        model: an ``nn.Module`` (left untouched) or a model spec / ``file.py:factory``.
        data: a data spec (``digits``, ``adding-100``), a Dataset or a BatchSource.
        loss: loss spec or module; default: the data set's own loss.
        config: the run (default ``TrainConfig()``): steps, batch size, the user's learning
            rate (the centre of the grid), optimizer, seed.
        remedies: remedy specs to try instead of the diagnosis' prescriptions (``"a+b"`` is
            one combined candidate), exactly as written.
        out: folder for ``treatment.json``, ``best_model.pt`` and ``transform.json``.
        progress: called as ``progress(done, planned, text)`` after each trial.
        budget: wall time (``"5m"``, ``"90s"``, seconds; None: unlimited): no trial starts
            after it and running ones stop; the result is what had run.
        executor: ``auto`` | ``serial`` | ``process`` | ``ray`` (:mod:`~gradmedic.workflows.
            treatment.executors`); ``workers``: processes or Ray tasks at a time (default: one
            per free core; on a Ray cluster, its CPU count).

    Raises UnknownNameError for a remedy name that does not exist and ConfigError (listing the
    remedies that apply) for one that does not apply, both before any training; ConfigError
    for a bad budget, executor or worker count, and for ``ray`` when Ray is missing or cannot
    take the model; the training errors of the untreated run.
    """
    cfg = config or TrainConfig()
    seconds = parse_budget(budget)
    start = time.time()
    deadline = start + seconds if seconds else None
    ctx = TrialContext.build(model, data, loss, cfg)
    if remedies is not None:  # validate against the model before spending any training time
        for r in [remedies] if isinstance(remedies, str) else remedies:
            apply(ctx.base, r, inplace=False, loss=loss, data_batch=ctx.batch)
    runner = make_runner(executor, workers, ctx)
    notes: list[str] = []
    found: dict[str, Any] = {"diagnosis": None}

    def candidate(name: str, specs: list[str]) -> Candidate:
        try:
            _, rep = ctx.prepare(specs, cfg.seed)
        except GradmedicError as exc:
            if remedies is not None:
                raise
            return Candidate(name, specs, error=str(exc))
        return Candidate(name, specs, lr_factor=rep.lr_factor, report=rep)

    def on_primary(o: TrialOutcome) -> list[Candidate]:
        trace = o.result.trace if o.result is not None else None
        notes.extend(o.result.notes if o.result is not None else [])
        found["diagnosis"] = diagnose_untreated(trace, ctx.base, loss, notes, ctx.batch[0])
        specs = candidates(remedies, found["diagnosis"], ctx.base, notes, ctx.batch, loss)
        out = [candidate(n, s) for n, s in specs]
        if remedies is None and _diverging(untreated) and all(c.lr_factor >= 1 for c in out):
            notes.append(f"{LOWER_LR}: added because your run diverges from a finite start")
            out.append(candidate(LOWER_LR, [LOWER_LR]))
        return out

    def on_done(o: TrialOutcome, done: int, planned: int) -> None:
        if progress is not None:
            why = o.error or o.stopped or "ran every step"
            progress(
                done, planned, f"{o.trial.name} at lr {o.trial.lr:.3g} (seed {o.trial.seed}): {why}"
            )

    untreated = Candidate(UNTREATED, [])
    every = max(cfg.every, cfg.steps // TRIAL_RECORDS)
    try:
        cands, cut = search(
            runner,
            [untreated],
            cfg,
            every=every,
            deadline=deadline,
            on_primary=on_primary,
            on_done=on_done,
        )
    finally:
        runner.close()
    chosen = {c.name: c.chosen() for c in cands}
    rows = [_row(c, chosen[c.name], cfg.lr) for c in cands]
    band = _band(untreated)
    yours = _row(untreated, untreated.outcomes.get(1.0), cfg.lr)
    yours_broken = broken(yours)
    best, kind = choose(rows, band.low if band else None, yours_broken)
    for r in rows[1:]:
        r["verdict"] = classify(r, band.low if band else None, rows[0]["health"])
        r["below_band"] = band.low - r["final_loss"] if band is not None else None
    rows[0]["verdict"] = UNTREATED
    best_row = next(r for r in rows if r["name"] == best)
    curves = {
        c.name: list(o.result.losses)
        for c in cands
        if (o := chosen[c.name]) and o.result is not None
    }
    healthy = getattr(found["diagnosis"], "outcome", None) == "healthy"
    line = verdict_line(
        kind, best_row, rows, band, yours, yours_broken, cfg.steps, curves, healthy=healthy
    )
    elapsed = time.time() - start
    if cut:
        idle = sum(1 for r in rows[1:] if r["status"] == "not run")
        line += f"; the time budget ({seconds:.3g} s) ran out"
        line += f" before {idle} candidate(s) ran" if idle else " before every rate was tried"
        notes.insert(0, "the time budget ran out: the verdict is on what had run by then")
    best_c = next(c for c in cands if c.name == best)
    best_model = _model_of(ctx, best_c, chosen[best]) if chosen[best] is not None else None
    outdir = Path(out) if out is not None else None
    result = TreatmentResult(
        rows=rows,
        best=best,
        verdict=line,
        verdict_kind=kind,
        band=band,
        yours=yours,
        diagnosis=found["diagnosis"],
        margins=margins(rows[0], best_row, band.low if band else None),
        advice=advice(
            best_row,
            outdir,
            best_c.report,
            user_lr=cfg.lr,
            verdict=line,
            diagnosis=found["diagnosis"],
        ),
        config={
            **cfg.to_dict(),
            "model": model if isinstance(model, str) else type(model).__name__,
            "data": str(ctx.source.info.name),
            "lr_grid": [cfg.lr * f for f in LR_FACTORS],
            "budget_s": seconds,
            "budget_spent": cut,
            "elapsed_s": elapsed,
            "executor": type(runner).__name__,
            "workers": runner.workers,
        },
        notes=notes,
        models={best: best_model} if best_model is not None else {},
        results={n: o.result for n, o in chosen.items() if o is not None and o.result is not None},
        reports={c.name: c.report for c in cands if c.report is not None},
    )
    if outdir is not None:
        result.save(outdir)
    return result
