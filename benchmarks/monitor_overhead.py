"""Monitor overhead: the cost of monitoring as a ratio against plain training.

Each repeat times ``--steps`` training steps of every configuration in turn (interleaved, so
drift in machine speed hits all of them alike); the overhead of a configuration is the median
over repeats of ``time(config) / time(plain)`` - 1. torch.autograd.detect_anomaly is timed too,
as the reference cost of NaN detection in PyTorch itself.

Run: ``python benchmarks/monitor_overhead.py [--repeats 9] [--steps 20] [--threads 1]``
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from gradmedic import Monitor


def deep_mlp() -> tuple[nn.Module, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    layers: list[nn.Module] = [nn.Linear(64, 256), nn.ReLU()]
    for _ in range(18):
        layers += [nn.Linear(256, 256), nn.ReLU()]
    layers.append(nn.Linear(256, 10))
    x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
    return nn.Sequential(*layers), lambda: (x, y)


def small_cnn() -> tuple[nn.Module, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    return model, lambda: (x, y)


class LSTMModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(16, 128, batch_first=True)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def lstm() -> tuple[nn.Module, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    x, y = torch.randn(64, 50, 16), torch.randint(0, 10, (64,))
    return LSTMModel(), lambda: (x, y)


class FunctionalMLP(nn.Module):
    """The deep MLP as bare parameters and functional calls (``F.relu(x @ W.T + b)``): every
    layer is measured by the Monitor's functional recorder (a torch function mode)."""

    def __init__(self) -> None:
        super().__init__()
        dims = [64] + [256] * 19 + [10]
        self.ws = nn.ParameterList(
            nn.Parameter(torch.randn(o, i) * (2 / i) ** 0.5) for i, o in itertools.pairwise(dims)
        )
        self.bs = nn.ParameterList(nn.Parameter(torch.zeros(o)) for o in dims[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (w, b) in enumerate(zip(self.ws, self.bs, strict=True)):
            x = x @ w.T + b
            if i < len(self.ws) - 1:
                x = nn.functional.relu(x)
        return x


def functional_mlp() -> tuple[nn.Module, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
    return FunctionalMLP(), lambda: (x, y)


WORKLOADS = {
    "deep-mlp": deep_mlp,
    "small-cnn": small_cnn,
    "lstm": lstm,
    "functional-mlp": functional_mlp,
}

CONFIGS: dict[str, dict | None] = {
    "plain": None,
    "grad-norms": dict(
        signal=False, activations=False, rnn_time=False, nonfinite=False, weights=False
    ),
    "default": {},
    "all, every step": dict(every=1),
    "detect_anomaly": None,
}


def run(model: nn.Module, batch, steps: int, config: str) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    kwargs = CONFIGS[config]
    mon = Monitor(model, optimizer=opt, **kwargs).attach() if kwargs is not None else None
    ctx = torch.autograd.detect_anomaly(check_nan=True) if config == "detect_anomaly" else None
    try:
        with ctx or nullcontext():
            t0 = time.perf_counter()
            for _ in range(steps):
                x, y = batch()
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
            return time.perf_counter() - t0
    finally:
        if mon is not None:
            mon.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {args.threads}, {args.steps} steps x {args.repeats}")
    print(
        f"{'workload':<14} {'step ms':>8} " + " ".join(f"{c:>16}" for c in CONFIGS if c != "plain")
    )
    for wname in args.workloads:
        model, batch = WORKLOADS[wname]()
        for c in CONFIGS:  # warm-up
            run(model, batch, 3, c)
        ratios: dict[str, list[float]] = {c: [] for c in CONFIGS if c != "plain"}
        plain_times = []
        for _ in range(args.repeats):
            base = run(model, batch, args.steps, "plain")
            plain_times.append(base)
            for c in ratios:
                ratios[c].append(run(model, batch, args.steps, c) / base)
        step_ms = 1000 * statistics.median(plain_times) / args.steps
        cells = " ".join(f"{100 * (statistics.median(r) - 1):>+15.1f}%" for r in ratios.values())
        print(f"{wname:<14} {step_ms:>8.2f} {cells}")


if __name__ == "__main__":
    main()
