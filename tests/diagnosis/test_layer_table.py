"""The per-layer table (diagnosis/table.py): model order, theory's predicted gain beside the
measured one, and the headline over a diagnosis."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diagnosis_util import data, run
from gradmedic.diagnosis import Diagnosis, headline, layer_table, module_predicted_gain
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig, train
from gradmedic.zoo import build_model

torch.set_num_threads(1)


def test_predicted_gain_matches_measured_per_layer():
    """sqrt(sw2) for a Linear and sqrt(E[phi'(sqrt(q) z)^2]) for tanh at the measured q.

    Width 256: the relative finite-width error of one layer's gain is about 1/sqrt(256) = 6 %,
    so each layer is held to 20 % and the geometric mean over layers to 3 %."""
    d = data("digits")
    model = build_model("mlp:depth=10,width=256,act=tanh,init=normal(sw2=1.5,sb2=0.05)", d.info)
    rows = diagnose(model=model, data=d, config=TrainConfig(steps=1, every=1)).layers
    ratios = {"weight": [], "activation": []}
    for r in rows[1:-1]:  # the first Linear sees the data, not a hidden signal
        if r["predicted_gain"] is not None and r["category"] in ratios:
            ratios[r["category"]].append(r["gain"] / r["predicted_gain"])
    for cat, vals in ratios.items():
        assert len(vals) >= 8, cat
        assert all(abs(v - 1) < 0.2 for v in vals), (cat, vals)
        gmean = math.exp(sum(math.log(v) for v in vals) / len(vals))
        assert gmean == pytest.approx(1.0, abs=0.03), (cat, gmean)


def test_module_predicted_gain_values():
    assert module_predicted_gain({"type": "Linear", "sw2": 2.0}, None) == pytest.approx(2**0.5)
    assert module_predicted_gain({"type": "ReLU", "activation": "relu"}, 3.0) == pytest.approx(
        0.5**0.5
    )
    # sigmoid'(0) = 1/4 is the maximum: as q -> 0 the gain tends to 0.25.
    g = module_predicted_gain({"type": "Sigmoid", "activation": "sigmoid"}, 1e-8)
    assert g == pytest.approx(0.25, rel=1e-6)
    assert module_predicted_gain({"type": "Flatten"}, None) == 1.0
    assert module_predicted_gain({"type": "BatchNorm1d"}, 1.0) is None


def test_layer_table_rows_and_headline():
    d = run("mlp:depth=20,width=64,act=sigmoid", steps=2)
    rows = d.layers
    assert [r["module"] for r in rows[:3]] == ["0", "1", "2"]
    keys = {
        "module",
        "type",
        "grad_norm",
        "signal_out",
        "signal_in",
        "gain",
        "saturated_frac",
        "dead_frac",
        "predicted_gain",
    }
    assert keys <= set(rows[0])
    assert rows[1]["type"] == "Sigmoid" and rows[1]["category"] == "activation"
    assert rows[1]["gain"] == pytest.approx(rows[1]["signal_in"] / rows[1]["signal_out"])
    assert headline(d).startswith("error: vanishing-gradient (Vanishing gradient: signal ratio ")
    assert headline(d).endswith("; 1 more finding")
    assert headline(Diagnosis([])) == "healthy: no findings"
    json.dumps(d.to_dict(), allow_nan=False)


def test_layer_table_of_trace_is_model_ordered():
    d = data("digits")
    model = build_model("mlp:depth=3,width=16", d.info, seed=0)
    res = train(model, d, TrainConfig(steps=2, every=1))
    rows = layer_table(res.trace)
    assert [r["module"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert rows[0]["predicted_gain"] == pytest.approx(math.sqrt(rows[0]["sw2"]))
    rows[0]["module"] = "changed"  # rows are fresh copies: the cache is untouched
    assert layer_table(res.trace)[0]["module"] == "0"
