"""Exceptions from the user's model, data and loss during training, told as one line.

:func:`gradmedic.workflows.train.train` runs the user's code in three phases (forward, loss,
backward); whatever one of them raises (any exception, ``sys.exit`` too) becomes a
:class:`~gradmedic.errors.GradmedicError` whose message gives the step and batch, the module
at fault when the traceback runs through one (the innermost ``nn.Module`` of the model whose
frames the exception crossed, with the shapes it was called with), the shapes of the batch,
output and target, and what to do. The checks of what forward and the loss *return* and of
the class labels live in :mod:`gradmedic.workflows.step_checks`.

Example::

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    >>> step = Step(0, "batch 0", torch.zeros(1, 3), torch.zeros(1), "custom", "regression")
    >>> try:
    ...     net(step.x)
    ... except ValueError as exc:
    ...     err = forward_failure(exc, net, step)
    >>> str(err).split(":")[0]
    "the model failed at step 0 (batch 0) in module '1' (BatchNorm1d)"
"""

from __future__ import annotations

import linecache
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import nn

import gradmedic
from gradmedic.errors import DataError, GradmedicError, ModelError

__all__ = ["Step", "backward_failure", "detail", "forward_failure", "loss_failure", "shape"]

_LIBRARY_DIRS = (str(Path(torch.__file__).parent), str(Path(gradmedic.__file__).parent))


@dataclass
class Step:
    """Where training is: step number, batch (in words), the batch, the data's name and task,
    and the output once forward has run."""

    step: int
    where: str
    x: torch.Tensor
    y: torch.Tensor
    data: str
    task: str
    out: torch.Tensor | None = None

    @property
    def at(self) -> str:
        return f"step {self.step} ({self.where})"

    def shapes(self) -> str:
        parts = [f"batch input {shape(self.x)}"]
        if self.out is not None:
            parts.append(f"output {shape(self.out)}")
        parts.append(f"target {shape(self.y)}")
        return ", ".join(parts)


def shape(t: Any) -> str:
    """``(64, 10) float32`` for a tensor; the type name otherwise."""
    if isinstance(t, torch.Tensor):
        return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
    return type(t).__name__


def detail(exc: BaseException) -> str:
    """``Type: first line`` of an exception (``sys.exit(0)`` reads as such), and where in the
    user's code it was raised when the message is empty (a bare ``assert``)."""
    if isinstance(exc, SystemExit):
        return f"sys.exit({exc.code!r})"
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    frame = _user_frame(exc)
    if frame is not None and not lines:
        source = linecache.getline(frame[0], frame[1]).strip()
        text += f" ({source})" if source else ""
    return text + (f" at {Path(frame[0]).name}:{frame[1]}" if frame else "")


def _user_frame(exc: BaseException) -> tuple[str, int] | None:
    """(file, line) of the innermost traceback frame outside torch and gradmedic."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not name.startswith(_LIBRARY_DIRS) and not name.startswith("<"):
            found = (name, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _input_shapes(frame: FrameType) -> list[str]:
    loc = frame.f_locals
    code = frame.f_code
    if code.co_name in ("_call_impl", "_wrapped_call_impl") and isinstance(loc.get("args"), tuple):
        values = loc["args"]
    elif code.co_argcount >= 2:
        values = (loc.get(code.co_varnames[1]),)
    else:
        values = ()
    return [str(tuple(v.shape)) for v in values if isinstance(v, torch.Tensor)]


def module_at_fault(exc: BaseException, model: nn.Module) -> tuple[str, nn.Module, str] | None:
    """(name, module, its input shapes) of the innermost module of ``model`` whose code the
    exception's traceback runs through, or None."""
    by_id = {id(m): (n, m) for n, m in model.named_modules()}
    found: tuple[str, nn.Module, str] | None = None
    tb = exc.__traceback__
    while tb is not None:
        me = tb.tb_frame.f_locals.get("self")
        hit = by_id.get(id(me)) if me is not None else None
        if hit is not None and hit[1] is me:
            if found is None or found[1] is not me:
                found = (hit[0], me, "")
            if not found[2]:
                found = (found[0], me, ", ".join(_input_shapes(tb.tb_frame)))
        tb = tb.tb_next
    return found


