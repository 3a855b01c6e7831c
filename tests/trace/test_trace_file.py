"""The trace on disk: long form for pandas, metadata, and survival of a killed process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from gradmedic import Monitor, read_trace
from gradmedic.errors import TraceError
from gradmedic.trace import COLUMNS, SCHEMA_VERSION


def test_trace_is_long_form_with_metadata(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    path = tmp_path / "t.sqlite"
    with Monitor(model, trace=path, every=1, metadata={"seed": 7, "note": "x"}) as mon:
        for _ in range(3):
            model(torch.randn(5, 3)).sum().backward()
            mon.step()
    tr = read_trace(path)
    assert list(tr.frame.columns) == COLUMNS
    assert tr.steps == [0, 1, 2]
    assert tr.meta["schema_version"] == SCHEMA_VERSION
    assert tr.meta["seed"] == 7 and tr.meta["note"] == "x"
    assert tr.meta["torch_version"] == torch.__version__
    assert tr.meta["steps"] == 3
    assert list(tr.modules["name"]) == ["", "0", "1", "2"]
    assert list(tr.modules["type"]) == ["Sequential", "Linear", "ReLU", "Linear"]
    assert tr.pivot("gain").shape == (3, 3)
    # the in-memory trace and the file hold the same rows
    assert len(mon.frame()) == len(tr.frame)


def test_parquet_export_round_trips(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    model = nn.Linear(2, 1)
    with Monitor(model, trace=tmp_path / "trace.sqlite", every=1) as mon:
        model(torch.randn(4, 2)).sum().backward()
        mon.step()
    tr = read_trace(tmp_path)
    back = pd.read_parquet(tr.to_parquet(tmp_path / "t.parquet"))
    assert back.shape == tr.frame.shape


def test_missing_and_foreign_traces_are_clear_errors(tmp_path):
    with pytest.raises(TraceError) as e:
        read_trace(tmp_path / "nope.sqlite")
    assert str(e.value) == (
        f"no trace at {tmp_path / 'nope.sqlite'}; pass the trace.sqlite file "
        "(or the --out folder) of a gradmedic run"
    )
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database")
    with pytest.raises(TraceError, match="is not a readable gradmedic trace"):
        read_trace(bad)


CHILD = textwrap.dedent(
    """
    import sys, time, torch
    from torch import nn
    from gradmedic import Monitor
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
    with Monitor(model, trace=sys.argv[1], every=1) as mon:
        for step in range(100000):
            model(torch.randn(4, 8)).sum().backward()
            mon.step()
            print(step, flush=True)
            time.sleep(0.01)
    """
)


def test_trace_survives_sigkill(tmp_path):
    path = tmp_path / "killed.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    completed = -1
    deadline = time.time() + 60
    while completed < 20 and time.time() < deadline:
        line = proc.stdout.readline()
        if line:
            completed = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    tr = read_trace(path)
    # every step that printed (its write was committed before the print) is there
    assert tr.steps[: completed + 1] == list(range(completed + 1))
    assert set(tr.frame[tr.frame.step == completed].quantity) >= {"grad_norm", "gain"}
