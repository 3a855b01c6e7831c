"""The callbacks' shared session and the Monitor's checkpoint state: a resumed run continues
the step numbers (in memory and in a trace), bad state is refused, an empty fit warns."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic import Monitor, read_trace
from gradmedic.errors import ConfigError
from gradmedic.integrations._session import Session, gradient_facts


def _steps(mon: Monitor, model: nn.Module, n: int) -> None:
    for _ in range(n):
        model(torch.randn(4, 3)).square().mean().backward()
        mon.step()


def test_state_dict_continues_the_numbering_in_memory_and_in_a_trace(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    with Monitor(model, every=1) as mon:
        _steps(mon, model, 3)
    state = mon.state_dict()
    assert state == {"step_index": 3, "trace": None, "schedule": repr(mon.schedule)}
    again = Monitor(model, every=1)
    again.load_state_dict(state)
    with again:
        _steps(again, model, 2)
    assert again.trace().steps == [3, 4]

    path = tmp_path / "t.sqlite"
    with Monitor(model, every=1, trace=path) as first:
        _steps(first, model, 4)
    late = Monitor(model, every=1, trace=path)
    late.load_state_dict({"step_index": 2})  # an older checkpoint than the trace's last step
    with late:
        _steps(late, model, 1)
    assert read_trace(path).steps == [0, 1, 2, 3, 4]  # the trace's numbering wins: no repeat


@pytest.mark.parametrize("state", [{}, {"step_index": -1}, {"step_index": "x"}, None])
def test_bad_state_is_refused(state):
    with pytest.raises(ConfigError, match=r"load_state_dict takes the dict of Monitor\.state_dict"):
        Monitor(nn.Linear(2, 1)).load_state_dict(state)


def test_gradient_facts_say_what_the_gradients_are():
    facts = gradient_facts(
        framework="x 1", clip=0.0, clip_algorithm=None, scaled=True, micro_batches=1,
        precision="fp16",
    )  # fmt: skip
    assert facts == {
        "framework": "x 1",
        "per": "optimizer step",
        "micro_batches": 1,
        "accumulated": "one batch",
        "clipping": "none configured",
        "clip_value": None,
        "unscaled": False,
        "loss_scale": "gradients still multiplied by the AMP loss scale",
        "precision": "fp16",
    }


def test_a_session_logs_tagged_scalars_and_an_empty_fit_only_warns(tmp_path):
    logged = []
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opts = {"every": 1, "report": True, "sinks": (), "per_layer": False}
    session = Session(None, fail_on="error", monitor_options={"metadata": {"k": 1}}, **opts)
    session.start(model, folder=tmp_path, scaler=None, gradients={"per": "optimizer step"},
                  log_fn=lambda s, sc: logged.append((s, sc)), first_step=7)  # fmt: skip
    assert session.trace_path == tmp_path / "trace.sqlite"
    _steps(session.monitor, model, 1)
    session.stop()
    trace = read_trace(session.trace_path)
    assert trace.steps == [7] and trace.meta["k"] == 1
    assert trace.meta["gradients"] == {"per": "optimizer step"}
    assert [s for s, _ in logged] == [7] and all(k.startswith("gradmedic/") for k in logged[0][1])
    assert logged[0][1]["gradmedic/grad_norm_total"] == trace.series("grad_norm_total")[0][1]

    empty = Session(tmp_path / "e" / "t.sqlite", fail_on=None, monitor_options={}, **opts)
    empty.start(model, folder=tmp_path, scaler=None, gradients={}, log_fn=None, first_step=0)
    with pytest.warns(UserWarning, match="gradmedic could not diagnose"):
        assert empty.finish() is None
    assert empty.report_path is None
