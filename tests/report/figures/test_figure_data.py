"""report.figures.data: the per-layer numbers the figures draw, against a plain autograd
reference and against mean-field theory."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from gradmedic import Monitor
from gradmedic.report.figures import SNAPSHOT_COLUMNS, layer_snapshot, predicted_gains
from gradmedic.report.figures.data import first_step, last_step, module_order


def test_layer_snapshot_matches_a_plain_autograd_reference():
    """Per-layer weight-gradient and backward-signal norms in the report equal those of a slow
    reference that keeps every intermediate output with retain_grad."""
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            [
                ("fc1", nn.Linear(10, 16)),
                ("act1", nn.Tanh()),
                ("fc2", nn.Linear(16, 16)),
                ("act2", nn.Sigmoid()),
                ("out", nn.Linear(16, 3)),
            ]
        )
    )
    x = torch.randn(32, 10)
    with Monitor(model, every=1) as mon:
        model(x).pow(2).mean().backward()
        mon.step()
        tr = mon.trace()
    snap = layer_snapshot(tr)
    assert list(snap.columns) == SNAPSHOT_COLUMNS
    assert list(snap["module"]) == module_order(tr) == ["fc1", "act1", "fc2", "act2", "out"]
    snap = snap.set_index("module")

    ref = copy.deepcopy(model)
    ref.zero_grad()
    outs = {}
    h = x
    for name, m in ref.named_children():
        h = m(h)
        h.retain_grad()
        outs[name] = h
    h.pow(2).mean().backward()
    for name in ("fc1", "fc2", "out"):
        w = getattr(ref, name).weight.grad.norm().item()
        assert snap.loc[name, "weight_grad_norm"] == pytest.approx(w, rel=1e-5)
    for name, t in outs.items():
        assert snap.loc[name, "signal_out"] == pytest.approx(t.grad.norm().item(), rel=1e-5)
    # gain of act2 = ||dL/dx|| / ||dL/dy|| where x is fc2's output
    g = outs["fc2"].grad.norm().item() / outs["act2"].grad.norm().item()
    assert snap.loc["act2", "gain"] == pytest.approx(g, rel=1e-5)
    # theory: Linear gain = sqrt(fan_in * Var(W)) (the trace stores sw2 with the unbiased Var)
    w2 = model.fc2.weight.detach().double()
    assert snap.loc["fc2", "predicted_gain"] == pytest.approx(
        math.sqrt(16 * w2.var().item()), rel=1e-6
    )
    assert math.isnan(snap.loc["fc1", "dead_frac"])  # not measured on a Linear layer


def test_predicted_activation_gain_is_mean_field_and_matches_measurement(mlp_trace):
    """Sigmoid layer: theory sqrt(E[phi'(sqrt(q) z)^2]) at the measured pre-activation scale q,
    checked by Monte Carlo, and within 3% of the measured gain at initialisation."""
    snap = layer_snapshot(mlp_trace).set_index("module")
    sig = snap[snap["type"] == "Sigmoid"]
    assert len(sig) == 11
    rng = np.random.default_rng(0)
    z = rng.standard_normal(2_000_000)
    for name, row in sig.iterrows():
        s = 1 / (1 + np.exp(-math.sqrt(row["preact_ms"]) * z))
        mc = math.sqrt(np.mean((s * (1 - s)) ** 2))
        assert row["predicted_gain"] == pytest.approx(mc, rel=2e-3), name
        assert row["gain"] == pytest.approx(row["predicted_gain"], rel=0.03), name
        assert row["predicted_gain"] <= 0.25  # sigmoid's slope is at most 1/4
    pred = predicted_gains(mlp_trace)
    assert set(pred) == set(snap.index)  # every Linear and Sigmoid gets a prediction


def test_first_and_last_steps(mlp_trace):
    assert first_step(mlp_trace, "signal_out") == 0
    assert last_step(mlp_trace, "signal_out") == 3
    assert first_step(mlp_trace, "hidden_grad_t") is None