def _who(name: str, module: nn.Module) -> str:
    return f"module '{name}' ({type(module).__name__})" if name else type(module).__name__


def forward_failure(exc: BaseException, model: nn.Module, step: Step) -> GradmedicError:
    """The error for an exception raised by ``model(x)``."""
    fault = module_at_fault(exc, model)
    where = f" in {_who(fault[0], fault[1])}" if fault else ""
    inputs = f"module input {fault[2]}; " if fault and fault[2] else ""
    msg = str(exc)
    module = fault[1] if fault else None
    shapes = f"{inputs}{step.shapes()}; data '{step.data}', task {step.task}"
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and "more than 1 value" in msg:
        hint = (
            "BatchNorm cannot normalise a batch of one sample in training mode: drop the "
            "incomplete last batch (DataLoader(..., drop_last=True)) or use a batch size that "
            "divides the data"
        )
    elif isinstance(module, nn.Embedding) and "index out of range" in msg:
        n = module.num_embeddings
        hint = f"the ids fed to this Embedding must lie in 0..{n - 1} (it has {n} rows)"
    elif isinstance(exc, AssertionError):
        hint = (
            "an assert in the model failed: check what it expects (shape, dtype) against the data"
        )
    elif isinstance(exc, SystemExit):
        hint = "the model's forward must return its output, not end the process"
    elif "dtype" in msg or "not implemented for" in msg:
        weights = next((p.dtype for p in model.parameters()), None)
        kind = str(weights).removeprefix("torch.")
        hint = (
            f"the batch input is {str(step.x.dtype).removeprefix('torch.')} and the model's "
            f"weights are {kind}: convert the data in the factory (e.g. x.to(torch.{kind}))"
        )
    elif isinstance(exc, (RuntimeError, ValueError, IndexError)) and any(
        k in msg for k in ("shape", "size", "dimension", "channels", "Expected")
    ):
        return DataError(
            f"the model cannot run on this data at {step.at}{where}: {detail(exc)} ({shapes}); "
            "pick a model that fits the data (e.g. --model mlp for flat data, --model lstm for "
            "adding-T) or change its options"
        )
    else:
        hint = "fix the model's forward for inputs like this batch, or give data it expects"
    return ModelError(f"the model failed at {step.at}{where}: {detail(exc)} ({shapes}); {hint}")


def loss_failure(exc: BaseException, loss_name: str, step: Step) -> GradmedicError:
    """The error for an exception raised by ``loss(output, target)``."""
    out, y = step.out, step.y
    head = f"the loss ({loss_name}) failed at {step.at}: {detail(exc)} ({step.shapes()})"
    if isinstance(out, torch.Tensor) and out.dim() > 0 and out.shape[0] != y.shape[0]:
        return DataError(
            f"{head}; the model's output holds {out.shape[0]} samples but the target "
            f"{y.shape[0]}: the inputs and targets of a batch must have the same first "
            "(batch) dimension"
        )
    if "BCE" in loss_name and not y.is_floating_point():
        return DataError(
            f"{head}; {loss_name} needs float targets in [0, 1] of the output's shape, but the "
            "targets are integer class labels: use --loss ce for class labels"
        )
    if loss_name == "BCELoss" and "between 0 and 1" in str(exc):
        return DataError(
            f"{head}; BCELoss needs probabilities in [0, 1] (after a sigmoid) but the model "
            "outputs other values: use --loss bce-logits on raw outputs"
        )
    return DataError(
        f"{head}; make the output and target fit the loss (e.g. --loss ce for logits (B, C) "
        "with class labels (B,), --loss mse for float targets of the output's shape)"
    )


def backward_failure(exc: BaseException, step: Step) -> GradmedicError:
    """The error for an exception raised by ``loss.backward()``."""
    msg = str(exc)
    if "inplace operation" in msg:
        hint = (
            "an in-place operation changed a tensor that the gradient needs: use the "
            "out-of-place form (x = x + y instead of x += y, inplace=False)"
        )
    elif "second time" in msg:
        hint = (
            "a tensor from an earlier step is reused (e.g. a hidden state): .detach() it "
            "between steps"
        )
    else:
        hint = "check the model's custom autograd functions and hooks"
    return ModelError(
        f"the backward pass failed at {step.at}: {detail(exc)} ({step.shapes()}); {hint}"
    )
