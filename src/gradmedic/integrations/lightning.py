"""PyTorch Lightning: ``GradmedicCallback`` records gradient flow during ``Trainer.fit``.

Install with ``pip install 'gradmedic[lightning]'``. The callback attaches a
:class:`~gradmedic.monitor.Monitor` when training starts and ends one Monitor step per
optimizer step in ``on_before_optimizer_step``: after every micro-batch of gradient
accumulation has been added up and after an AMP GradScaler has unscaled the gradients, before
``gradient_clip_val`` clips them. So the trace holds the norms before clipping, summed over
the accumulated micro-batches, unscaled; ``meta["gradients"]`` says so. Each micro-batch's
loss is observed (undoing Lightning's division by ``accumulate_grad_batches`` and the loss
scale). The scalars of each recorded step go to every logger of the Trainer as
``gradmedic/<tag>`` at the trace's step number. When the fit ends, the trace is diagnosed and
``report.html`` is written beside it, by default in ``<trainer.log_dir>/gradmedic/``;
``fail_on="error"`` then makes ``trainer.fit`` raise :class:`FindingsError`.

The Monitor's step counter is saved in the checkpoint (the callback's ``state_dict``); a fit
resumed with ``ckpt_path=`` and the same ``trace=`` appends to that trace with continuing
step numbers. A Monitor step is an optimizer step: with several optimizers it counts each.
``update_ratio`` is not recorded (the step is read before the optimizer runs).

Example::

    from gradmedic.integrations.lightning import GradmedicCallback

    trainer = Trainer(max_steps=1000, accumulate_grad_batches=2, gradient_clip_val=1.0,
                      callbacks=[GradmedicCallback(every=20, fail_on="error")])
    trainer.fit(module, datamodule)   # trace and report.html in <log_dir>/gradmedic/
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gradmedic.integrations._session import FindingsError, SessionCallback, gradient_facts
from gradmedic.monitor.probes import amp_scale

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError as exc:
        raise ImportError(
            "gradmedic.integrations.lightning needs PyTorch Lightning; install it with: "
            "pip install 'gradmedic[lightning]'"
        ) from exc

__all__ = ["FindingsError", "GradmedicCallback"]


class GradmedicCallback(SessionCallback, pl.Callback):
    """Record gradient flow over a Lightning fit, diagnose it and write the report.

    Args:
        trace: the trace path; default ``<trainer.log_dir>/gradmedic/trace.sqlite``. An
            existing trace is appended to.
        every: record every k-th optimizer step (default 20; the Monitor's ``every``).
        fail_on: ``"warning"`` or ``"error"``: the fit raises :class:`FindingsError` at its end
            when the diagnosis has findings of that severity or worse.
        report: write ``report.html`` beside the trace (default True).
        log: log the scalars through the Trainer's loggers (default True).
        per_layer: log ``signal_out/<module>`` of every module too.
        sinks: more sinks for the Monitor (``TensorBoardSink``, ``MlflowSink``, ...).
        **monitor_options: other ``Monitor`` arguments (``modules``, ``activations``,
            ``rnn_hidden``, ``metadata``, ...).

    Raises:
        ConfigError: an unknown ``fail_on`` severity.
        FindingsError: at the end of ``trainer.fit``, per ``fail_on``.

    After the fit, ``diagnosis`` holds the :class:`~gradmedic.diagnosis.Diagnosis`,
    ``trace_path`` and ``report_path`` the files.

    Example::

        cb = GradmedicCallback(every=10, sinks=[TensorBoardSink("runs/grads")])
        Trainer(max_steps=500, callbacks=[cb]).fit(module)
        print(cb.diagnosis.slugs(), cb.report_path)
    """

    def _init_state(self) -> None:
        self._trainer: Any = None
        self._scaler: Any = None
        self._loss_factor = 1.0

    # ------------------------------------------------------------------ fit
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._trainer = trainer
        self._scaler = getattr(trainer.precision_plugin, "scaler", None)
        auto = pl_module.automatic_optimization
        accumulate = int(trainer.accumulate_grad_batches) if auto else 1
        self._loss_factor = float(accumulate)
        clip_alg = trainer.gradient_clip_algorithm
        facts = gradient_facts(
            framework=f"lightning {pl.__version__}",
            clip=trainer.gradient_clip_val if auto else None,
            clip_algorithm=getattr(clip_alg, "value", clip_alg),
            scaled=False,  # Lightning unscales before on_before_optimizer_step
            micro_batches=accumulate,
            precision=str(trainer.precision),
        )
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "gradmedic"
        self.session.start(
            pl_module, folder=folder, scaler=self._scaler, gradients=facts,
            log_fn=self._log if self.log else None, first_step=int(trainer.global_step),
        )  # fmt: skip

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: torch.Tensor) -> None:
        loss = loss.detach() * self._loss_factor
        scale = amp_scale(self._scaler)
        self.session.observe(loss if scale is None else loss / scale)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.session.end_step()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.stop()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.session.stop()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self._trainer is not None:  # training started
            self.session.finish()

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.session.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.session.load_state_dict(state_dict.get("monitor", {}))

    def _log(self, step: int, scalars: dict[str, float]) -> None:
        for logger in self._trainer.loggers:
            logger.log_metrics(scalars, step=step)
