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
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gradmedic.errors import TraceError
from gradmedic.trace.schema import _SCHEMA, COLUMNS, SCHEMA_VERSION, Row
from gradmedic.trace.view import Trace

__all__ = ["TraceWriter", "frame_from_rows", "read_trace"]


class TraceWriter:
    """Appends recorded steps to a SQLite trace, one transaction per step.

    ``synchronous=NORMAL`` in WAL mode makes each commit durable against a killed process (the
    operating system keeps the written pages); only a power loss can drop the last commits.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = True) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if overwrite:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(self.path) + suffix).unlink(missing_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise TraceError(
                f"cannot write the trace at {self.path}: {exc}; choose a writable --out folder"
            ) from exc
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.set_meta({"schema_version": SCHEMA_VERSION})

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
        """Checkpoint the WAL into the main file and close."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()


def frame_from_rows(rows: Sequence[Row]) -> pd.DataFrame:
    """Build the long DataFrame from in-memory rows (same columns and dtypes as the file)."""
    df = pd.DataFrame(list(rows), columns=COLUMNS)
    return _typed(df)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df["step"] = df["step"].astype("int64")
    df["idx"] = df["idx"].astype("Int64")
    df["value"] = df["value"].astype("float64")
    return df


def read_trace(path: str | Path) -> Trace:
    """Read a trace written by :class:`TraceWriter` (also while the run is still writing)."""
    p = Path(path)
    if p.is_dir():
        p = p / "trace.sqlite"
    if not p.exists():
        raise TraceError(
            f"no trace at {p}; pass the trace.sqlite file (or the --out folder) of a gradmedic run"
        )
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
            frame = pd.read_sql_query(
                "SELECT step, module, parameter, quantity, idx, value FROM records ORDER BY rowid",
                db,
            )
            modules = pd.read_sql_query("SELECT * FROM modules ORDER BY ord", db)
        finally:
            db.close()
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise TraceError(f"{p} is not a readable gradmedic trace ({exc})") from exc
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise TraceError(
            f"{p} has trace schema version {version}, this gradmedic reads version "
            f"{SCHEMA_VERSION}; re-run with a matching gradmedic version"
        )
    return Trace(frame=_typed(frame), modules=modules, meta=meta, path=p)
