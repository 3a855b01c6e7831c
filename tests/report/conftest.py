"""Real traces for the report tests, trained once per session (a few seconds in all)."""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")

from gradmedic.workflows.train import TrainConfig, train
from gradmedic.zoo import build_model, load_data


@pytest.fixture(scope="session")
def digits():
    return load_data("digits")


@pytest.fixture(scope="session")
def mlp_trace(digits, tmp_path_factory):
    """12-layer sigmoid MLP on digits, 4 recorded steps, saved to a trace file."""
    model = build_model("mlp:depth=12,act=sigmoid", digits.info, seed=0)
    path = tmp_path_factory.mktemp("mlp") / "trace.sqlite"
    run = train(
        model,
        digits,
        TrainConfig(steps=4, every=1, seed=0),
        trace_path=path,
        metadata={"model_spec": "mlp:depth=12,act=sigmoid", "data_spec": "digits"},
    )
    return run.trace


@pytest.fixture(scope="session")
def relu_trace(digits):
    """12-layer ReLU MLP (Kaiming init) on digits, 3 recorded steps."""
    model = build_model("mlp:depth=12,act=relu,init=kaiming", digits.info, seed=0)
    return train(model, digits, TrainConfig(steps=3, every=1, seed=0)).trace


@pytest.fixture(scope="session")
def rnn_trace():
    """A 16-unit RNN on the adding task (T=20): one step with its time profile."""
    data = load_data("adding-20", n=256)
    model = build_model("rnn:hidden=16", data.info, seed=0)
    cfg = TrainConfig(steps=1, every=1, rnn_hidden=True, batch_size=32)
    return train(model, data, cfg).trace
