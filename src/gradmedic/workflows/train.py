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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradmedic._callspec import is_factory_ref, load_factory
from gradmedic.errors import ConfigError, DataError, ModelError, unknown_name
from gradmedic.monitor import Monitor
from gradmedic.trace import Trace
from gradmedic.zoo import DataInfo, Dataset, load_data, loss_for, make_loss

__all__ = [
    "OPTIMIZERS",
    "BatchSource",
    "TrainConfig",
    "TrainResult",
    "make_optimizer",
    "resolve_data",
    "train",
]

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")


@dataclass
class TrainConfig:
    """Settings of a short training run. ``optimizer``: sgd | momentum (SGD, 0.9) | adam |
    adamw | rmsprop."""

    steps: int = 50
    batch_size: int = 64
    lr: float = 0.01
    optimizer: str = "sgd"
    seed: int = 0
    every: int = 1
    rnn_hidden: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}; e.g. --steps 50")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr}")
        if self.every < 1:
            raise ConfigError(
                f"every must be >= 1 (record every k-th step), got {self.every}; e.g. --every 1"
            )
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name("optimizer", self.optimizer, OPTIMIZERS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Build an optimizer by name (see :data:`OPTIMIZERS`)."""
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise unknown_name("optimizer", name, OPTIMIZERS)


class BatchSource:
    """Batches from a built-in :class:`Dataset` or from a user factory's iterable.

    A factory (``path/to/file.py:factory``) returns an iterable of ``(input, target)``
    batches; it is re-iterated when exhausted, and must yield at least one batch.
    """

    def __init__(self, dataset: Dataset | None = None, factory: Callable[[], Any] | None = None):
        self.dataset = dataset
        self.factory = factory
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None
        if factory is not None:
            self._first = self._check(next(iter(self._iterable()), None))

    @property
    def info(self) -> DataInfo:
        if self.dataset is not None:
            return self.dataset.info
        x, y = self._first  # type: ignore[misc]
        task = "classification" if not y.is_floating_point() else "regression"
        return DataInfo(
            name="custom",
            input_shape=tuple(x.shape[1:]),
            task=task,
            num_outputs=int(y.max()) + 1 if task == "classification" else y.shape[-1],
            seq_len=None,
            default_loss="ce" if task == "classification" else "mse",
        )

    def _iterable(self) -> Iterable[Any]:
        it = self.factory()  # type: ignore[misc]
        if not isinstance(it, Iterable):
            raise DataError(
                f"the data factory returned {type(it).__name__}, expected an iterable of "
                "(input, target) batches, e.g. a list of tuples or a DataLoader"
            )
        return it

    @staticmethod
    def _check(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if batch is None:
            raise DataError("the data factory yielded no batch; it must yield (input, target)")
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise DataError(
                f"each batch must be an (input, target) pair, got {type(batch).__name__}; "
                "yield (x, y) tensors from the data factory"
            )
        x, y = batch
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise DataError("batches must hold tensors: yield (torch.Tensor, torch.Tensor)")
        return x, y

    def batches(self, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.dataset is not None:
            yield from self.dataset.batches(batch_size, seed)
            return
        while True:
            for batch in self._iterable():
                yield self._check(batch)


def resolve_data(spec: str | Dataset | BatchSource, *, seed: int = 0) -> BatchSource:
    """A built-in data spec (``digits``, ``adding-200``, ...), a factory reference or a Dataset."""
    if isinstance(spec, BatchSource):
        return spec
    if isinstance(spec, Dataset):
        return BatchSource(dataset=spec)
    if is_factory_ref(spec):
        return BatchSource(factory=load_factory(spec))
    return BatchSource(dataset=load_data(spec, seed=seed))


@dataclass
class TrainResult:
    """What a run produced: per-step losses and times, the trace, non-finite events."""

    losses: list[float]
    step_times: list[float]
    trace: Trace | None
    events: list[dict[str, Any]] = field(default_factory=list)
    diverged_at: int | None = None
    config: TrainConfig | None = None

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
    grad_transform: Callable[[Iterable[nn.Parameter]], Any] | None = None,
    progress: Callable[[int, float], None] | None = None,
    metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.steps`` seeded steps, monitored, and return what happened.

    Args:
        model: the model (trained in place: pass a copy to keep the original).
        data: a data spec, a :class:`Dataset` or a :class:`BatchSource`.
        config: steps, batch size, lr, optimizer, seed, recording schedule.
        loss: a loss spec (``ce``, ``mse``, ``bce``, ``bce-logits``, ``nll``, a factory
            reference) or a callable; default: the data set's own loss.
        monitor: ``True`` (default Monitor settings of ``config``), ``False``, or Monitor kwargs.
        trace_path: where to write the crash-safe trace (in memory when ``None``).
        grad_transform: called with the parameters between backward and the optimizer step
            (e.g. a gradient clipper).
        progress: called as ``progress(step, loss)`` after each step.
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
        meta = {"seed": cfg.seed, "train_config": cfg.to_dict(), **(metadata or {})}
        mon = Monitor(model, optimizer=opt, trace=trace_path, metadata=meta, **kwargs)
    losses: list[float] = []
    times: list[float] = []
    diverged: int | None = None
    batches = source.batches(cfg.batch_size, cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        if mon is not None:
            mon.attach()
        for step in range(cfg.steps):
            x, y = next(batches)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            try:
                out = model(x)
                if isinstance(out, tuple):
                    out = out[0]
                value = loss_fn(out, y)
            except RuntimeError as exc:
                raise DataError(_shape_hint(exc, x, info)) from exc
            extra = _aux_loss(model, loss_fn, y)
            total = value + extra if extra is not None else value
            total.backward()
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
    )


def _shape_hint(exc: RuntimeError, x: torch.Tensor, info: DataInfo) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"the model cannot run on this data: {first} (batch input shape {tuple(x.shape)}, "
        f"data '{info.name}', task {info.task}); pick a model that fits the data "
        "(e.g. --model mlp for flat data, --model lstm for adding-T) or change its options"
    )
