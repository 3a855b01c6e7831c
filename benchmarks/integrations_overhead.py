"""Callback overhead: a Lightning fit and a Hugging Face Trainer run with gradmedic's callback
against the same training without it, as a ratio.

Each repeat runs the plain training, then the same training with ``GradmedicCallback``
(interleaved, so drift in machine speed hits both alike); the overhead is the median over
repeats of ``time(callback) / time(plain)`` - 1. The time is the training loop, from the
framework's train-start hook to its train-end hook (a timing callback that runs first in
both configurations), so it leaves out the one-off end of fit (diagnosis and HTML report),
which is timed once on its own. Models are built from code or a config (no download).

Run: ``python benchmarks/integrations_overhead.py [--repeats 5] [--threads 1] [--every 20]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Clock:
    """Seconds between train start and train end, in either framework: wall clock, or this
    process's CPU time (``--cpu``: steadier on a machine shared with other jobs)."""

    timer = time.perf_counter

    def __init__(self) -> None:
        self.t0 = self.seconds = 0.0

    def start(self, *_: object, **__: object) -> None:
        self.t0 = Clock.timer()

    def stop(self, *_: object, **__: object) -> None:
        self.seconds = Clock.timer() - self.t0


def lightning_run(steps: int, cb: object | None, out: Path) -> float:
    import lightning.pytorch as pl

    class Timer(pl.Callback):
        def __init__(self) -> None:
            self.clock = Clock()

        def on_train_start(self, trainer, module):
            self.clock.start()

        def on_train_end(self, trainer, module):
            self.clock.stop()

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            layers: list[nn.Module] = [nn.Linear(64, 256), nn.ReLU()]
            for _ in range(7):
                layers += [nn.Linear(256, 256), nn.ReLU()]
            self.net = nn.Sequential(*layers, nn.Linear(256, 10))

        def training_step(self, batch, i):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(128 * 8, 64, generator=g), torch.randint(0, 10, (128 * 8,)))
    timer = Timer()
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
        callbacks=[timer] + ([cb] if cb is not None else []),
    )  # fmt: skip
    trainer.fit(MLP(), DataLoader(data, batch_size=128))
    return timer.clock.seconds


def transformers_run(steps: int, cb: object | None, out: Path) -> float:
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.clock = Clock()

        def on_train_begin(self, *a, **k):
            self.clock.start()

        def on_train_end(self, *a, **k):
            self.clock.stop()

    torch.manual_seed(0)
    config = GPT2Config(n_layer=4, n_embd=128, n_head=4, vocab_size=512, n_positions=64)
    ids = torch.randint(0, 512, (8 * 16, 64), generator=torch.Generator().manual_seed(0))
    args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, use_cpu=True,
        report_to=[], save_strategy="no", disable_tqdm=True, logging_steps=10**6, seed=0,
    )  # fmt: skip
    timer = Timer()
    trainer = Trainer(
        model=GPT2LMHeadModel(config), args=args, callbacks=[timer],
        train_dataset=[{"input_ids": r, "labels": r} for r in ids],
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # keep the output to the table
    if cb is not None:
        cb.trainer = trainer
        trainer.add_callback(cb)
    trainer.train()
    return timer.clock.seconds


def measure(
    name: str, run: Callable[[int, object | None, Path], float], make_cb: Callable[..., object],
    steps: int, repeats: int, every: int,
) -> None:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run(3, None, root / "warm")  # imports and first-call costs
        run(3, make_cb(every=every, report=False), root / "warm-cb")
        ratios, plain = [], []
        for r in range(repeats):
            base = run(steps, None, root / f"plain{r}")
            cb = make_cb(root / f"cb{r}" / "trace.sqlite", every=every, report=False)
            ratios.append(run(steps, cb, root / f"cb{r}") / base)
            plain.append(base)
        t0 = time.perf_counter()
        run(steps, make_cb(root / "end" / "trace.sqlite", every=every), root / "end")
        end = time.perf_counter() - t0
    step_ms = 1000 * statistics.median(plain) / steps
    over = 100 * (statistics.median(ratios) - 1)
    spread = ", ".join(f"{100 * (x - 1):+.1f}%" for x in ratios)
    print(f"{name:<13} {step_ms:>8.1f} ms {over:>+9.1f}%   ({spread})   whole run {end:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--lightning-steps", type=int, default=200)
    ap.add_argument("--transformers-steps", type=int, default=60)
    ap.add_argument("--cpu", action="store_true", help="time CPU seconds, not wall clock")
    args = ap.parse_args()
    if args.cpu:
        Clock.timer = time.process_time
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from gradmedic.integrations import lightning as gl
    from gradmedic.integrations import transformers as gt

    clock = "CPU time" if args.cpu else "wall clock"
    print(f"torch {torch.__version__}, threads {args.threads}, every={args.every}, {clock}, "
          f"{args.repeats} interleaved repeats; overhead = median time ratio - 1")  # fmt: skip
    print(f"{'workload':<13} {'plain step':>11} {'overhead':>10}   (each repeat)")
    measure("lightning", lightning_run, gl.GradmedicCallback, args.lightning_steps,
            args.repeats, args.every)  # fmt: skip
    measure("transformers", transformers_run, gt.GradmedicCallback, args.transformers_steps,
            args.repeats, args.every)  # fmt: skip


if __name__ == "__main__":
    main()
