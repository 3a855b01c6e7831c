"""Monitor overhead under 2-rank DDP on CPU (gloo): the default Monitor against plain DDP.

Launches two ranks (subprocesses with torchrun's environment) that train the same DDP MLP.
Each repeat times ``--steps`` steps of plain DDP, then ``--steps`` steps with the default
``Monitor(ddp, optimizer=opt)`` (``every=20``, its one gather per recorded step included),
interleaved so that drift in machine speed hits both alike; a barrier starts and ends every
block. Overhead = median over repeats of ``time(monitored) / time(plain)`` - 1, in wall-clock
and in the process's CPU seconds (rank 0).

Run: ``python benchmarks/distributed_overhead.py [--repeats 7] [--steps 40] [--width 256]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import torch
from torch import nn


def _model(width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(64, width), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def _block(ddp: nn.Module, opt: torch.optim.Optimizer, steps: int, monitored: bool) -> tuple:
    import torch.distributed as dist

    from gradmedic import Monitor

    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    dist.barrier()
    wall, cpu = time.perf_counter(), time.process_time()
    mon = Monitor(ddp, optimizer=opt).attach() if monitored else None
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    if mon is not None:
        mon.detach()
    dist.barrier()
    return time.perf_counter() - wall, time.process_time() - cpu


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    ddp = nn.parallel.DistributedDataParallel(_model(args.width, args.depth))
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    _block(ddp, opt, args.steps, True)  # warm-up of both paths
    _block(ddp, opt, args.steps, False)
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    plain_step = []
    for _ in range(args.repeats):
        p_wall, p_cpu = _block(ddp, opt, args.steps, False)
        m_wall, m_cpu = _block(ddp, opt, args.steps, True)
        ratios["wall"].append(m_wall / p_wall)
        ratios["cpu"].append(m_cpu / p_cpu)
        plain_step.append(p_wall / args.steps)
    if dist.get_rank() == 0:
        res = {
            "world_size": dist.get_world_size(),
            "model": f"MLP {args.depth + 2} x Linear {args.width} + ReLU, batch 64 per rank",
            "plain_step_ms": 1e3 * statistics.median(plain_step),
            **{f"overhead_{k}": statistics.median(v) - 1 for k, v in ratios.items()},
            **{f"each_{k}": [round(r - 1, 4) for r in v] for k, v in ratios.items()},
        }
        print(json.dumps(res, indent=1), flush=True)
    dist.barrier()
    os._exit(0)  # no destroy: DDP's gloo threads abort the interpreter's exit on this torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=6)
    args = ap.parse_args()
    if os.environ.get("RANK") is not None:
        worker(args)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    env["OMP_NUM_THREADS"] = "1"
    procs = [
        subprocess.Popen([sys.executable, *sys.argv], env={**env, "RANK": str(r)}) for r in range(2)
    ]
    sys.exit(max(p.wait() for p in procs))


if __name__ == "__main__":
    main()
