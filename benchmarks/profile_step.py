"""Per-probe profile of a recorded step: what each of the Monitor's probes adds to one training
step, on the three reference workloads (``benchmarks/reference_workloads.py``).

Configurations (every one with ``every=1``, so every step is recorded, and ``optimizer=``):
``grads`` (gradient norms alone: signal, activations, rnn_time, nonfinite and weights off),
``+weights``, ``+signal``, ``+activations`` (the default schedule), ``+nonfinite`` and ``+rnn``
(each: ``grads`` plus that one probe), and ``everything`` (the Monitor's defaults). Each run
builds a fresh SGD optimizer (lr 1e-3) over the same model, attaches the Monitor, runs 3
warm-up steps and then measures ``--steps`` steps; the Monitor is detached after. Columns, per
training step:

- ``extra ms`` and ``extra %``: each repeat times a bare run and then the monitored run
  (interleaved); the median over ``--repeats`` of ``time(monitored) - time(bare)`` and of
  ``time(monitored) / time(bare) - 1``;
- ``aten ops``: top-level aten ops (events named ``aten::*`` with no ``aten::*`` ancestor, by
  ``cpu_parent``; the ops a caller dispatched, not what they decompose into) under
  ``torch.profiler.profile(activities=[CPU])``, monitored run minus bare run;
- ``py ms``: the Python time of gradmedic's own code, the summed ``tottime`` under ``cProfile``
  of the functions in the imported ``gradmedic`` package's folder (self time: torch calls made
  from it are not included; inflated by cProfile's own per-call cost; hooks run by the autograd
  engine are seen because on CPU the engine runs them on the calling thread);
- ``host syncs``: ``aten::_local_scalar_dense`` events (every ``.item()``, ``float(t)``,
  ``bool(t)`` ends in one), monitored minus bare, plus the calls of gradmedic's ``to_host``
  (the batched device-to-host copy, counted by cProfile: a CPU run dispatches no copy op
  for ``.cpu()``, so it cannot be seen as an aten event); shown as ``total (items + to_host)``;
- ``MB read``: with ``record_shapes=True``, the bytes of the tensor inputs of the top-level aten
  ops (numel x element size of each input, dtype from the event's ``input_dtypes``; 4 bytes
  when the profiler gives none), monitored minus bare, in MB of 10^6 bytes. A tensor-list input
  (``_foreach_*``) is counted through the aten ops it dispatches to (on CPU, one per tensor);
  one that a single kernel reads (``cat``, ``stack``) is not counted.

Only ``from gradmedic import Monitor`` and its keyword arguments are used, so the script runs
against another checkout: ``PYTHONPATH=/tmp/before/src python benchmarks/profile_step.py
--label before``.

Run: ``python benchmarks/profile_step.py [--workloads mlp cnn lstm] [--threads 2] [--steps 10]
[--repeats 3] [--label TEXT]``
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from reference_workloads import WORKLOADS  # benchmarks/ is on sys.path as the script's folder
from torch import nn
from torch.profiler import ProfilerActivity, profile

import gradmedic
from gradmedic import Monitor

WARMUP = 3
GRADS_ONLY = dict(signal=False, activations=False, rnn_time=False, nonfinite=False, weights=False)
CONFIGS: dict[str, dict[str, Any]] = {
    "grads": GRADS_ONLY,
    "+weights": {**GRADS_ONLY, "weights": True},
    "+signal": {**GRADS_ONLY, "signal": True},
    "+activations": {**GRADS_ONLY, "activations": None},
    "+nonfinite": {**GRADS_ONLY, "nonfinite": True},
    "+rnn": {**GRADS_ONLY, "rnn_time": None},
    "everything": {},
}
GRADMEDIC_DIR = os.path.dirname(os.path.realpath(gradmedic.__file__)) + os.sep

# element sizes of the dtype names the profiler gives (c10 scalar types as C++ type names)
ELEMENT_SIZE = {
    "double": 8,
    "float": 4,
    "c10::Half": 2,
    "c10::BFloat16": 2,
    "long int": 8,
    "long": 8,
    "int64_t": 8,
    "int": 4,
    "short int": 2,
    "short": 2,
    "signed char": 1,
    "unsigned char": 1,
    "bool": 1,
    "c10::complex<float>": 8,
    "c10::complex<double>": 16,
    "c10::complex<c10::Half>": 4,
}


@contextlib.contextmanager
def session(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: str
) -> Iterator[Callable[[], None]]:
    """A fresh optimizer (and Monitor, attached) over ``model``, warmed up; yields one step."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    mon = None if config == "bare" else Monitor(model, optimizer=opt, every=1, **CONFIGS[config])

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    if mon is not None:
        mon.attach()
    try:
        for _ in range(WARMUP):
            step()
        yield step
    finally:
        if mon is not None:
            mon.detach()


def timed(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: str, steps: int) -> float:
    with session(model, x, y, config) as step:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return time.perf_counter() - t0


