"""Peers: what gradmedic costs per training step next to the other ways of watching gradients
(issue 16), on the three reference workloads (``benchmarks/reference_workloads.py``).

Every column is a ratio to the bare SGD step (``zero_grad(set_to_none=True)``, forward,
cross-entropy, backward, ``step``) of the same repeat:

- ``fused read``: after backward, one ``torch._foreach_norm`` over all ``p.grad`` and
  ``torch.stack(...).cpu().tolist()`` (one host transfer), every step: the floor for "gradient
  norms";
- ``lightning grad_norm``: ``lightning.pytorch.utilities.grad_norm(model, norm_type=2)`` after
  backward, every step, its values brought to the host as floats (what logging them costs);
  ``n/a`` when lightning is not importable;
- ``detect_anomaly``: the steps under ``torch.autograd.detect_anomaly(check_nan=True)``;
- ``wandb.watch``: ``wandb.watch(model, log="all", log_freq=1)`` in an offline run (histograms
  of every parameter and gradient, every step; no ``wandb.log`` is called, so nothing is
  committed); ``n/a`` unless ``import wandb`` works (an optional extra: not a dependency);
- ``gradmedic grads``: ``Monitor`` with gradient norms alone (signal, activations, rnn_time,
  nonfinite and weights off), ``every=1``;
- ``gradmedic default``: ``Monitor(model, optimizer=opt)`` (``every=20``: each run records its
  first step, so ``--steps`` should be a multiple of 20 for the average to be representative);
- ``gradmedic everything``: ``Monitor(model, optimizer=opt, every=1)``.

Each run builds a fresh SGD optimizer (lr 1e-3) over the same model (the few hundred updates of
a run drift the weights a little, alike for every configuration), attaches its Monitor or peer
before the timer starts, times ``--steps`` steps and removes it after the timer. After a warm-up
of every configuration, each repeat times one bare run and then every configuration in turn
(``--bare-each``: a bare run before every configuration, the ratio to that one); a cell is the
median over repeats of ``time(config) / time(bare)`` with the interquartile range of the
per-repeat ratios in brackets. ``--json PATH`` writes the raw per-repeat ratios.

Run: ``python benchmarks/peers.py [--workloads mlp cnn lstm] [--threads 2] [--repeats 15]
[--steps 20] [--bare-each] [--json PATH]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from reference_workloads import WORKLOADS  # benchmarks/ is on sys.path as the script's folder
from torch import nn

from gradmedic import Monitor

GRADS_ONLY = dict(signal=False, activations=False, rnn_time=False, nonfinite=False, weights=False)

CONFIGS = [
    "bare",
    "fused read",
    "lightning grad_norm",
    "detect_anomaly",
    "wandb.watch",
    "gradmedic grads",
    "gradmedic default",
    "gradmedic everything",
]

warnings.filterwarnings("ignore", message="Anomaly Detection has been enabled")


def _lightning_grad_norm() -> Callable[..., dict[str, Any]] | None:
    try:
        from lightning.pytorch.utilities import grad_norm
    except ImportError:
        return None
    return grad_norm


class _Wandb:
    """One offline wandb run for the whole benchmark, started on first use."""

    def __init__(self) -> None:
        try:
            import wandb
        except ImportError:
            self.wandb = None
        else:
            self.wandb = wandb
        self.run: Any = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def available(self) -> bool:
        return self.wandb is not None

    @contextlib.contextmanager
    def watching(self, model: nn.Module) -> Iterator[None]:
        assert self.wandb is not None
        if self.run is None:
            self._dir = tempfile.TemporaryDirectory(prefix="gradmedic-peers-")
            self.run = self.wandb.init(mode="offline", dir=self._dir.name, project="peers")
        self.wandb.watch(model, log="all", log_freq=1)
        try:
            yield
        finally:
            self.wandb.unwatch(model)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish(quiet=True)
        if self._dir is not None:
            self._dir.cleanup()


def available(config: str, wb: _Wandb) -> bool:
    if config == "lightning grad_norm":
        return _lightning_grad_norm() is not None
    if config == "wandb.watch":
        return wb.available
    return True


def run(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, config: str, wb: _Wandb
) -> float:
    """Seconds for ``steps`` training steps of ``config`` (attach/detach outside the timer)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    after_backward: Callable[[], object] | None = None
    ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    mon: Monitor | None = None
    if config == "fused read":
        params = [p for p in model.parameters() if p.requires_grad]

        def after_backward() -> object:
            grads = [p.grad for p in params if p.grad is not None]
            return torch.stack(torch._foreach_norm(grads)).cpu().tolist()

    elif config == "lightning grad_norm":
        grad_norm = _lightning_grad_norm()
        assert grad_norm is not None

        def after_backward() -> object:
            return {k: float(v) for k, v in grad_norm(model, norm_type=2).items()}

    elif config == "detect_anomaly":
        ctx = torch.autograd.detect_anomaly(check_nan=True)
    elif config == "wandb.watch":
        ctx = wb.watching(model)
    elif config == "gradmedic grads":
        mon = Monitor(model, optimizer=opt, every=1, **GRADS_ONLY)
    elif config == "gradmedic default":
        mon = Monitor(model, optimizer=opt)
    elif config == "gradmedic everything":
        mon = Monitor(model, optimizer=opt, every=1)
    elif config != "bare":
        raise ValueError(config)
    if mon is not None:
        mon.attach()
    try:
        with ctx:
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                if after_backward is not None:
                    after_backward()
                opt.step()
            return time.perf_counter() - t0
    finally:
        if mon is not None:
            mon.detach()


