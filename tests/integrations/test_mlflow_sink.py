"""MlflowSink against a local SQLite store: the run read back with MlflowClient equals the
trace, value for value (MLflow keeps float64)."""

from __future__ import annotations

import sys

import pytest
from integration_expect import expected, train_mlp
from mlflow.tracking import MlflowClient

from gradmedic.integrations.mlflow import MlflowSink

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy, in MLflow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


def test_run_read_back_equals_the_trace(store):
    uri, artifacts = store
    sink = MlflowSink(uri, experiment="sinks", run_name="mlp", artifact_location=artifacts)
    sink.per_layer = True
    trace = train_mlp([sink], steps=6, every=2)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(sink.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "mlp"
    want = expected(trace, per_layer=True)
    assert sorted(run.data.metrics) == sorted(f"gradmedic/{t}" for t in want)
    for tag, series in want.items():
        history = client.get_metric_history(sink.run_id, f"gradmedic/{tag}")
        assert sorted((m.step, m.value) for m in history) == series, tag
    assert [s for s, _ in want["grad_norm_total"]] == [0, 2, 4]


def test_a_given_run_stays_open(store):
    uri, _ = store
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sinks")  # created by the previous test, or now
    exp_id = exp.experiment_id if exp else client.create_experiment("sinks")
    run_id = client.create_run(exp_id).info.run_id
    trace = train_mlp([MlflowSink(client=client, run_id=run_id, prefix="g.")], steps=2, every=1)
    assert client.get_run(run_id).info.status == "RUNNING"
    history = client.get_metric_history(run_id, "g.loss")
    assert sorted((m.step, m.value) for m in history) == expected(trace)["loss"]


def test_missing_mlflow_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # import fails: not installed
    with pytest.raises(ImportError, match=r"pip install 'gradmedic\[mlflow\]'"):
        MlflowSink("sqlite:///unused.db")
