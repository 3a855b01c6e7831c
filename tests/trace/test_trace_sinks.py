"""The sink protocol: the scalars of each step and the shielding of failing sinks."""

from __future__ import annotations

import pytest

from gradmedic.trace.sinks import TAGS, Sink, Sinks, step_scalars


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
    assert set(step_scalars(rows)[4]) == set(TAGS)


class Recorder:
    def __init__(self):
        self.got = []

    def write(self, step, scalars):
        self.got.append((step, scalars))

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