def iqr_cell(ratios: list[float]) -> str:
    med = statistics.median(ratios)
    if len(ratios) < 2:
        return f"{med:.3f}"
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return f"{med:.3f} ({q1:.2f}–{q3:.2f})"


def cpu_name() -> str:
    name = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return name or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="steps of each config's warm-up run")
    ap.add_argument(
        "--bare-each",
        action="store_true",
        help="time a bare run before every configuration (default: one per repeat)",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the raw ratios here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    wb = _Wandb()
    configs = [c for c in CONFIGS if c != "bare"]
    live = [c for c in configs if available(c, wb)]
    header = (
        f"torch {torch.__version__}, {args.threads} threads, {args.steps} steps × "
        f"{args.repeats} repeats{' (bare before each)' if args.bare_each else ''}, "
        f"{datetime.date.today()}, {cpu_name()} ({os.cpu_count()} CPUs)"
    )
    raw: dict[str, Any] = {
        "header": header,
        "torch": torch.__version__,
        "threads": args.threads,
        "steps": args.steps,
        "repeats": args.repeats,
        "bare_each": args.bare_each,
        "date": str(datetime.date.today()),
        "workloads": {},
    }
    rows = []
    try:
        for wname in args.workloads:
            model, x, y = WORKLOADS[wname]()
            for c in ["bare", *live]:  # warm-up
                run(model, x, y, args.warmup, c, wb)
            ratios: dict[str, list[float]] = {c: [] for c in live}
            bare_s: list[float] = []
            for _ in range(args.repeats):
                base = 0.0 if args.bare_each else run(model, x, y, args.steps, "bare", wb)
                if not args.bare_each:
                    bare_s.append(base)
                for c in live:
                    if args.bare_each:
                        base = run(model, x, y, args.steps, "bare", wb)
                        bare_s.append(base)
                    ratios[c].append(run(model, x, y, args.steps, c, wb) / base)
            step_ms = 1000 * statistics.median(bare_s) / args.steps
            raw["workloads"][wname] = {"bare_ms_per_step": step_ms, "ratios": ratios}
            cells = [iqr_cell(ratios[c]) if c in ratios else "n/a" for c in configs]
            rows.append(f"| {wname} | {step_ms:.2f} | " + " | ".join(cells) + " |")
            print(f"# {wname} done", file=sys.stderr, flush=True)
    finally:
        wb.close()

    print(header)
    print()
    print("| workload | bare ms/step | " + " | ".join(configs) + " |")
    print("|---|" + "---:|" * (len(configs) + 1))
    print("\n".join(rows))
    print()
    print("time(config) / time(bare step): median over repeats (interquartile range)")
    if args.json is not None:
        args.json.write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
