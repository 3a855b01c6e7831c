"""The treatment runs: the untreated model and every candidate, trained the same seeded way.

:func:`treat` trains the untreated model (the same :class:`~gradmedic.workflows.train.
TrainConfig`, data order and loss for every run) with the Monitor on, diagnoses it, then for
each candidate deep-copies the untreated model, applies the remedy with
:func:`gradmedic.remedies.apply` (a clipper goes between backward and the optimizer step, a
fused loss replaces the loss, ``lower-lr`` scales the learning rate) and retrains; every run
is measured by :func:`~gradmedic.workflows.treatment.metrics.run_metrics` and the best is
chosen by :data:`~gradmedic.workflows.treatment.choice.BEST_RULE`.

Example::

    >>> res = treat("mlp:depth=20,width=32,act=sigmoid", "digits",
    ...             config=TrainConfig(steps=40), remedies=["swap-activation(to=leaky_relu)"])
    >>> res.best
    'swap-activation(to=leaky_relu)'
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradmedic.errors import ConfigError, GradmedicError
from gradmedic.remedies import apply
from gradmedic.workflows.train import BatchSource, TrainConfig, TrainResult, resolve_data, train
from gradmedic.workflows.treatment.candidates import candidates, diagnose_untreated
from gradmedic.workflows.treatment.choice import UNTREATED, advice, choose, margins
from gradmedic.workflows.treatment.metrics import run_metrics
from gradmedic.workflows.treatment.result import TreatmentResult
from gradmedic.zoo import load_model

__all__ = ["treat"]


def _first_batch(source: BatchSource, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    size = max(cfg.batch_size, 128)
    if source.dataset is not None:
        return source.dataset.fixed_batch(size, seed=cfg.seed + 1)
    return next(source.batches(cfg.batch_size, cfg.seed))


def _base_model(model: str | nn.Module, source: BatchSource, seed: int) -> tuple[nn.Module, str]:
    if isinstance(model, str):
        return load_model(model, source.info, seed=seed), model
    if isinstance(model, nn.Module):
        return copy.deepcopy(model), type(model).__name__
    raise ConfigError(
        f"model must be an nn.Module or a model spec string, got {type(model).__name__}"
    )


def treat(
    model: str | nn.Module,
    data: Any,
    *,
    loss: Any = None,
    config: TrainConfig | None = None,
    remedies: list[str] | str | None = None,
    out: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> TreatmentResult:
    """Diagnose, apply each prescription (and the recommended combination) to a copy, retrain
    each the same way, compare and pick the best
    (:mod:`~gradmedic.workflows.treatment.choice`).

    Args:
        model: an ``nn.Module`` (left untouched) or a model spec / ``file.py:factory``.
        data: a data spec (``digits``, ``adding-100``), a Dataset or a BatchSource.
        loss: loss spec or module; default: the data set's own loss.
        config: the short training run (default ``TrainConfig()``), the same for all.
        remedies: remedy specs to try instead of the diagnosis' prescriptions (``"a+b"`` is
            one combined candidate).
        out: folder for ``treatment.json``, ``best_model.pt`` and ``transform.json``
            (:meth:`TreatmentResult.save`); the HTML report is
            ``gradmedic.report.treatment.write_treatment_report(result)``.
        progress: called with a line of text before each run.

    Raises UnknownNameError for a remedy name that does not exist and ConfigError (listing the
    remedies that apply) for one that does not apply to this model, both before any training.
    """
    cfg = config or TrainConfig()
    say = progress or (lambda _msg: None)
    source = resolve_data(data, seed=cfg.seed)
    base, model_name = _base_model(model, source, cfg.seed)
    batch = _first_batch(source, cfg)
    if remedies is not None:  # validate against the model before spending any training time
        for r in [remedies] if isinstance(remedies, str) else remedies:
            apply(base, r, inplace=False, loss=loss, data_batch=batch)
    notes: list[str] = []
    say(f"training {UNTREATED} ({cfg.steps} steps)")
    first = copy.deepcopy(base)
    res0 = train(first, source, cfg, loss=loss)
    diagnosis = diagnose_untreated(res0.trace, base, loss, notes)
    row0 = {"name": UNTREATED, "specs": [], "changes": [], "error": None, **run_metrics(res0)}
    rows = [row0]
    models: dict[str, nn.Module] = {UNTREATED: first}
    results: dict[str, TrainResult] = {UNTREATED: res0}
    reports: dict[str, Any] = {}
    for name, specs in candidates(remedies, diagnosis, base, notes):
        say(f"training {name}")
        torch.manual_seed(cfg.seed)
        try:
            m, rep = apply(copy.deepcopy(base), specs, data_batch=batch, inplace=True, loss=loss)
        except GradmedicError as exc:
            if remedies is not None:
                raise
            rows.append({"name": name, "specs": specs, "changes": [], "error": str(exc)})
            continue
        res = train(
            m,
            source,
            dataclasses.replace(cfg, lr=cfg.lr * rep.lr_factor),
            loss=rep.loss if rep.loss is not None else loss,
            grad_transform=rep.grad_transform,
        )
        rows.append(
            {
                "name": name,
                "specs": specs,
                "changes": list(rep.changes),
                "warnings": list(rep.warnings),
                "error": None,
                **run_metrics(res),
            }
        )
        models[name], results[name], reports[name] = m, res, rep
    for r in rows:  # failed candidates get empty metrics
        for key in row0:
            r.setdefault(key, math.nan)
    best = choose(rows)
    best_row = next(r for r in rows if r["name"] == best)
    outdir = Path(out) if out is not None else None
    result = TreatmentResult(
        rows=rows,
        best=best,
        diagnosis=diagnosis,
        margins=margins(row0, best_row),
        advice=advice(best_row, outdir, reports.get(best)),
        config={**cfg.to_dict(), "model": model_name, "data": str(source.info.name)},
        notes=notes,
        models=models,
        results=results,
        reports=reports,
    )
    if outdir is not None:
        result.save(outdir)
    return result
