"""The nothing-measurable outcome (kind 5): a run that yields too little to judge says so, with
the reason, and is never reported healthy."""

from __future__ import annotations

import json

import torch
from torch import nn
from typer.testing import CliRunner

from diagnosis_util import data, event_trace, finding
from gradmedic.cli import app
from gradmedic.diagnosis.finding import NOTHING_MEASURABLE
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig

torch.set_num_threads(1)


class BareSigmoid(nn.Module):
    """``torch.sigmoid(x @ W.T)`` on a bare Parameter (field case 14's shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(10, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x @ self.W.T)


def _rows(module: str = "") -> list[tuple]:
    rows = [(s, "", "", "grad_norm_total", None, 1.0) for s in range(3)]
    return rows + [(s, module, "", "signal_out", None, 0.5) for s in range(3)]


def test_a_model_the_monitor_cannot_see_into_is_nothing_measurable_not_healthy():
    # on a Monitor without functional-layer measurement the root is the only hooked module
    trace = event_trace(
        [("", "BareSigmoid", None, {})], [*_rows(), (0, "", "W", "grad_norm", None, 1.0)]
    )
    d = diagnose(trace)
    assert d.outcome == NOTHING_MEASURABLE and d.exit_status() == 3
    f = finding(d, NOTHING_MEASURABLE)
    assert f.severity == "warning"
    assert f.title.startswith("nothing measurable: BareSigmoid computes with parameters (W)")
    assert "No finding here does not mean healthy" in f.cause
    assert f.evidence["modules_with_signal"] == ["(root)"]


def test_the_monitor_s_verdict_and_reason_are_used():
    meta = {"measurable": False, "measurable_reason": "no module ran a forward pass"}
    d = diagnose(event_trace([("", "Net", None, {})], _rows(), meta))
    assert d.unmeasurable == (
        "nothing measurable: no module ran a forward pass. No finding here does not mean "
        "healthy: gradient flow was not judged."
    )
    meta = {"measurable": {"value": False, "reason": "every layer is functional"}}
    d = diagnose(event_trace([("", "Net", None, {})], _rows(), meta))
    assert finding(d, NOTHING_MEASURABLE).title == "nothing measurable: every layer is functional"


def test_one_measured_layer_is_enough_to_judge():
    lin = {"fan_in": 1, "fan_out": 1, "sw2": 1.0, "sb2": 0.0}
    d = diagnose(event_trace([("", "Linear", None, lin)], _rows()))  # nn.Linear(1, 1) as root
    assert d.outcome == "healthy" and d.exit_status("info") == 0


def test_a_real_run_of_a_bare_parameter_model_is_never_healthy():
    torch.manual_seed(0)
    cfg = TrainConfig(steps=2, every=1)
    d = diagnose(model=BareSigmoid(), data=data("digits"), config=cfg)
    # either the Monitor measures the functional layer (then the rules judge it) or the
    # diagnosis says nothing was measurable: never an empty, healthy diagnosis
    assert d.findings and d.outcome != "healthy"


_ELEMENTWISE = '''
import torch
from torch import nn


class Gate(nn.Module):
    """x * w then a slice: a bare parameter used elementwise, no layer of any known kind."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(64))

    def forward(self, x):
        return (x * self.w)[:, :10]


def build():
    return Gate()
'''


def test_the_cli_exits_3_and_says_nothing_measurable(tmp_path):
    (tmp_path / "gate.py").write_text(_ELEMENTWISE)
    args = ["diagnose", "--model", f"{tmp_path / 'gate.py'}:build", "--data", "digits"]
    args += ["--steps", "2", "--out", str(tmp_path / "out"), "--no-report"]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 3, res.output
    payload = json.loads(res.stdout)
    assert payload["outcome"] == NOTHING_MEASURABLE
    assert payload["findings"][0]["title"].startswith("nothing measurable: ")
    text = CliRunner().invoke(app, [*args, "--overwrite"])
    assert text.exit_code == 3 and "nothing measurable" in text.stdout
    assert "No problems found" not in text.stdout
