"""Hugging Face: ``GradmedicCallback`` records gradient flow during ``Trainer.train``.

Install with ``pip install 'gradmedic[transformers]'``. The ``Trainer`` offers callbacks no
moment between the last backward of an optimizer step and ``max_grad_norm`` clipping, so the
callback ends each Monitor step at the end of that backward pass (the last micro-batch, as
accelerate's ``GradientState.sync_gradients`` marks it; an autograd-engine callback queued by a
parameter's post-accumulate-grad hook). The trace thus holds the norms before clipping, summed
over the accumulated micro-batches; under fp16 with a GradScaler the parameter gradients still
carry the loss scale (the backward signals are divided by it); ``meta["gradients"]`` says
which. The step's loss is read from the model's ``output.loss`` of each micro-batch: their
sum when the Trainer passed ``num_items_in_batch`` (each is then a share of the step's mean),
else their mean.

The scalars of each recorded step go through ``trainer.log`` as ``gradmedic/<tag>``, so every
reporter of ``report_to`` (TensorBoard, MLflow, W&B, ...) receives them (the Trainer's
TensorBoard reporter files them as ``train/gradmedic/<tag>``), at the Trainer's
``global_step`` equal to the trace's step. That needs the trainer: create the callback with
:meth:`GradmedicCallback.attach`. At the end of training the trace is diagnosed and
``report.html`` written beside it (default ``<output_dir>/gradmedic/``); ``fail_on="error"``
makes ``trainer.train`` raise :class:`FindingsError`. The Monitor's state is saved in each
checkpoint folder (``gradmedic_monitor.json``); a run resumed from a checkpoint appends to the
trace with continuing step numbers. ``update_ratio`` is not recorded.

Example::

    from gradmedic.integrations.transformers import GradmedicCallback

    trainer = Trainer(model=model, args=TrainingArguments("out", report_to="tensorboard"),
                      train_dataset=ds)
    GradmedicCallback.attach(trainer, every=20, fail_on="error")
    trainer.train()   # trace and report.html in out/gradmedic/
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from gradmedic.errors import ConfigError
from gradmedic.integrations._session import FindingsError, SessionCallback, gradient_facts

try:
    import transformers
    from transformers import TrainerCallback
except ImportError as exc:
    raise ImportError(
        "gradmedic.integrations.transformers needs transformers; install it with: "
        "pip install 'gradmedic[transformers]'"
    ) from exc

__all__ = ["STATE_FILE", "FindingsError", "GradmedicCallback"]

#: the Monitor's state in each checkpoint folder
STATE_FILE = "gradmedic_monitor.json"


def _loss_of(output: Any) -> torch.Tensor | None:
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) and loss.numel() == 1 else None


class GradmedicCallback(SessionCallback, TrainerCallback):
    """Record gradient flow over a Hugging Face ``Trainer`` run, diagnose it, write the report.

    Args: as :class:`gradmedic.integrations.lightning.GradmedicCallback` (``trace`` defaults
    to ``<output_dir>/gradmedic/trace.sqlite``).

    Raises:
        ConfigError: an unknown ``fail_on``; at the start of training, when ``log=True`` and
            the callback was not created with :meth:`attach`.
        FindingsError: at the end of ``trainer.train()``, per ``fail_on``.

    Example::

        cb = GradmedicCallback.attach(trainer, every=10, fail_on="error")
        trainer.train()
        print(cb.diagnosis.slugs(), cb.report_path)
    """

    def _init_state(self) -> None:
        self.trainer: Any = None
        self._handles: list[Any] = []
        self._pending: list[dict[str, float]] = []
        self._queued = False
        self._sync: Any = None
        self._losses: list[torch.Tensor] = []
        self._shares = False

    @classmethod
    def attach(cls, trainer: Any, trace: str | Path | None = None, **options: Any) -> Any:
        """Create the callback, add it to ``trainer`` and return it (options as the class)."""
        cb = cls(trace, **options)
        cb.trainer = trainer
        trainer.add_callback(cb)
        return cb

    # ------------------------------------------------------------------ train
    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.log and self.trainer is None:
            raise ConfigError(
                "the scalars go through trainer.log, so the callback needs the trainer: use "
                "GradmedicCallback.attach(trainer, ...) (or pass log=False)"
            )
        from accelerate.state import GradientState

        self._sync = GradientState()
        model, optimizer = kw["model"], kw.get("optimizer")
        scaler = getattr(optimizer, "scaler", None)
        precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
        facts = gradient_facts(
            framework=f"transformers {transformers.__version__}",
            clip=args.max_grad_norm, clip_algorithm="norm", scaled=scaler is not None,
            micro_batches=args.gradient_accumulation_steps, precision=precision,
        )  # fmt: skip
        saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
        if state.global_step > 0 and saved.exists():
            self.session.load_state_dict(json.loads(saved.read_text()))
        self.session.start(
            model, folder=Path(args.output_dir) / "gradmedic", scaler=scaler, gradients=facts,
            log_fn=self._collect if self.log else None, first_step=int(state.global_step),
        )  # fmt: skip
        self._handles = [model.register_forward_hook(self._on_forward, with_kwargs=True)]
        for p in model.parameters():
            if p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(self._on_grad))

    def _on_forward(self, module: Any, args: Any, kwargs: Any, output: Any) -> None:
        if module.training and torch.is_grad_enabled():
            loss = _loss_of(output)
            if loss is not None:
                self._losses.append(loss.detach().float())
                # given the step's token count, each micro-batch's loss is its share of the
                # step's loss (they add up); otherwise each is a whole mean (they average)
                self._shares = kwargs.get("num_items_in_batch") is not None

    def _observe_step_loss(self) -> None:
        if self._losses:
            losses = torch.stack(self._losses)
            self.session.observe(losses.sum() if self._shares else losses.mean())
        self._losses = []

    def _on_grad(self, param: torch.Tensor) -> None:
        if self._queued or not self._sync.sync_gradients:
            return
        self._queued = True
        torch.autograd.Variable._execution_engine.queue_callback(self._after_backward)

    def _after_backward(self) -> None:
        self._queued = False
        self._observe_step_loss()
        self.session.end_step()

    def _collect(self, step: int, scalars: dict[str, float]) -> None:
        self._pending.append(scalars)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # before the Trainer counts the step, so its global_step is the trace's step
        pending, self._pending = self._pending, []
        for scalars in pending:
            self.trainer.log(dict(scalars))

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            (folder / STATE_FILE).write_text(json.dumps(self.session.state_dict()))

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.close()
        self.session.finish()

    def close(self) -> None:
        """Remove the hooks and detach the Monitor, closing the trace. ``on_train_end`` does
        this; the Trainer has no hook for an exception inside ``train()``, so call it there
        before training again in the same process."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._queued = False
        self.session.stop()
