"""One rank of the 2-rank gloo tests of ``gradmedic.monitor.distributed`` (run as a script by
``test_distributed.py`` with torchrun's environment: RANK, WORLD_SIZE, MASTER_ADDR/PORT).

Scenarios, in one process group: ``ddp`` and ``fsdp`` (2 recorded SGD steps on this rank's
half of the global batch), ``nan`` (a NaN born on rank 1 only at step 1), then ``raise`` (rank
1 raises in forward; rank 0's collective then fails): each writes ``<out>/<scenario>-<rank>.json``.
Imported by the test for :func:`build` and :func:`batch` (the single-process reference).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

STEPS = 2


def build() -> nn.Sequential:
    """Tanh then ReLU; ReLU unit 0 is dead on rank 0's samples only, unit 1 on rank 1's only,
    unit 2 everywhere (global dead_frac 1/8, each rank's 2/8)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    with torch.no_grad():
        for k in range(3):
            m[0].weight[k].zero_()
            m[0].bias[k] = 0.0
            m[2].weight[k].zero_()
        m[0].weight[0, 0] = m[0].weight[1, 1] = 3.0
        m[2].weight[0, 0] = m[2].weight[1, 1] = 5.0
        m[2].bias[:2] = 0.0
        m[2].bias[2] = -100.0
    return m


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step`` (8 samples; rank r takes rows 4r..4r+3)."""
    g = torch.Generator().manual_seed(100 + step)
    x, y = torch.randn(8, 6, generator=g), torch.randn(8, 1, generator=g)
    x[:4, 0], x[4:, 0] = -x[:4, 0].abs(), x[4:, 0].abs()
    x[:4, 1], x[4:, 1] = x[:4, 1].abs(), -x[4:, 1].abs()
    return x, y


def hook_count(model: nn.Module, opt: torch.optim.Optimizer | None = None) -> int:
    """Module forward/backward hooks on every module, plus the optimizer's step hooks."""
    n = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )  # fmt: skip
    if opt is not None:
        n += len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)
    return n


class Poison(nn.Module):
    """Multiplies by ``factor`` (a plain attribute: DDP broadcasts buffers, not this)."""

    factor = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def train(
    model: nn.Module, rank: int, out: Path, name: str, poison: Poison | None = None, every: int = 1
) -> None:
    from gradmedic import Monitor

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = hook_count(model, opt)
    trace = out / f"{name}.sqlite"
    with Monitor(model, optimizer=opt, every=every, trace=trace) as mon:
        for step in range(STEPS if every == 1 else 2 * every):
            if poison is not None and rank == 1 and step == 1:
                poison.factor = float("nan")
            x, y = batch(step)
            opt.zero_grad()
            loss = nn.functional.mse_loss(
                model(x[4 * rank : 4 * rank + 4]), y[4 * rank : 4 * rank + 4]
            )
            loss.backward()
            mon.observe(loss)
            opt.step()
    frame = mon.frame()
    res = {
        "rows": frame[["step", "module", "parameter", "quantity", "value"]].values.tolist(),
        "events": mon.events,
        "meta": {k: mon.trace().meta.get(k) for k in ("distributed",)},
        "writes": mon._trace_path is not None,
        "hooks": [before, hook_count(model, opt), len(mon._hooks)],
    }
    (out / f"{name}-{rank}.json").write_text(json.dumps(res, default=str))


def raise_on_one(rank: int, out: Path) -> None:
    from gradmedic import Monitor

    model = build()
    error = None
    try:
        with Monitor(model, every=1) as mon:
            for step in range(STEPS):
                x, y = batch(step)
                if rank == 1 and step == 1:
                    raise RuntimeError("boom on rank 1")
                nn.functional.mse_loss(
                    model(x[4 * rank : 4 * rank + 4]), y[4 * rank : 4 * rank + 4]
                ).backward()
                mon.step()
    except Exception as e:  # rank 1: its own error; rank 0: the collective with a dead peer
        error = type(e).__name__
    res = {"error": error, "hooks": [hook_count(model), len(mon._hooks)]}
    (out / f"raise-{rank}.json").write_text(json.dumps(res))


def shard_groups(rank: int, out: Path) -> None:
    """A norm of a DTensor shard combined over its shard group only: a 1-D mesh (2,) and an
    HSDP mesh (2 replicas x 1 shard), by :func:`gradmedic.monitor.distributed._partial`."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard

    from gradmedic.monitor.distributed import _partial

    g = torch.arange(4.0) + 4 * rank  # this rank's shard of [0..7]
    res = {}
    for name, shape, places in (
        ("fsdp", (2,), [Shard(0)]),
        ("hsdp", (2, 1), [Replicate(), Shard(0)]),
    ):
        mesh = init_device_mesh("cpu", shape)
        (n,) = torch._foreach_norm([DTensor.from_local(g, mesh, places)], 2, dtype=torch.float64)
        gathered = [torch.zeros(1, dtype=torch.float64) for _ in range(2)]
        dist.all_gather(gathered, n.to_local().reshape(1))
        res[name] = _partial(n, torch.stack(gathered)).item()
    (out / f"shards-{rank}.json").write_text(json.dumps(res))


def main() -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    out = Path(sys.argv[1])
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
    rank = dist.get_rank()
    train(nn.parallel.DistributedDataParallel(build()), rank, out, "ddp")
    model = build()
    mesh = init_device_mesh("cpu", (2,))
    for i in (0, 2, 4):
        fully_shard(model[i], mesh=mesh)
    fully_shard(model, mesh=mesh)
    train(model, rank, out, "fsdp")
    model = build()  # unrecorded steps too: the every-step curve of the sentinel
    for i in (0, 2, 4):
        fully_shard(model[i], mesh=mesh)
    fully_shard(model, mesh=mesh)
    train(model, rank, out, "fsdp-every3", every=3)
    poison = Poison()
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), poison, nn.Linear(8, 1))
    train(nn.parallel.DistributedDataParallel(net), rank, out, "nan", poison)
    shard_groups(rank, out)
    dist.barrier()
    raise_on_one(rank, out)
    sys.stdout.flush()
    os._exit(0)  # the group is broken on purpose by the last scenario: no clean shutdown


if __name__ == "__main__" and os.environ.get("RANK") is not None:
    main()
