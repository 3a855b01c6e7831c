"""2-rank gloo tests of the Monitor under torch.distributed (``gradmedic.monitor.distributed``).

Both ranks run ``test_distributed_worker.py`` as spawned processes with torchrun's environment
(one launch for every scenario); each value is compared with a single-process Monitor on the
concatenated batch.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from gradmedic import Monitor

WORKER = Path(__file__).with_name("test_distributed_worker.py")
_spec = importlib.util.spec_from_file_location("gm_dist_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

#: quantities pinned at 1e-6 relative (everything the Monitor records for this model)
PINNED = {
    "grad_norm", "grad_norm_total", "param_norm", "update_ratio", "signal_out", "signal_in",
    "gain", "dphi_mean", "dphi_sq_mean", "saturated_frac", "dead_frac", "preact_ms",
    "act_mean", "act_std", "loss", "output_rms",
}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}
    env.update(MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parents[2] / "src"), env.get("PYTHONPATH", "")]
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(out)], env={**env, "RANK": str(r)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for r in range(2)
    ]  # fmt: skip
    logs = [p.communicate(timeout=120)[0] for p in procs]
    for r, p in enumerate(procs):
        assert p.returncode == 0, f"rank {r} failed:\n{logs[r][-3000:]}"
    return out


def _load(out: Path, name: str, rank: int) -> dict:
    return json.loads((out / f"{name}-{rank}.json").read_text())


def _values(rows: list, prefix: str = "") -> dict:
    out = {}
    for step, module, param, qty, value in rows:
        if qty in PINNED:
            out[(step, module.removeprefix(prefix), param, qty)] = value
    return out


def _reference(rows: slice = slice(None), steps: int = worker.STEPS) -> dict:
    """A single-process Monitor on the global batch (``rows``: a part of it)."""
    model = worker.build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer=opt, every=1) as mon:
        for step in range(steps):
            x, y = worker.batch(step)
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x[rows]), y[rows])
            loss.backward()
            mon.observe(loss)
            opt.step()
    rows = mon.frame()[["step", "module", "parameter", "quantity", "value"]].values.tolist()
    return _values(rows)


def _assert_same(got: dict, ref: dict) -> None:
    assert set(got) == set(ref)
    bad = {
        k: (got[k], ref[k])
        for k in ref
        if not math.isclose(got[k], ref[k], rel_tol=1e-6, abs_tol=1e-12)
    }
    assert not bad, bad


@pytest.mark.parametrize("name,prefix", [("ddp", "module."), ("fsdp", "")])
def test_every_rank_equals_the_single_process_reference(runs: Path, name: str, prefix: str) -> None:
    ref = _reference()
    assert {q for *_, q in ref} >= PINNED - {"update_ratio"} | {"dead_frac", "gain"}
    for half in (slice(0, 4), slice(4, 8)):  # each rank alone sees more dead units (0 or 1)
        assert _reference(half)[(0, "3", "", "dead_frac")] > ref[(0, "3", "", "dead_frac")]
    for rank in range(2):
        _assert_same(_values(_load(runs, name, rank)["rows"], prefix), ref)


@pytest.mark.parametrize("name,kind", [("ddp", "ddp"), ("fsdp", "fsdp2")])
def test_rank_0_writes_the_trace_with_the_parallelism(runs: Path, name: str, kind: str) -> None:
    r0, r1 = _load(runs, name, 0), _load(runs, name, 1)
    assert r0["meta"]["distributed"] == {
        "world_size": 2, "rank": 0, "backend": "gloo", "parallelism": kind,
    }  # fmt: skip
    assert (runs / f"{name}.sqlite").exists() and r1["meta"]["distributed"]["rank"] == 1
    assert r0["writes"] and not r1["writes"]
    for r in (r0, r1):  # every hook of ours is gone after detach (FSDP2 keeps its own)
        before, after, ours = r["hooks"]
        assert after == before and ours == 0


def test_fsdp_every_step_curve_equals_the_reference(runs: Path) -> None:
    # steps 1, 2, 4, 5 unrecorded: the sentinel's curve; 4 and 5 are read at detach, without
    # a collective (safe after an exception on one rank), so their loss is the rank's own
    def keep(k: tuple) -> bool:
        return k[3] == "grad_norm_total" or (k[3] == "loss" and k[0] <= 3)

    ref = {k: v for k, v in _reference(steps=6).items() if keep(k)}
    for rank in range(2):
        rows = _load(runs, "fsdp-every3", rank)["rows"]
        got = {k: v for k, v in _values(rows).items() if keep(k)}
        _assert_same(got, ref)


def test_shard_norms_add_over_the_shard_group_only(runs: Path) -> None:
    whole = (
        torch.arange(8.0, dtype=torch.float64).norm().item()
    )  # FSDP: the two shards make one vector
    for rank in range(2):
        got = _load(runs, "shards", rank)
        assert got["fsdp"] == pytest.approx(whole, rel=1e-12)
        # HSDP: each replica's shard group is the rank alone; never summed over replicas
        assert got["hsdp"] == pytest.approx(
            (torch.arange(4.0, dtype=torch.float64) + 4 * rank).norm().item(), rel=1e-12
        )


def test_nan_on_rank_1_only_is_named_with_rank_1_and_its_module(runs: Path) -> None:
    for rank in range(2):
        events = [
            (e["step"], e["kind"], e["module"], e["rank"])
            for e in _load(runs, "nan", rank)["events"]
        ]
        assert events[0] == (1, "nonfinite_forward", "module.2", 1)


def test_no_hook_left_on_any_rank_after_an_exception_on_one(runs: Path) -> None:
    r0, r1 = _load(runs, "raise", 0), _load(runs, "raise", 1)
    assert r1["error"] == "RuntimeError"  # its own
    assert r0["error"] is not None  # the collective whose peer is gone
    assert r0["hooks"] == [0, 0] and r1["hooks"] == [0, 0]