@dataclass
class OpCounts:
    ops: int  # top-level aten ops
    items: int  # aten::_local_scalar_dense events
    bytes_read: int  # bytes of the tensor inputs of the top-level aten ops


def _aten(e: Any) -> bool:
    return e.name.startswith("aten::")


def _top_level(e: Any) -> bool:
    p = e.cpu_parent
    while p is not None:
        if _aten(p):
            return False
        p = p.cpu_parent
    return True


def _bytes_read(e: Any) -> int:
    shapes = e.input_shapes or []
    dtypes = list(getattr(e, "input_dtypes", None) or [])
    total, tensor_list = 0, False
    for i, shape in enumerate(shapes):
        dtype = dtypes[i] if i < len(dtypes) else None
        if dtype == "TensorList":
            tensor_list = True
            continue
        if dtype is None or dtype == "":
            if not shape or not isinstance(shape[0], int):  # no dtype: a tensor of >= 1 dim
                continue
            size = 4
        elif dtype in ELEMENT_SIZE:
            size = ELEMENT_SIZE[dtype]
        else:  # Scalar, ScalarList, GenericList, ...
            continue
        numel = 1
        for d in shape:
            numel *= int(d)
        total += numel * size
    no_info = not dtypes and not any(shapes)
    if tensor_list or no_info:
        total += sum(_bytes_read(c) for c in e.cpu_children if _aten(c))
    return total


def profiled(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: str, steps: int
) -> OpCounts:
    with (
        session(model, x, y, config) as step,
        profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof,
    ):
        for _ in range(steps):
            step()
    events = prof.events()
    top = [e for e in events if _aten(e) and _top_level(e)]
    return OpCounts(
        ops=len(top),
        items=sum(e.name == "aten::_local_scalar_dense" for e in events),
        bytes_read=sum(_bytes_read(e) for e in top),
    )


def python_time(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: str, steps: int
) -> tuple[float, int]:
    """Seconds of gradmedic's own Python (tottime) and calls of its ``to_host``."""
    pr = cProfile.Profile()
    with session(model, x, y, config) as step:
        pr.enable()
        for _ in range(steps):
            step()
        pr.disable()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(pr).stats  # type: ignore[attr-defined]
    seconds, to_host = 0.0, 0
    for (filename, _, func), (_, ncalls, tottime, *_) in stats.items():
        if os.path.realpath(filename).startswith(GRADMEDIC_DIR):
            seconds += tottime
            if func == "to_host":
                to_host += ncalls
    return seconds, to_host


def profile_workload(name: str, configs: list[str], steps: int, repeats: int) -> list[str]:
    model, x, y = WORKLOADS[name]()
    for c in ["bare", *configs]:  # warm-up: first calls, allocator
        timed(model, x, y, c, 1)
    bare_ops = profiled(model, x, y, "bare", steps)
    bare_s: list[float] = []
    lines = []
    for c in configs:
        extra, ratio = [], []
        for _ in range(repeats):
            b = timed(model, x, y, "bare", steps)
            m = timed(model, x, y, c, steps)
            bare_s.append(b)
            extra.append(1000 * (m - b) / steps)
            ratio.append(m / b)
        ops = profiled(model, x, y, c, steps)
        py_s, to_host = python_time(model, x, y, c, steps)
        items = (ops.items - bare_ops.items) / steps
        syncs = items + to_host / steps
        cells = [
            f"{statistics.median(extra):.2f}",
            f"{100 * (statistics.median(ratio) - 1):+.1f}%",
            f"{(ops.ops - bare_ops.ops) / steps:.1f}",
            f"{1000 * py_s / steps:.2f}",
            f"{syncs:.1f} ({items:.1f} + {to_host / steps:.1f})",
            f"{(ops.bytes_read - bare_ops.bytes_read) / steps / 1e6:.2f}",
        ]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    bare_ms = 1000 * statistics.median(bare_s) / steps if bare_s else float("nan")
    title = (
        f"bare step {bare_ms:.2f} ms, {bare_ops.ops / steps:.0f} aten ops, "
        f"{bare_ops.bytes_read / steps / 1e6:.1f} MB read"
    )
    return [
        title,
        "",
        "| config | extra ms/step | extra % | aten ops/step | gradmedic py ms/step "
        "| host syncs/step (items + to_host) | MB read/step |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *lines,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--label", default="", help="printed in the table titles (before/after)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    label = f" — {args.label}" if args.label else ""
    print(
        f"gradmedic {getattr(gradmedic, '__version__', '?')} from {GRADMEDIC_DIR}, "
        f"torch {torch.__version__}, {args.threads} threads, {args.steps} steps "
        f"(after {WARMUP} warm-up) × {args.repeats} repeats"
    )
    for name in args.workloads:
        lines = profile_workload(name, args.configs, args.steps, args.repeats)
        print()
        print(f"### {name}{label}: {lines[0]}")
        print("\n".join(lines[1:]), flush=True)


if __name__ == "__main__":
    main()
