"""Trial runners: where the independent trials of ``treat`` run.

The interface, :class:`TrialRunner`, is three calls: ``submit(trial)``, ``next_done()`` (block
until some submitted trial has finished and return its
:class:`~gradmedic.workflows.treatment.trials.TrialOutcome`) and ``close()``. ``treat`` only
ever decides what to run next from finished outcomes, and each outcome depends only on its
trial (:func:`~gradmedic.workflows.treatment.trials.run_trial`: one torch thread, fixed
seeds), so every runner gives the same results in another order.

- ``serial``: in this process, one trial at a time, with one torch thread.
- ``process``: a pool of worker processes, one torch thread each. The workers are forked after
  the shared context (model, data, loss) is built, so nothing has to be importable by name: a
  model from ``my_model.py:build`` works as well as a zoo spec. Where ``fork`` is not
  available (Windows) the runner falls back to ``serial``.
- ``auto`` (default): ``process`` with one worker per free core (the CPU count minus the
  one-minute load average) when more than one core is free, else
  ``serial``.
- ``ray``: not provided. The interface is what a Ray backend needs (``submit`` maps to a remote
  task, ``next_done`` to ``ray.wait``), but Ray 2.60 has dropped ``local_mode`` and a local Ray
  node did not start within its 30 s timeout on the 2-core machine this was built on, so it
  could not be tested within the test suite's budget; asking for it raises a ConfigError.

Example::

    >>> runner = make_runner("serial", None, ctx)            # doctest: +SKIP
    >>> runner.submit(Trial("untreated", (), 1.0, 0.01, 0))  # doctest: +SKIP
    >>> runner.next_done().result.final_loss                 # doctest: +SKIP
    2.3
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Protocol

import torch

from gradmedic.errors import ConfigError, unknown_name
from gradmedic.workflows.treatment.trials import (
    Trial,
    TrialContext,
    TrialOutcome,
    one_thread,
    run_trial,
)

__all__ = [
    "EXECUTORS",
    "ProcessRunner",
    "SerialRunner",
    "TrialRunner",
    "free_cores",
    "make_runner",
]

#: Names ``treat(executor=...)`` and ``--executor`` accept.
EXECUTORS = ("auto", "serial", "process", "ray")


class TrialRunner(Protocol):
    """Runs trials; see the module docstring."""

    workers: int

    def submit(self, trial: Trial) -> None: ...

    def next_done(self) -> TrialOutcome: ...

    def pending(self) -> int: ...

    def close(self) -> None: ...


class SerialRunner:
    """Runs each submitted trial in this process when its outcome is asked for."""

    workers = 1

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx = ctx
        self._queue: collections.deque[Trial] = collections.deque()

    def submit(self, trial: Trial) -> None:
        self._queue.append(trial)

    def next_done(self) -> TrialOutcome:
        with one_thread():
            return run_trial(self.ctx, self._queue.popleft())

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._queue.clear()


_CONTEXT: TrialContext | None = None  # the forked workers' copy of the shared context


def _worker_init() -> None:
    torch.set_num_threads(1)


def _run_in_worker(trial: Trial) -> TrialOutcome:
    assert _CONTEXT is not None, "worker started without a trial context"
    return run_trial(_CONTEXT, trial)


class ProcessRunner:
    """Runs trials in ``workers`` forked processes (see the module docstring)."""

    def __init__(self, ctx: TrialContext, workers: int) -> None:
        global _CONTEXT
        _CONTEXT = ctx
        self.workers = workers
        with warnings.catch_warnings():  # Python >= 3.12 warns about fork in threaded processes
            warnings.simplefilter("ignore", DeprecationWarning)
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_worker_init,
            )
        self._futures: set[Future[TrialOutcome]] = set()

    def submit(self, trial: Trial) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._futures.add(self._pool.submit(_run_in_worker, trial))

    def next_done(self) -> TrialOutcome:
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        fut = min(done, key=lambda f: id(f))
        self._futures.discard(fut)
        return fut.result()

    def pending(self) -> int:
        return len(self._futures)

    def close(self) -> None:
        for fut in self._futures:
            fut.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()


def free_cores() -> int:
    """Cores this process may use minus the one-minute load average, rounded (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, round(cores - load))


def make_runner(executor: str, workers: int | None, ctx: TrialContext) -> TrialRunner:
    """The runner for ``executor`` (:data:`EXECUTORS`) with ``workers`` processes (None: one per
    free core). Raises UnknownNameError for an unknown executor, ConfigError for ``ray`` and
    for ``workers < 1``."""
    if executor not in EXECUTORS:
        raise unknown_name("executor", executor, EXECUTORS)
    if executor == "ray":
        raise ConfigError(
            "the ray executor is not available in this version: Ray dropped local_mode and a "
            "local Ray node could not be tested here; use --executor process (one worker per "
            "core) or serial"
        )
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}; e.g. --workers 4")
    n = workers if workers is not None else free_cores()
    fork = "fork" in multiprocessing.get_all_start_methods()
    if executor == "serial" or not fork or (executor == "auto" and n < 2):
        return SerialRunner(ctx)
    return ProcessRunner(ctx, max(1, n))
