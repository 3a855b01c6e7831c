"""``diagnose`` on the diagnosis side: from a trace file, from a model alone, and bad input
(the entry point lives in gradmedic.workflows.checkup)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from diagnosis_util import data, finding
from gradmedic.errors import ConfigError, GradmedicError, ModelError
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig, train
from gradmedic.zoo import build_model

torch.set_num_threads(1)


def test_trace_only_diagnosis_matches_model_diagnosis(tmp_path):
    d = data("digits")
    model = build_model("mlp:depth=20,width=64,act=sigmoid", d.info, seed=0)
    train(model, d, TrainConfig(steps=5, every=1), trace_path=tmp_path / "trace.sqlite")
    from_trace = diagnose(tmp_path / "trace.sqlite")
    assert from_trace.slugs() == ["vanishing-gradient", "poor-init"]
    assert from_trace.findings[0].severity == "error"
    assert from_trace.meta["source"] == "trace"
    # An MLP has no recurrent layer: the RNN rule does not apply and is not listed as skipped.
    assert from_trace.skipped == []
    payload = json.loads(json.dumps(from_trace.to_dict(), allow_nan=False))
    assert payload["skipped"] == []


def test_model_without_data_gives_static_and_init_findings():
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(20):
        layers += [nn.Linear(64, 64), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(64, 1), nn.Sigmoid())
    d = diagnose(model=model, loss=nn.BCELoss())
    assert sorted(d.slugs()) == ["poor-init", "unstable-loss-pairing"]
    assert d.skipped == []  # no trace: no trace rule was due
    pi = finding(d, "poor-init")
    assert pi.severity == "warning" and pi.evidence["basis"] == "theory (no data)"
    # 21 Linear+Sigmoid pairs, each crossed once: 21 x log10 sqrt(chi1(sigmoid, 1/3, ~0))
    # = 21 x log10(0.1414) = -17.84 (finite-size spread of the sampled sw2 and sb2).
    assert pi.evidence["predicted_log10_ratio"] == pytest.approx(21 * math.log10(0.1414), abs=0.3)


def test_bad_input_errors():
    with pytest.raises(ConfigError) as exc:
        diagnose()
    assert str(exc.value) == (
        "diagnose needs a trace (path or Trace) or a model; e.g. diagnose('run/trace.sqlite') "
        "or diagnose(model=my_model, data='digits')"
    )
    with pytest.raises(ConfigError, match="model spec 'mlp' needs data to be built"):
        diagnose(model="mlp")
    with pytest.raises(ModelError, match=r"diagnose needs a torch\.nn\.Module as model, got int"):
        diagnose(model=3, data="digits")
    with pytest.raises(GradmedicError, match="no trace at"):
        diagnose("/nonexistent/trace.sqlite")
