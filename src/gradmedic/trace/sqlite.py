"""The trace: a crash-safe, append-only record of what the Monitor measured.

Format (see the README's design section): one SQLite database in WAL mode. Each recorded step
is written in a single transaction, so a process killed at any moment (even by SIGKILL) leaves
every completed step readable, and a half-written step is rolled back on the next open. SQLite
ships with Python, needs no server, is safe to read while a run is still writing, and pandas
reads it directly. :meth:`Trace.to_parquet` exports the long table for columnar tools.

Tables (schema version :data:`SCHEMA_VERSION`):

``records(step, module, parameter, quantity, idx, value)``
    the long form. ``module`` is the qualified module name ('' for the whole model),
    ``parameter`` the parameter's short name ('' for module-level quantities), ``idx`` a time
    index for RNN profiles (NULL otherwise).
``modules(ord, name, type, activation, n_params, info)``
    the model's structure in registration order, so a trace can be diagnosed without the model.
``meta(key, value)``
    run metadata as JSON values: schema version, torch version, seed, command line, model summary.

Example::

    >>> tr = read_trace("run/trace.sqlite")           # doctest: +SKIP
    >>> tr.frame.query("quantity == 'gain'").head()   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gradmedic.errors import TraceError
from gradmedic.trace.lock import WriterLock
from gradmedic.trace.schema import _SCHEMA, COLUMNS, SCHEMA_VERSION, Row
from gradmedic.trace.view import Trace

__all__ = ["TraceWriter", "frame_from_rows", "read_trace"]


class TraceWriter:
    """Appends recorded steps to a SQLite trace, one transaction per step.

    An existing trace is appended to (``overwrite=False``, the default): its steps are kept,
    :attr:`next_step` is one past its last step so that a new run continues the numbering, and
    every writer adds one entry to the ``runs`` list in the metadata (``run``, ``first_step``,
    ``started``). ``overwrite=True`` deletes the old trace first. Only one writer may hold a
    trace at a time (:class:`~gradmedic.trace.lock.WriterLock`); a second is refused with a
    :class:`~gradmedic.errors.TraceError` naming the holder.

    While open the file is in WAL mode with ``synchronous=NORMAL``: each commit is durable
    against a killed process (the operating system keeps the written pages); only a power loss
    can drop the last commits. :meth:`close` checkpoints and switches the journal back to
    ``DELETE``, so a finished trace is one file that opens read-only anywhere.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TraceError(
                f"cannot create the folder of the trace {self.path}: {exc.strerror}; "
                "choose a writable --out folder"
            ) from exc
        self._lock = WriterLock.acquire(self.path)
        try:
            self._open(overwrite)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, overwrite: bool) -> None:
        try:
            if overwrite:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(str(self.path) + suffix).unlink(missing_ok=True)
            existed = self.path.exists() and self.path.stat().st_size > 0
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            meta = _existing_meta(self._db) if existed else {}
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                self._db.close()
            raise TraceError(
                f"{self.path} exists and is not a gradmedic trace ({exc}); pass overwrite=True "
                "(--overwrite) to replace it, or write to another path"
            ) from exc
        except OSError as exc:
            raise TraceError(
                f"cannot write the trace at {self.path}: {exc.strerror}; choose a writable "
                "--out folder"
            ) from exc
        if existed and meta.get("schema_version") not in (None, SCHEMA_VERSION):
            self._db.close()
            raise TraceError(
                f"{self.path} has trace schema version {meta.get('schema_version')}, this "
                f"gradmedic writes version {SCHEMA_VERSION}; pass overwrite=True (--overwrite) "
                "or write to another path"
            )
        self._db.executescript(_SCHEMA)
        last = self._db.execute("SELECT MAX(step) FROM records").fetchone()[0]
        #: the first step number a new run should use (one past the trace's last step)
        self.next_step = 0 if last is None else int(last) + 1
        runs = meta.get("runs") if isinstance(meta.get("runs"), list) else []
        if not runs and last is not None:  # a trace from before runs were recorded
            runs = [{"run": 0, "first_step": 0}]
        #: index of this writer's run in the ``runs`` metadata
        self.run = len(runs)
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        runs.append({"run": self.run, "first_step": self.next_step, "started": started})
        self.set_meta({"schema_version": SCHEMA_VERSION, "runs": runs})

    def set_meta(self, items: dict[str, Any]) -> None:
        """Store (or replace) metadata entries; values are stored as JSON."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, json.dumps(v, default=str)) for k, v in items.items()],
            )

    def set_modules(self, rows: Sequence[tuple[int, str, str, str | None, int, str]]) -> None:
        """Store the model structure: (ord, name, type, activation, n_params, info-json)."""
        with self._db:
            self._db.execute("DELETE FROM modules")
            self._db.executemany("INSERT INTO modules VALUES (?, ?, ?, ?, ?, ?)", rows)

    def append(self, rows: Iterable[Row]) -> None:
        """Append the rows of one recorded step atomically."""
        with self._db:
            self._db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        """Checkpoint the WAL into the main file, leave the journal in ``DELETE`` mode (one
        file, no ``-wal``/``-shm``), close, and release the writer lock. Idempotent."""
        db = getattr(self, "_db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.execute("PRAGMA journal_mode=DELETE")
            db.close()
            self._db = None  # type: ignore[assignment]
        self._lock.release()


def _existing_meta(db: sqlite3.Connection) -> dict[str, Any]:
    """The metadata of an existing trace file (raises sqlite3.DatabaseError if not SQLite)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and not {"meta", "records", "modules"} <= tables:
        raise sqlite3.DatabaseError(f"it has the tables {sorted(tables)}")
    if "meta" not in tables:
        return {}
    out: dict[str, Any] = {}
    for k, v in db.execute("SELECT key, value FROM meta"):
        with contextlib.suppress(ValueError, TypeError):
            out[k] = json.loads(v)
    return out


