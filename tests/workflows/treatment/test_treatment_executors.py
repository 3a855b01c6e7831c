"""Trials are independent jobs: the same outcomes in this process, in worker processes and as
Ray tasks.

The Ray tests need the ``ray`` extra (skipped without it). Ray 2.60 has no ``local_mode``, so
they start a real local node: 2-4 s to start and ~1.3 s to shut down on a 2-core machine, and
the first trials wait for the workers to import torch; the two tests took 14-17 s together
there.
"""

from __future__ import annotations

import sys

import pytest

from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.workflows.train import TrainConfig
from gradmedic.workflows.treatment import treat
from gradmedic.workflows.treatment.executors import (
    NO_RAY,
    ProcessRunner,
    RayRunner,
    SerialRunner,
    free_cores,
    make_runner,
)
from gradmedic.workflows.treatment.trials import Trial, TrialContext

CFG = TrainConfig(steps=12, batch_size=32, lr=0.1, every=4)


@pytest.fixture(scope="module")
def ctx():
    return TrialContext.build("mlp:depth=6,width=16,act=sigmoid", "digits", None, CFG)


def _trials() -> list[Trial]:
    return [
        Trial("untreated", (), 1.0, 0.1, 0, primary=True),
        Trial("add-residual", ("add-residual",), 3.0, 0.3, 0, every=4),
        Trial("untreated", (), 1.0, 0.1, 1, every=4),  # another seed: another init and order
        Trial("bad", ("replace-rnn(to=lstm)",), 1.0, 0.1, 0),  # does not apply: an error row
    ]


def _outcomes(runner, trials: list[Trial] | None = None) -> dict:
    out = {}
    try:
        for t in trials or _trials():
            runner.submit(t)
        while runner.pending():
            o = runner.next_done()
            out[o.trial.key] = (o.result.losses if o.result else None, o.error, o.state)
    finally:
        runner.close()
    return out


def test_process_pool_gives_the_same_outcomes_as_this_process(ctx):
    serial = _outcomes(make_runner("serial", None, ctx))
    pool = make_runner("process", 2, ctx)
    assert isinstance(pool, ProcessRunner) and pool.workers == 2
    assert _outcomes(pool) == serial  # losses, errors and trained weights, bit for bit
    assert serial[("untreated", 1.0, 0)][0] != serial[("untreated", 1.0, 1)][0]
    assert serial[("bad", 1.0, 0)][1].startswith("remedy 'replace-rnn' does not apply")


def test_runner_choice_and_errors(ctx):
    assert isinstance(make_runner("auto", 1, ctx), SerialRunner)
    assert free_cores() >= 1
    with pytest.raises(UnknownNameError, match="unknown executor 'threads'"):
        make_runner("threads", None, ctx)
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        make_runner("process", 0, ctx)


def test_without_ray_the_ray_executor_says_how_to_get_it(ctx, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError) as e:
        make_runner("ray", None, ctx)
    assert (
        str(e.value)
        == NO_RAY
        == ("--executor ray needs Ray, which is not installed: pip install 'gradmedic[ray]'")
    )
    with pytest.raises(ConfigError, match=r"needs Ray, which is not installed"):
        treat("mlp:depth=3,width=8", "digits", executor="ray")


@pytest.fixture
def ray():
    ray = pytest.importorskip("ray")
    yield ray
    if ray.is_initialized():
        ray.shutdown()


def _ray_init(ray) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)


def test_ray_tasks_give_the_same_outcomes_as_this_process(ctx, ray):
    serial = _outcomes(make_runner("serial", None, ctx))
    runner = make_runner("ray", 2, ctx)  # starts a local node of its own ...
    assert isinstance(runner, RayRunner) and runner.workers == 2
    assert _outcomes(runner) == serial  # losses, errors and trained weights, bit for bit
    assert not ray.is_initialized()  # ... and shuts it down in close()


def _same_treatment(a, b) -> None:
    """Everything ``to_dict`` holds is the same but the timings and where the trials ran."""
    run = ("executor", "workers", "elapsed_s")

    def strip(d):
        d = {**d, "config": {k: v for k, v in d["config"].items() if k not in run}}
        d["rows"] = [{k: v for k, v in r.items() if k != "time_per_step"} for r in d["rows"]]
        d["yours"] = {k: v for k, v in d["yours"].items() if k != "time_per_step"}
        return d

    assert repr(strip(a.to_dict())) == repr(strip(b.to_dict()))  # repr: NaN equals NaN


def test_treat_on_ray_matches_serial_and_sends_user_files_by_value(ray, tmp_path):
    kw = {
        "config": TrainConfig(steps=10, lr=0.1, every=5),
        "remedies": ["add-norm(kind=batch)"],
    }
    serial = treat("mlp:depth=6,width=16,act=sigmoid", "digits", executor="serial", **kw)
    _ray_init(ray)  # Ray already initialised (as when connected to a cluster): reused
    on_ray = treat("mlp:depth=6,width=16,act=sigmoid", "digits", executor="ray", **kw)
    assert ray.is_initialized()
    assert on_ray.config["executor"] == "RayRunner"
    _same_treatment(serial, on_ray)  # candidates, verdict, losses, band: all the same
    assert serial.verdict_kind == "cured" and len(serial.rows) == 2

    # a model from a user file is pickled by value: the workers cannot import that file
    own = (
        "from torch import nn\n"
        "class Own(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(64, 10)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x.flatten(1))\n"
        "def build():\n"
        "    return Own()\n"
    )
    (tmp_path / "own.py").write_text(own)
    (tmp_path / "gm_ray_neighbour.py").write_text(own)  # imported by the next file
    (tmp_path / "uses_neighbour.py").write_text("from gm_ray_neighbour import build\n")
    cfg = TrainConfig(steps=4, batch_size=16, lr=0.1)
    trial = _trials()[0]
    mine = TrialContext.build(f"{tmp_path / 'own.py'}:build", "digits", None, cfg)
    got = [_outcomes(make_runner(ex, 1, mine), [trial]) for ex in ("serial", "ray")]
    assert got[0] == got[1]
    # ... but what it imports must be importable on the workers: one line, which module
    neighbour = TrialContext.build(f"{tmp_path / 'uses_neighbour.py'}:build", "digits", None, cfg)
    with pytest.raises(ConfigError) as e:
        _outcomes(make_runner("ray", 1, neighbour), [trial])
    assert str(e.value) == (
        "a Ray worker could not load the model, data and loss (ModuleNotFoundError: No module "
        "named 'gm_ray_neighbour'); every module they import must be installed on the "
        "workers, or use --executor process"
    )
    assert ray.is_initialized()
