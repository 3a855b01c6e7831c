"""A short, seeded training run: the common ground of ``diagnose``, ``treat`` and the lab.

Everything that makes two runs comparable lives here: the seed (model init, batch order),
the optimizer, the loss, the number of steps, and an optional gradient transform (a clipper
from :mod:`gradmedic.remedies`) applied between ``backward`` and the optimizer step. The
same call with the same arguments gives bit-identical losses on CPU.

Example::

    >>> from gradmedic.zoo import load_data, build_model
    >>> data = load_data("digits")
    >>> model = build_model("mlp:depth=4", data.info, seed=0)
    >>> run = train(model, data, TrainConfig(steps=5, seed=0))
    >>> len(run.losses)
    5
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradmedic.errors import GradmedicError, ModelError
from gradmedic.monitor import Monitor
from gradmedic.trace import Trace
from gradmedic.workflows import failures, step_checks
from gradmedic.workflows.batches import BatchSource, resolve_data
from gradmedic.workflows.config import OPTIMIZERS, TrainConfig, make_optimizer
from gradmedic.workflows.failures import Step
from gradmedic.zoo import Dataset, loss_for, make_loss
from gradmedic.zoo.build import require_materialised

__all__ = [  # TrainConfig, OPTIMIZERS and make_optimizer live in workflows.config
    "OPTIMIZERS",
    "BatchSource",
    "TrainConfig",
    "TrainResult",
    "make_optimizer",
    "resolve_data",
    "train",
]


@dataclass
class TrainResult:
    """What a run produced: per-step losses and times, the trace, non-finite events."""

    losses: list[float]
    step_times: list[float]
    trace: Trace | None
    events: list[dict[str, Any]] = field(default_factory=list)
    diverged_at: int | None = None
    config: TrainConfig | None = None
    #: what gradmedic changed to make the data fit (e.g. targets reshaped to the output)
    notes: list[str] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """Mean of the last 10% of steps (at least one) - less noisy than the last loss."""
        finite = self.losses
        k = max(1, len(finite) // 10)
        tail = finite[-k:]
        return float(sum(tail) / len(tail)) if tail else math.nan

    @property
    def time_per_step(self) -> float:
        times = sorted(self.step_times)
        return times[len(times) // 2] if times else math.nan


def _aux_loss(model: nn.Module, loss_fn: nn.Module, y: torch.Tensor) -> torch.Tensor | None:
    aux = getattr(model, "aux_loss", None)
    if callable(aux) and getattr(model, "aux_enabled", False) and model.training:
        return aux(loss_fn, y)
    return None


def train(
    model: nn.Module,
    data: str | Dataset | BatchSource,
    config: TrainConfig | None = None,
    *,
    loss: str | nn.Module | Callable[..., torch.Tensor] | None = None,
    monitor: bool | dict[str, Any] = True,
    trace_path: str | Path | None = None,
    overwrite: bool = False,
    grad_transform: Callable[[Iterable[nn.Parameter]], Any] | None = None,
    progress: Callable[[int, float], None] | None = None,
    metadata: dict[str, Any] | None = None,
    stop: Callable[[int, float], bool] | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.steps`` seeded steps, monitored, and return what happened.

    Args:
        model: the model (trained in place: pass a copy to keep the original).
        data: a data spec, a :class:`Dataset` or a :class:`BatchSource`.
        config: steps, batch size, lr, optimizer, seed, recording schedule.
        loss: a loss spec (``ce``, ``mse``, ``bce``, ``bce-logits``, ``nll``, a factory
            reference) or a callable; default: the data set's own loss. The spec (or the
            default's name) is written to the trace's metadata as ``loss_spec``.
        monitor: ``True`` (default Monitor settings of ``config``), ``False``, or Monitor kwargs.
        trace_path: where to write the crash-safe trace (in memory when ``None``).
        overwrite: replace an existing trace at ``trace_path`` instead of appending to it.
        grad_transform: called with the parameters between backward and the optimizer step
            (e.g. a gradient clipper).
        progress: called as ``progress(step, loss)`` after each step.
        stop: called as ``stop(step, loss)`` after each step; True ends the run there (the
            result holds the steps done; ``treat`` prunes diverging and stalled runs with it).

    Raises a :class:`~gradmedic.errors.GradmedicError` (one line: step, batch, module, shapes,
    what to do) for anything the model, the data or the loss raises or returns wrongly
    (:mod:`~gradmedic.workflows.failures`, :mod:`~gradmedic.workflows.step_checks`). A target
    that differs from the output only by a trailing dimension of size 1 is reshaped to fit,
    and :attr:`TrainResult.notes` says so.
    """
    cfg = config or TrainConfig()
    source = resolve_data(data, seed=cfg.seed)
    info = source.info
    if isinstance(loss, str):
        loss_fn: Callable[..., torch.Tensor] = (
            loss_for(info, loss) if info.task == "seq-classification" else make_loss(loss)
        )
    elif loss is None:
        loss_fn = loss_for(info)
    else:
        loss_fn = loss
    require_materialised(model, type(model).__name__)
    if not any(p.requires_grad for p in model.parameters()):
        raise ModelError(
            f"{type(model).__name__} has no trainable parameters; gradmedic needs a model with "
            "trainable parameters (requires_grad=True) to measure gradients"
        )
    torch.manual_seed(cfg.seed)
    model.train()
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    if hasattr(grad_transform, "bind"):  # clippers that read optimizer state (SPAM)
        grad_transform.bind(opt)
    mon: Monitor | None = None
    if monitor:
        kwargs: dict[str, Any] = {"every": cfg.every, "rnn_hidden": cfg.rnn_hidden}
        if isinstance(monitor, dict):
            kwargs.update(monitor)
        spec = loss if isinstance(loss, str) else info.default_loss if loss is None else None
        meta = {"seed": cfg.seed, "train_config": cfg.to_dict(), "loss_spec": spec}
        meta.update(metadata or {})
        mon = Monitor(
            model, optimizer=opt, trace=trace_path, metadata=meta, overwrite=overwrite, **kwargs
        )
    losses: list[float] = []
    times: list[float] = []
    notes: list[str] = []
    diverged: int | None = None
    batches = source.batches(cfg.batch_size, cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        if mon is not None:
            mon.attach()
        for step in range(cfg.steps):
            x, y = next(batches)
            here = Step(step, source.where, x, y, info.name, info.task)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            value, total = _forward_and_loss(model, loss_fn, here, notes)
            try:
                total.backward()
            except GradmedicError:
                raise
            except (Exception, SystemExit) as exc:
                raise failures.backward_failure(exc, here) from exc
            if mon is not None:
                mon.observe(value)
            if grad_transform is not None:
                grad_transform(params)
            opt.step()
            times.append(time.perf_counter() - t0)
            v = float(value.detach())
            losses.append(v)
            if diverged is None and not math.isfinite(v):
                diverged = step
            if progress is not None:
                progress(step, v)
            if stop is not None and stop(step, v):
                break
    finally:
        if mon is not None:
            mon.detach()
    return TrainResult(
        losses=losses,
        step_times=times,
        trace=mon.trace() if mon is not None else None,
        events=list(mon.events) if mon is not None else [],
        diverged_at=diverged,
        config=cfg,
        notes=notes,
    )


def _forward_and_loss(
    model: nn.Module, loss_fn: Callable[..., Any], here: Step, notes: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, loss + auxiliary loss) of one batch; every failure of the user's code is one
    GradmedicError line."""
    try:
        raw = model(here.x)
    except GradmedicError:
        raise
    except (Exception, SystemExit) as exc:
        raise failures.forward_failure(exc, model, here) from exc
    out = step_checks.model_output(raw, here)
    here.out = out
    y, note = step_checks.fit_target(out, here.y)
    if note is not None and note not in notes:
        notes.append(note)
    here.y = y
    step_checks.check_labels(out, y, loss_fn, here)
    try:
        value = loss_fn(out, y)
        extra = _aux_loss(model, loss_fn, y)
    except GradmedicError:
        raise
    except (Exception, SystemExit) as exc:
        raise failures.loss_failure(exc, step_checks.loss_name(loss_fn), here) from exc
    value = step_checks.loss_value(value, loss_fn, here)
    return value, value + extra if extra is not None else value