def frame_from_rows(rows: Sequence[Row]) -> pd.DataFrame:
    """Build the long DataFrame from in-memory rows (same columns and dtypes as the file)."""
    df = pd.DataFrame(list(rows), columns=COLUMNS)
    return _typed(df)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df["step"] = df["step"].astype("int64")
    df["idx"] = df["idx"].astype("Int64")
    df["value"] = df["value"].astype("float64")
    return df


def _query(uri: str) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    db = sqlite3.connect(uri, uri=True, timeout=2.0)
    try:
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
        frame = pd.read_sql_query(
            "SELECT step, module, parameter, quantity, idx, value FROM records ORDER BY rowid", db
        )
        modules = pd.read_sql_query("SELECT * FROM modules ORDER BY ord", db)
    finally:
        db.close()
    return meta, frame, modules


def read_trace(path: str | Path) -> Trace:
    """Read a trace written by :class:`TraceWriter` (also while the run is still writing).

    Opens the file read-only: a finished trace (journal mode ``DELETE``) is read without
    creating any file, also in a read-only folder. A trace left in WAL mode by a killed run in
    a folder we cannot write is read as an immutable snapshot of its main file.

    Raises :class:`~gradmedic.errors.TraceError` when there is no trace at ``path``, when it
    is in use (locked) by another process, when it is not a gradmedic trace or holds values of
    the wrong type, and when its schema version differs.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "trace.sqlite"
    if not p.exists():
        raise TraceError(
            f"no trace at {p}; pass the trace.sqlite file (or the --out folder) of a gradmedic run"
        )
    try:
        try:
            meta, frame, modules = _query(f"file:{p}?mode=ro")
        except sqlite3.OperationalError as exc:
            if "unable to open" not in str(exc) or os.access(p.parent, os.W_OK):
                raise
            meta, frame, modules = _query(f"file:{p}?mode=ro&immutable=1")
        frame = _typed(frame)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise TraceError(
                f"{p} is in use by another process (locked); try again when that run has finished"
            ) from exc
        raise TraceError(f"{p} is not a readable gradmedic trace ({exc})") from exc
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise TraceError(f"{p} is not a readable gradmedic trace ({exc})") from exc
    except (ValueError, TypeError) as exc:
        raise TraceError(
            f"{p} holds values of the wrong type ({exc}); it was not written by gradmedic or "
            "was edited by hand: re-run to get a fresh trace"
        ) from exc
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise TraceError(
            f"{p} has trace schema version {version}, this gradmedic reads version "
            f"{SCHEMA_VERSION}; re-run with a matching gradmedic version"
        )
    return Trace(frame=frame, modules=modules, meta=meta, path=p)
