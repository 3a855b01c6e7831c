"""Trials are independent jobs: the same outcomes in this process and in worker processes."""

from __future__ import annotations

import pytest

from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.workflows.train import TrainConfig
from gradmedic.workflows.treatment.executors import (
    ProcessRunner,
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


def _outcomes(runner) -> dict:
    for t in _trials():
        runner.submit(t)
    out = {}
    while runner.pending():
        o = runner.next_done()
        out[o.trial.key] = (o.result.losses if o.result else None, o.error, o.state)
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
    with pytest.raises(ConfigError, match="ray executor is not available"):
        make_runner("ray", None, ctx)
    with pytest.raises(UnknownNameError, match="unknown executor 'threads'"):
        make_runner("threads", None, ctx)
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        make_runner("process", 0, ctx)
