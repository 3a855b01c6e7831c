"""MLflow sink: the Monitor's scalars as MLflow metrics ``gradmedic/<tag>``, one batch a step.

Uses the client API (``MlflowClient.log_batch``: one call per recorded step), so it needs no
active run and no server: a local store such as ``sqlite:///runs/mlflow.db`` works (install
with ``pip install 'gradmedic[mlflow]'``). Without ``run_id`` the sink creates a run in the
experiment ``experiment`` (created if missing) and ends it at close; with ``run_id`` it logs
into that run and leaves it open. MLflow keeps float64 values: a metric read back with
``MlflowClient.get_metric_history`` equals the trace's value (MLflow itself stores ±inf as
±1.8e308).

Example::

    from gradmedic import Monitor
    from gradmedic.integrations.mlflow import MlflowSink

    sink = MlflowSink("sqlite:///runs/mlflow.db", experiment="deep-mlp")
    with Monitor(model, optimizer=opt, sinks=[sink]) as mon:
        ...  # training; sink.run_id names the run
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gradmedic.integrations import PREFIX

__all__ = ["MlflowSink"]

#: MLflow accepts at most this many metrics in one log_batch call
BATCH_MAX = 1000


def _client(tracking_uri: str | None) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ImportError(
            "MlflowSink needs MLflow; install it with: pip install 'gradmedic[mlflow]'"
        ) from exc
    return MlflowClient(tracking_uri=tracking_uri)


class MlflowSink:
    """A :class:`~gradmedic.trace.sinks.Sink` logging ``gradmedic/<tag>`` metrics to MLflow.

    Args:
        tracking_uri: the tracking store (e.g. ``"sqlite:///path/mlflow.db"``); None uses
            MLflow's default (``MLFLOW_TRACKING_URI``).
        run_id: log into this existing run; None creates one (and ends it at close).
        experiment: the experiment of a created run.
        run_name: the name of a created run.
        artifact_location: the artifact folder of a created experiment (MLflow's default is
            ``./mlruns`` in the working directory).
        client: an existing ``MlflowClient`` (then ``tracking_uri`` is ignored).
        prefix: the metric group (default ``"gradmedic/"``).
        per_layer: also log ``signal_out/<module>`` for every hooked module.

    Raises:
        ImportError: MLflow is not installed (the message says how).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        run_id: str | None = None,
        experiment: str = "gradmedic",
        run_name: str | None = None,
        artifact_location: str | None = None,
        client: Any = None,
        prefix: str = PREFIX,
        per_layer: bool = False,
    ) -> None:
        self.client = client if client is not None else _client(tracking_uri)
        self._own = run_id is None
        if run_id is None:
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = (
                exp.experiment_id
                if exp is not None
                else self.client.create_experiment(experiment, artifact_location=artifact_location)
            )
            run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        self.run_id: str = run_id
        self.prefix = prefix
        self.per_layer = per_layer

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Log the step's scalars in one ``log_batch`` call (more than 1000: several)."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(self.prefix + k, float(v), stamp, int(step)) for k, v in scalars.items()]
        for i in range(0, len(metrics), BATCH_MAX):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + BATCH_MAX])

    def close(self) -> None:
        """End the run this sink created (a given run is left open)."""
        if self._own:
            self.client.set_terminated(self.run_id)
