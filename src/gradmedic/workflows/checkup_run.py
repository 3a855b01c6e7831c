"""``gradmedic diagnose`` as a workflow: build the model and data from their specs, train while
the Monitor writes ``out/trace.sqlite``, and diagnose the trace, the model and the loss
(:func:`gradmedic.workflows.checkup.diagnose`).

An ``out`` folder that already holds a trace is refused unless ``overwrite=True``
(``--overwrite``): the trace writer appends by default, and a diagnosis is of one run.

Example::

    >>> run = run_checkup("mlp:depth=30,act=sigmoid", "digits", out="run")  # doctest: +SKIP
    >>> run.diagnosis.slugs()[0], run.trace_path                           # doctest: +SKIP
    ('vanishing-gradient', PosixPath('run/trace.sqlite'))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gradmedic.diagnosis.datascale import first_batch_stats
from gradmedic.diagnosis.finding import Diagnosis
from gradmedic.errors import ConfigError, TraceError
from gradmedic.trace import Trace
from gradmedic.workflows.checkup import _has_rnn, _sample, diagnose
from gradmedic.workflows.train import TrainConfig, resolve_data, train
from gradmedic.zoo import load_model, loss_for

__all__ = ["Checkup", "run_checkup"]


@dataclass
class Checkup:
    """What :func:`run_checkup` produced: the diagnosis, the trace it rests on (saved at
    ``trace_path``), the per-step training losses and their :attr:`final_loss`, the effective
    training config, and ``report``: where the caller wrote an HTML report (None until then)."""

    diagnosis: Diagnosis
    trace: Trace
    trace_path: Path
    losses: list[float]
    final_loss: float
    config: TrainConfig
    report: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The diagnosis's dict with ``trace``, ``report``, ``losses`` and ``config`` added."""
        payload = self.diagnosis.to_dict()
        payload.update(
            trace=str(self.trace_path),
            report=str(self.report) if self.report else None,
            losses=self.losses,
            config=self.config.to_dict(),
        )
        return payload


def run_checkup(
    model: str,
    data: str,
    *,
    loss: str | None = None,
    config: TrainConfig | None = None,
    out: str | Path = "gradmedic-out",
    progress: Callable[[int, float], None] | None = None,
    overwrite: bool = False,
) -> Checkup:
    """Build ``model`` (a zoo spec or ``file.py:factory``) for ``data`` (a data spec or
    ``file.py:factory``), train it with ``config`` (default 20 steps, every step recorded; exact
    RNN time profiles when the model has an RNN) while the Monitor writes
    ``out/trace.sqlite``, and diagnose the trace, the trained model and the loss: what
    ``gradmedic diagnose`` does before it prints. ``progress(step, loss)`` is called after
    each step. The trace's metadata names the three specs (``loss`` default: the data's own);
    the diagnosis's ``meta["notes"]`` says what training changed to make the data fit.

    Raises UnknownNameError / ConfigError for bad specs, ConfigError when ``out`` already holds
    a trace and ``overwrite`` is False (a diagnosis is of one run: an earlier run's trace is
    replaced only when asked), DataError / ModelError for anything the data, model or loss
    raise (one line, see :func:`~gradmedic.workflows.train.train`), TraceError when another
    process writes that trace, and OSError when ``out`` cannot be created.

    Example::

        >>> run = run_checkup("mlp:depth=30,act=sigmoid", "digits", out="run")  # doctest: +SKIP
        >>> run.diagnosis.slugs()[0], run.trace_path                           # doctest: +SKIP
        ('vanishing-gradient', PosixPath('run/trace.sqlite'))
    """
    cfg = config or TrainConfig(steps=20, every=1)
    source = resolve_data(data, seed=cfg.seed)
    net = load_model(model, source.info, seed=cfg.seed)
    cfg = replace(cfg, rnn_hidden=_has_rnn(net))
    loss_fn = loss_for(source.info, loss)
    out = Path(out)
    trace_path = out / "trace.sqlite"
    if trace_path.exists() and not overwrite:
        raise ConfigError(
            f"{out} already holds a trace of an earlier run ({trace_path}); pass --overwrite to "
            "replace it, or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model_spec": model, "data_spec": data, "loss_spec": loss or source.info.default_loss}
    meta["data_stats"] = first_batch_stats(source, cfg.batch_size, cfg.seed)  # the data's scale
    sample = _sample(source, cfg)
    run = train(
        net, source, cfg, loss=loss_fn, trace_path=trace_path, overwrite=overwrite,
        progress=progress, metadata=meta,
    )  # fmt: skip
    if run.trace is None:  # pragma: no cover - train always monitors here
        raise TraceError(f"training {model} on {data} recorded no trace")
    result = diagnose(run.trace, model=net, loss=loss_fn, sample=sample)
    result.meta["notes"] = run.notes
    return Checkup(result, run.trace, trace_path, run.losses, run.final_loss, cfg)
