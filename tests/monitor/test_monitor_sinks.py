"""Monitor(..., sinks=[...]): each recorded step's scalars reach every sink, equal to the trace;
a failing sink never stops training."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gradmedic import Monitor
from gradmedic.errors import ConfigError
from monitor_util import NaNAfter


class ListSink:
    def __init__(self):
        self.writes: list[tuple[int, dict[str, float]]] = []
        self.closed = 0

    def write(self, step, scalars):
        self.writes.append((step, dict(scalars)))

    def close(self):
        self.closed += 1


class BrokenSink:
    def __init__(self):
        self.calls = 0

    def write(self, step, scalars):
        self.calls += 1
        raise OSError("disk full")

    def close(self):
        raise OSError("disk full")


def _run(*sinks, nan_at: int = 100, every: int = 2, steps: int = 6):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), NaNAfter(nan_at), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    with Monitor(model, optimizer=opt, every=every, sinks=list(sinks)) as mon:
        for _ in range(steps):
            opt.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            mon.observe(loss)
            opt.step()
            losses.append(loss.item())
    return mon, losses


def _trace_value(f, step, quantity):
    (v,) = f[(f.step == step) & (f.quantity == quantity) & (f.module == "")].value
    return v


def test_each_recorded_step_reaches_the_sink_with_the_traces_values():
    sink = ListSink()
    mon, _ = _run(sink)
    f = mon.frame()
    assert [s for s, _ in sink.writes] == [0, 2, 4]
    for step, scalars in sink.writes:
        assert set(scalars) == {"grad_norm_total", "loss", "nonfinite", "signal_ratio"} | {
            "worst_gain", "worst_dead_frac", "worst_saturated_frac"
        }  # fmt: skip
        assert scalars["grad_norm_total"] == _trace_value(f, step, "grad_norm_total")
        assert scalars["loss"] == _trace_value(f, step, "loss")
        assert scalars["nonfinite"] == 0.0
    assert sink.writes[0][1]["grad_norm_total"] > 0
    assert sink.closed == 1


def test_nonfinite_counts_the_events_of_the_step():
    """NaN from step 3 on, every step recorded: steps 3 and 4 each name the forward and the
    backward module (two events), the same count as the events of that step."""
    sink = ListSink()
    mon, _ = _run(sink, nan_at=3, every=1, steps=5)
    counts = {s: sc["nonfinite"] for s, sc in sink.writes}
    assert counts == {0: 0.0, 1: 0.0, 2: 0.0, 3: 2.0, 4: 2.0}
    by_step = {s: 0 for s in counts}
    for e in mon.events:
        by_step[e["step"]] += 1
    assert counts == {s: float(n) for s, n in by_step.items()}


def test_a_sentinel_hit_is_written_at_its_own_step():
    sink = ListSink()
    mon, _ = _run(sink, nan_at=3, every=5, steps=6)
    assert [(s, sc["nonfinite"]) for s, sc in sink.writes] == [(0, 0.0), (3, 1.0), (5, 2.0)]
    assert sink.writes[1][1] == {"nonfinite": 1.0}
    first = mon.events[0]
    assert (first["step"], first["kind"]) == (3, "nonfinite_gradient")


def test_a_failing_sink_warns_once_and_training_goes_on():
    plain = ListSink()
    _, ref_losses = _run(plain)
    broken, good = BrokenSink(), ListSink()
    with pytest.warns(RuntimeWarning, match=r"BrokenSink.write raised OSError\('disk full'\)") as w:
        _, losses = _run(broken, good)
    assert len([x for x in w if issubclass(x.category, RuntimeWarning)]) == 1
    assert losses == ref_losses
    assert broken.calls == 3  # still called on every recorded step
    assert good.writes == plain.writes and good.closed == 1


def test_a_sink_without_write_and_close_is_refused():
    with pytest.raises(ConfigError) as e:
        Monitor(nn.Linear(2, 1), sinks=[print])
    assert str(e.value) == (
        "sinks= takes objects with write(step, scalars) and close() methods "
        "(gradmedic.trace.sinks.Sink); got builtin_function_or_method"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Monitor(nn.Linear(2, 1), sinks=[ListSink()])  # a conforming sink: no warning
