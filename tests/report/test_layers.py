"""report.layers: the zero-slope share is "saturated" only for activations that saturate on
both tails and "inactive" for the ReLU family; the summary shows the worst layer beside the
mean, so a fully dead layer cannot hide in a 50% mean."""

from __future__ import annotations

import math

import pytest

from gradmedic.diagnosis import Diagnosis
from gradmedic.report import diagnosis_json
from gradmedic.report.layers import activation_summary, layer_table, zero_slope_name
from report_util import layer_trace

TYPES = {"s": "Sigmoid", "r1": "ReLU", "r2": "ReLU", "k": "LeakyReLU", "u": "Mystery"}


def _trace():
    values = {
        "s": (0.25, 0.0),
        "r1": (0.5, 0.0),
        "r2": (1.0, 1.0),  # every unit inactive on every sample: dead
        "k": (0.0, 0.0),
        "u": (0.125, 0.0),
    }
    rows = []
    for name, (zero, dead) in values.items():
        rows += [
            (0, name, "", "signal_out", None, 1.0),
            (0, name, "", "saturated_frac", None, zero),
            (0, name, "", "dead_frac", None, dead),
        ]
    return layer_trace(rows, TYPES)


@pytest.mark.parametrize(
    ("info", "name"),
    [
        ({"tails": "both"}, "saturated"),
        ({"tails": "negative"}, "inactive"),
        ({"tails": "none"}, "inactive"),
        ({}, "saturated"),
        (None, "saturated"),
    ],
)
def test_zero_slope_name_follows_the_tails_fact(info, name):
    assert zero_slope_name(info) == name


def test_layer_table_splits_saturated_from_inactive_by_tails():
    t = layer_table(None, _trace()).set_index("module")
    assert list(t.index) == ["s", "r1", "r2", "k", "u"]
    assert t.loc["s", "saturated_frac"] == 0.25 and math.isnan(t.loc["s", "inactive_frac"])
    assert t.loc["r1", "inactive_frac"] == 0.5 and math.isnan(t.loc["r1", "saturated_frac"])
    assert t.loc["k", "inactive_frac"] == 0.0
    # no tails fact (an activation gradmedic does not know): the trace's own name
    assert t.loc["u", "saturated_frac"] == 0.125 and math.isnan(t.loc["u", "inactive_frac"])


def test_relu_units_are_never_called_saturated_in_a_real_run(relu_trace):
    t = layer_table(None, relu_trace)
    relu = t[t["type"] == "ReLU"]
    assert len(relu) == 11
    assert relu["saturated_frac"].isna().all()
    assert relu["inactive_frac"].between(0.2, 0.8).all()  # about half of each layer


def test_the_summary_names_the_worst_layer_beside_the_mean():
    summary = activation_summary(layer_table(None, _trace()))
    assert summary == [
        {"measure": "saturated", "layers": 2, "mean": 0.1875, "worst": 0.25, "worst_layer": "s"},
        {"measure": "inactive", "layers": 3, "mean": 0.5, "worst": 1.0, "worst_layer": "r2"},
        {"measure": "dead", "layers": 5, "mean": 0.2, "worst": 1.0, "worst_layer": "r2"},
    ]


def test_the_summary_skips_shares_never_measured_or_not_finite():
    t = layer_table(None, _trace())
    t["saturated_frac"] = math.nan
    t["dead_frac"] = [math.inf, math.nan, 0.5, math.nan, math.nan]
    assert [(r["measure"], r["layers"], r["worst_layer"]) for r in activation_summary(t)] == [
        ("inactive", 3, "r2"),
        ("dead", 1, "r2"),
    ]
    assert activation_summary(t.iloc[0:0]) == []


def test_diagnosis_json_carries_the_split_and_the_summary():
    data = diagnosis_json(Diagnosis([]), _trace())
    r1 = next(r for r in data["layers"] if r["module"] == "r1")
    assert (r1["saturated_frac"], r1["inactive_frac"], r1["dead_frac"]) == ("nan", 0.5, 0.0)
    assert data["activation_summary"][2] == {
        "measure": "dead",
        "layers": 5,
        "mean": 0.2,
        "worst": 1.0,
        "worst_layer": "r2",
    }
