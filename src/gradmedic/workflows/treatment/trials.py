"""One trial: a candidate remedy, trained once at one learning rate with one seed.

A trial is an independent job: :func:`run_trial` needs only the shared :class:`TrialContext`
(the untreated model, the data, the loss, the run's settings) and the :class:`Trial` itself,
and returns a picklable :class:`TrialOutcome` (losses, trace, why it stopped, the trained
weights as bytes). That is what lets the trials run in worker processes or on another backend
(:mod:`~gradmedic.workflows.treatment.executors`) with the same results as in-process: every
trial runs with one torch thread, the same seed before the remedy is applied and before
training, and the same data order.

Example::

    >>> ctx = TrialContext.build("mlp:depth=3,width=8", "digits", None, TrainConfig(steps=5))
    >>> out = run_trial(ctx, Trial("untreated", (), factor=1.0, lr=0.01, seed=0))
    >>> len(out.result.losses), out.stopped
    (5, None)
"""

from __future__ import annotations

import copy
import dataclasses
import io
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradmedic.errors import ConfigError, GradmedicError
from gradmedic.remedies import RemedyReport, apply
from gradmedic.workflows.train import BatchSource, TrainConfig, TrainResult, resolve_data, train
from gradmedic.workflows.treatment.grid import StopRule
from gradmedic.zoo import load_model

__all__ = ["Trial", "TrialContext", "TrialOutcome", "one_thread", "run_trial"]


@dataclass(frozen=True)
class Trial:
    """One training run of candidate ``name`` (remedy ``specs``; empty for the untreated model)
    at learning rate ``lr`` (``factor`` times the user's rate, times the remedy's own
    ``lr_factor``), training seed ``seed``. ``primary``: the untreated run at the user's own
    rate, which the diagnosis reads: never stopped for diverging, and its errors propagate. ``every``: record
    every k-th step (None: the run's setting). ``deadline``: a :func:`time.time` value after
    which the run stops."""

    name: str
    specs: tuple[str, ...]
    factor: float
    lr: float
    seed: int
    primary: bool = False
    every: int | None = None
    deadline: float | None = None

    @property
    def key(self) -> tuple[str, float, int]:
        return (self.name, self.factor, self.seed)


@dataclass
class TrialOutcome:
    """What a trial produced: its :class:`~gradmedic.workflows.train.TrainResult`, why it
    stopped early (None when it ran every step), the trained ``state_dict`` serialised with
    :func:`torch.save` (``state``), the seconds it took, and ``error`` when the remedy could
    not be applied or the run failed."""

    trial: Trial
    result: TrainResult | None
    stopped: str | None = None
    state: bytes | None = None
    seconds: float = 0.0
    error: str | None = None

    def load_state(self) -> dict[str, torch.Tensor] | None:
        """The trained weights (None when the trial failed)."""
        if self.state is None:
            return None
        return torch.load(io.BytesIO(self.state), weights_only=True)


@dataclass
class TrialContext:
    """What every trial shares. ``model_spec``: the zoo spec when the model was given as one
    (a trial with another seed then rebuilds the model with that seed; an ``nn.Module`` keeps
    its weights and only the training seed changes)."""

    base: nn.Module
    source: BatchSource
    loss: Any
    config: TrainConfig
    batch: tuple[torch.Tensor, torch.Tensor]
    model_spec: str | None = None

    @classmethod
    def build(
        cls, model: str | nn.Module, data: Any, loss: Any, config: TrainConfig
    ) -> TrialContext:
        """Resolve the model and the data once. Raises ConfigError for a model that is
        neither an ``nn.Module`` nor a spec string, and the loaders' errors for bad specs."""
        source = resolve_data(data, seed=config.seed)
        if isinstance(model, str):
            base, spec = load_model(model, source.info, seed=config.seed), model
        elif isinstance(model, nn.Module):
            base, spec = copy.deepcopy(model), None
        else:
            raise ConfigError(
                f"model must be an nn.Module or a model spec string, got {type(model).__name__}"
            )
        size = max(config.batch_size, 128)
        if source.dataset is not None:
            batch = source.dataset.fixed_batch(size, seed=config.seed + 1)
        else:
            batch = next(source.batches(config.batch_size, config.seed))
        return cls(base, source, loss, config, batch, spec)

    def model_for(self, seed: int) -> nn.Module:
        """A fresh copy of the untreated model for a trial with training seed ``seed``."""
        if self.model_spec is not None and seed != self.config.seed:
            return load_model(self.model_spec, self.source.info, seed=seed)
        return copy.deepcopy(self.base)

    def prepare(self, specs: tuple[str, ...] | list[str], seed: int) -> tuple[nn.Module, Any]:
        """(the model a trial trains, its :class:`~gradmedic.remedies.RemedyReport` or None):
        the remedy applied, with torch seeded first so that every trial draws the same."""
        model = self.model_for(seed)
        if not specs:
            return model, None
        torch.manual_seed(self.config.seed)
        return apply(model, list(specs), data_batch=self.batch, inplace=True, loss=self.loss)


class one_thread:
    """Run the block with one torch thread (as every worker process does), then restore."""

    def __enter__(self) -> None:
        self._n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._n)


def run_trial(ctx: TrialContext, trial: Trial) -> TrialOutcome:
    """Apply the trial's remedy to a fresh copy of the untreated model and train it (see the
    module docstring). A remedy or training error becomes ``error`` in the outcome, except for
    the primary trial, whose errors propagate (a bad model, data or loss is the user's to fix)."""
    t0 = time.perf_counter()
    cfg = ctx.config
    rule = StopRule(deadline=trial.deadline, prune=not trial.primary)
    try:
        model, rep = ctx.prepare(trial.specs, trial.seed)
        run_cfg = dataclasses.replace(
            cfg, lr=trial.lr, seed=trial.seed, every=trial.every or cfg.every
        )
        rep_loss = rep.loss if isinstance(rep, RemedyReport) and rep.loss is not None else None
        result = train(
            model,
            ctx.source,
            run_cfg,
            loss=rep_loss if rep_loss is not None else ctx.loss,
            grad_transform=rep.grad_transform if rep is not None else None,
            stop=rule,
        )
    except Exception as exc:
        if trial.primary:
            raise
        why = str(exc) if isinstance(exc, GradmedicError) else f"{type(exc).__name__}: {exc}"
        return TrialOutcome(trial, None, seconds=time.perf_counter() - t0, error=why)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return TrialOutcome(trial, result, rule.reason, buf.getvalue(), time.perf_counter() - t0)
