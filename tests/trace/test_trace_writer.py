"""The trace writer never loses what a user recorded: append by default, explicit overwrite,
one writer at a time (also across processes), a tidy single file after close, and one-line
errors for traces that are locked, foreign or hold values of the wrong type."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from gradmedic.errors import TraceError
from gradmedic.trace import TraceWriter, read_trace


def _write(path, steps, **kw):
    w = TraceWriter(path, **kw)
    first = w.next_step
    for s in range(first, first + steps):
        w.append([(s, "", "", "loss", None, float(s))])
    w.close()
    return w


def test_an_existing_trace_is_appended_to_and_each_writer_is_a_run(tmp_path):
    path = tmp_path / "trace.sqlite"
    _write(path, 3)
    w = _write(path, 3)
    assert w.run == 1
    tr = read_trace(path)
    assert tr.steps == [0, 1, 2, 3, 4, 5]
    assert [(r["run"], r["first_step"]) for r in tr.meta["runs"]] == [(0, 0), (1, 3)]


def test_overwrite_replaces_the_trace(tmp_path):
    path = tmp_path / "trace.sqlite"
    _write(path, 3)
    _write(path, 2, overwrite=True)
    tr = read_trace(path)
    assert tr.steps == [0, 1]
    assert len(tr.meta["runs"]) == 1


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    path = tmp_path / "trace.sqlite"
    w = TraceWriter(path)
    with pytest.raises(TraceError) as e:
        TraceWriter(path, overwrite=True)
    assert str(e.value) == (
        f"trace {path} is already being written by this process (another Monitor is attached "
        "to it); detach that Monitor first or write to another path"
    )
    w.append([(0, "", "", "loss", None, 1.0)])
    w.close()
    assert read_trace(path).steps == [0]
    TraceWriter(path).close()  # released: a later writer gets it


_HOLDER = """
import sys, time
from gradmedic.trace import TraceWriter
w = TraceWriter(sys.argv[1])
for s in range(3):
    w.append([(s, "", "", "loss", None, float(s))])
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
w.close()
"""


def test_a_writer_in_another_process_is_refused_and_keeps_its_steps(tmp_path):
    path = tmp_path / "trace.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLDER), str(path), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(TraceError) as e:
            TraceWriter(path, overwrite=True)
        msg = str(e.value)
        assert msg.startswith(f"trace {path} is being written by process {proc.pid} on ")
        assert msg.endswith(
            "; wait for that run to finish, or write to another path (another --out folder)"
        )
    finally:
        assert proc.wait(timeout=60) == 0
    assert read_trace(path).steps == [0, 1, 2]  # nothing of the holder's run was lost


def test_a_killed_writer_does_not_block_the_next(tmp_path):
    path = tmp_path / "trace.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLDER), str(path), "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait(timeout=60)
    w = _write(path, 2)  # the lock died with its process; the killed run's steps stay
    assert w.next_step == 3
    assert read_trace(path).steps == [0, 1, 2, 3, 4]


def test_a_closed_trace_is_one_file_and_reading_leaves_nothing(tmp_path):
    path = tmp_path / "trace.sqlite"
    _write(path, 2)
    read_trace(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.sqlite"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.close()


def test_reading_a_locked_trace_says_it_is_in_use(tmp_path):
    path = tmp_path / "trace.sqlite"
    _write(path, 1)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        with pytest.raises(TraceError) as e:
            read_trace(path)
        assert time.monotonic() - t0 < 30
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert str(e.value) == (
        f"{path} is in use by another process (locked); try again when that run has finished"
    )


def test_values_of_the_wrong_type_are_one_line(tmp_path):
    path = tmp_path / "trace.sqlite"
    _write(path, 1)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO records VALUES (1, '', '', 'loss', NULL, 'not a number')")
    db.commit()
    db.close()
    with pytest.raises(TraceError, match=r"holds values of the wrong type"):
        read_trace(path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM records WHERE step = 1")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('seed', '{not json')")
    db.commit()
    db.close()
    with pytest.raises(TraceError, match=r"holds values of the wrong type"):
        read_trace(path)


def test_a_foreign_file_is_not_overwritten_silently(tmp_path):
    path = tmp_path / "trace.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(TraceError) as e:
        TraceWriter(path)
    assert str(e.value).startswith(f"{path} exists and is not a gradmedic trace (")
    assert str(e.value).endswith(
        "pass overwrite=True (--overwrite) to replace it, or write to another path"
    )
    assert not os.path.exists(str(path) + ".lock")
    path.write_bytes(b"plain text, not SQLite at all" * 10)
    with pytest.raises(TraceError, match=r"exists and is not a gradmedic trace"):
        TraceWriter(path)
    _write(path, 1, overwrite=True)
    assert read_trace(path).steps == [0]
