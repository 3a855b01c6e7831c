"""The sink protocol: the scalars of each step and the shielding of failing sinks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from gradmedic import Monitor
from gradmedic.remedies.heads import add_aux_heads
from gradmedic.trace import frame_from_rows
from gradmedic.trace.derived import is_auxiliary, signal_ratio
from gradmedic.trace.sinks import LAYER_TAG, TAGS, Sink, Sinks, module_infos, step_scalars
from gradmedic.trace.view import Trace


def test_step_scalars_pick_the_global_rows_and_count_events():
    rows = [
        (4, "", "", "grad_norm_total", None, 2.5),
        (4, "0", "weight", "grad_norm", None, 9.0),
        (4, "", "", "loss", None, 0.75),
        (4, "1", "", "nonfinite_forward", None, 1.0),
        (4, "2", "", "nonfinite_backward", None, 1.0),
        (4, "", "", "nonfinite", None, 1.0),
        (2, "", "", "nonfinite_gradient", None, 1.0),
    ]
    assert step_scalars(rows) == {
        4: {"nonfinite": 2.0, "grad_norm_total": 2.5, "loss": 0.75},
        2: {"nonfinite": 1.0},
    }


MODULES = [
    (0, "", "Sequential", None, 0, "{}"),
    (1, "0", "Linear", None, 40, json.dumps({"sw2": 1.0})),
    (2, "1", "Tanh", "tanh", 0, "{}"),
    (3, "2", "Linear", None, 40, json.dumps({"sw2": 1.0})),
    (4, "3", "ReLU", "relu", 0, "{}"),
    (5, "aux_head.0", "Linear", None, 10, json.dumps({"sw2": 1.0})),
]
LAYER_ROWS = [
    (5, "0", "", "signal_out", None, 2.0),
    (5, "1", "", "signal_out", None, 4.0),
    (5, "1", "", "signal_in", None, 2.0),
    (5, "1", "", "gain", None, 0.5),
    (5, "1", "", "dead_frac", None, 0.0),
    (5, "1", "", "saturated_frac", None, 0.25),
    (5, "2", "", "signal_out", None, 8.0),
    (5, "2", "", "signal_in", None, 4.0),
    (5, "2", "", "gain", None, 0.5),
    (5, "3", "", "signal_out", None, 800.0),
    (5, "3", "", "signal_in", None, 8.0),
    (5, "3", "", "gain", None, 0.01),
    (5, "3", "", "dead_frac", None, 0.5),
    (5, "3", "", "saturated_frac", None, 0.6),
    (5, "aux_head.0", "", "signal_out", None, 1.0),
    (5, "aux_head.0", "", "gain", None, 1e-6),
]


def test_layer_scalars_ratio_worst_layer_and_per_layer_signals():
    infos = module_infos(MODULES)
    got = step_scalars(LAYER_ROWS, infos, per_layer=True)[5]
    # first weighted layer "0" (2.0) over the last one outside the aux branch, "2" (8.0)
    assert got["signal_ratio"] == 0.25
    trace = Trace(frame=frame_from_rows(LAYER_ROWS), modules=_modules_frame(), meta={})
    assert signal_ratio(trace, 5) == 0.25  # the one definition agrees
    assert got["worst_gain"] == 0.01  # |log10| 2 beats 0.5's 0.3; aux's 1e-6 is left out
    assert (got["worst_dead_frac"], got["worst_saturated_frac"]) == (0.5, 0.6)
    layers = {k[len(LAYER_TAG) :]: v for k, v in got.items() if k.startswith(LAYER_TAG)}
    assert layers == {"0": 2.0, "1": 4.0, "2": 8.0, "3": 800.0, "aux_head.0": 1.0}
    assert set(got) == set(TAGS) - {"grad_norm_total", "loss"} | {LAYER_TAG + m for m in layers}
    plain = step_scalars(LAYER_ROWS)[5]  # no module table: no ratio, no per-layer tags
    assert set(plain) == {"nonfinite", "worst_gain", "worst_dead_frac", "worst_saturated_frac"}


def _modules_frame():
    import pandas as pd

    return pd.DataFrame(MODULES, columns=["ord", "name", "type", "activation", "n_params", "info"])


@pytest.mark.parametrize(
    ("gains", "worst"),
    [([0.5, 0.0, 3.0], 0.0), ([2.0, 0.5, math.nan], 2.0), ([math.inf, 1e-9], math.inf)],
)
def test_worst_gain_is_farthest_from_one_zero_and_inf_first_nan_never(gains, worst):
    rows = [(1, f"m{i}", "", "gain", None, g) for i, g in enumerate(gains)]
    assert step_scalars(rows)[1]["worst_gain"] == worst  # ties: the first in model order


class Recorder:
    def __init__(self, per_layer=False):
        self.got = []
        self.per_layer = per_layer

    def write(self, step, scalars):
        self.got.append((step, dict(scalars)))

    def close(self):
        self.got.append("closed")


class Raises:
    def write(self, step, scalars):
        raise ValueError("nope")

    def close(self):
        raise ValueError("nope")


def test_sinks_shield_each_sink_and_warn_once():
    rec = Recorder()
    sinks = Sinks([Raises(), rec])
    assert isinstance(rec, Sink) and len(sinks) == 2
    with pytest.warns(RuntimeWarning) as w:
        sinks.write_rows([(0, "", "", "loss", None, 1.0)])
        sinks.write_rows([(1, "", "", "loss", None, 0.5)])
        sinks.close()
    assert [str(x.message) for x in w] == [
        "gradmedic sink Raises.write raised ValueError('nope'); training goes on and further "
        "errors of this sink are not reported"
    ]
    assert rec.got == [
        (0, {"nonfinite": 0.0, "loss": 1.0}),
        (1, {"nonfinite": 0.0, "loss": 0.5}),
        "closed",
    ]


def test_a_monitor_passes_each_sink_the_traces_numbers():
    """Every step recorded on an MLP with an auxiliary head: the ratio is derived.signal_ratio
    of the trace at that step, the worst layer is read off the trace's per-layer table, and
    only the sink that asks gets the per-layer signals."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU())
    model.append(nn.Linear(16, 16)).append(nn.Sigmoid()).append(nn.Linear(16, 2))
    model, _ = add_aux_heads(model, at=2, num_outputs=2)
    wide, narrow = Recorder(per_layer=True), Recorder()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with Monitor(model, optimizer=opt, every=1, sinks=[wide, narrow]) as mon:
        for _ in range(3):
            opt.zero_grad()
            loss = model(torch.randn(32, 6)).square().mean()
            (loss + model.aux_loss(lambda o, t: o.square().mean(), None)).backward()
            mon.observe(loss)
            opt.step()
    trace = mon.trace()
    assert [s for s, _ in wide.got[:-1]] == [0, 1, 2] == [s for s, _ in narrow.got[:-1]]
    for (step, got), (_, small) in zip(wide.got[:-1], narrow.got[:-1], strict=True):
        rows = [r for r in trace.layer_rows(step) if not is_auxiliary(r["module"])]
        gains = [r["gain"] for r in rows if r["gain"] is not None]
        assert got["signal_ratio"] == signal_ratio(trace, step) > 0
        assert got["worst_gain"] == max(gains, key=lambda g: abs(math.log10(g)))
        assert got["worst_dead_frac"] == max(
            r["dead_frac"] for r in rows if r["dead_frac"] is not None
        )
        sat = max(r["saturated_frac"] for r in rows if r["saturated_frac"] is not None)
        assert got["worst_saturated_frac"] == sat
        f = trace.frame
        so = f[(f.step == step) & (f.quantity == "signal_out") & (f.parameter == "")]
        assert {LAYER_TAG + m: v for m, v in zip(so.module, so.value, strict=True)} == {
            k: v for k, v in got.items() if k.startswith(LAYER_TAG)
        }
        assert len(so) >= 7 and small == {k: v for k, v in got.items() if k in TAGS}
