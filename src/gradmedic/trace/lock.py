"""One writer per trace: an advisory lock file beside the trace.

``trace.sqlite.lock`` is locked with ``fcntl.flock`` for as long as a :class:`TraceWriter` is
open, and holds the writer's process id, host and start time. A second writer (another
process, or another Monitor in the same process) is refused with one line naming the holder.
The operating system drops the lock when the holding process dies, even by SIGKILL, so a stale
lock file never blocks a later run. Where ``fcntl`` does not exist (Windows) the lock is
skipped and SQLite's own locking is the only guard.

Example::

    >>> lock = WriterLock.acquire(Path("run/trace.sqlite"))   # doctest: +SKIP
    >>> lock.release()                                        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from gradmedic.errors import TraceError

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriterLock", "lock_path"]

#: Paths locked by writers of this process (flock is per open file, so a second open in the
#: same process would succeed; this set refuses it too).
_HELD: set[str] = set()


def lock_path(trace: Path) -> Path:
    """The lock file of a trace: ``<trace>.lock``."""
    return Path(str(trace) + ".lock")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"process {int(info['pid'])} on {info['host']} (since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class WriterLock:
    """The exclusive writer lock of one trace; :meth:`release` it when the writer closes."""

    def __init__(self, trace: Path, fd: int | None) -> None:
        self.trace = trace
        self._fd = fd

    @classmethod
    def acquire(cls, trace: Path) -> WriterLock:
        """Take the lock of ``trace`` or raise :class:`~gradmedic.errors.TraceError` naming
        the process that holds it."""
        key = str(trace.resolve())
        path = lock_path(trace)
        if key in _HELD:
            raise TraceError(
                f"trace {trace} is already being written by this process (another Monitor "
                "is attached to it); detach that Monitor first or write to another path"
            )
        if fcntl is None:  # pragma: no cover - Windows
            _HELD.add(key)
            return cls(trace, None)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise TraceError(
                f"cannot create the lock file {path}: {exc.strerror}; choose a writable folder "
                "for the trace"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the holder may have removed the file between our open and flock: then we hold
            # the lock of an unlinked file, and must take the new one instead
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                os.close(fd)
                return cls.acquire(trace)
        except FileNotFoundError:
            os.close(fd)
            return cls.acquire(trace)
        except OSError:
            os.close(fd)
            raise TraceError(
                f"trace {trace} is being written by {_holder(path)}; wait for that run to "
                "finish, or write to another path (another --out folder)"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        _HELD.add(key)
        return cls(trace, fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        _HELD.discard(str(self.trace.resolve()))
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            lock_path(self.trace).unlink()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None
