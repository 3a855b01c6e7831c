"""The one definition of the end-to-end ratio, gradient health and gradient spikes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradmedic import Monitor
from gradmedic.remedies.heads import add_aux_heads
from gradmedic.trace.derived import end_to_end, health, is_auxiliary, signal_ratio, spike_steps


def test_spike_steps_are_at_least_ten_times_the_runs_median():
    series = [(0, 50.0), (1, 1.0), (2, 1.2), (3, 0.9), (4, 10.0), (5, 9.9), (6, math.nan)]
    # median of the finite positive values (1.0, 1.2, 0.9, 10, 9.9, 50) is 5.6 -> 56 needed
    assert spike_steps(series) == []
    series = [(0, 1.0), (1, 1.1), (2, 0.9), (3, 1.0), (4, 10.0), (5, 1.0), (6, 0.0)]
    assert spike_steps(series) == [4]  # median 1.0; the first value is never a spike
    assert spike_steps([(0, 1.0), (1, 100.0), (2, 1.0), (3, 1.0)]) == []  # fewer than 5


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(1.0, 0.0), (1e-6, 6.0), (1e3, 3.0), (0.0, math.inf), (math.nan, math.inf)],
)
def test_health_is_decades_away_from_one(ratio, expected):
    assert health(ratio) == pytest.approx(expected)


def test_the_ratio_is_the_first_over_the_last_weighted_layers_signal():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    with Monitor(model, every=1) as mon:
        model(torch.randn(16, 4)).square().sum().backward()
        mon.step()
        tr = mon.trace()
    f = tr.frame
    so = f[(f.quantity == "signal_out") & (f.parameter == "")].set_index("module")["value"]
    assert signal_ratio(tr) == so["0"] / so["4"]
    e = end_to_end(tr)
    assert (e.first, e.last, e.crossings) == ("0", "4", 2)


def test_auxiliary_heads_do_not_end_the_main_path():
    assert is_auxiliary("aux_heads.0") and is_auxiliary("net.aux1.fc")
    assert not is_auxiliary("auxiliary_free_layer".replace("aux", "main"))
    torch.manual_seed(0)
    net = nn.Sequential(
        *[m for _ in range(4) for m in (nn.Linear(8, 8), nn.Tanh())], nn.Linear(8, 3)
    )
    wrapped, _ = add_aux_heads(net, at=3, num_outputs=3)
    with Monitor(wrapped, every=1) as mon:
        out = wrapped(torch.randn(16, 8))
        loss = nn.functional.cross_entropy(out, torch.randint(0, 3, (16,)))
        (
            loss + wrapped.aux_loss(nn.functional.cross_entropy, torch.randint(0, 3, (16,)))
        ).backward()
        mon.step()
        tr = mon.trace()
    e = end_to_end(tr)
    assert e.last == "model.8"  # the main output layer, not the auxiliary head
    assert not any(is_auxiliary(m) for m in e.path)
