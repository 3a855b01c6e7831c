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
- ``ray`` (optional extra: ``pip install 'gradmedic[ray]'``): each trial is a Ray task with
  ``num_cpus=1`` that runs it under one torch thread; the shared context is put in Ray's object
  store once (``ray.put``) and ``next_done`` is ``ray.wait``. At most ``workers`` trials are in
  flight. When Ray is already initialised (``ray.init`` called by you) or ``RAY_ADDRESS`` names
  a cluster, the runner uses that; otherwise it starts a local node with ``workers`` CPUs (one
  per free core by default) and shuts it down in ``close()``. Ray pickles the context instead of
  forking: a model, data or loss from ``my_model.py:build`` is sent by value (that file need not
  exist on the workers), but the modules it imports must be importable there. Ray 2.60 has no
  ``local_mode``; the tests start a real local node, which took 2-4 s (shutdown ~1.3 s) on the
  2-core machine this was built on.

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
import sys
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

import torch

from gradmedic._callspec import USER_MODULE_PREFIX
from gradmedic.errors import ConfigError, GradmedicError, unknown_name
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
    "RayRunner",
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


#: The one line ``--executor ray`` gives when Ray is not installed.
NO_RAY = "--executor ray needs Ray, which is not installed: pip install 'gradmedic[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(NO_RAY) from None
    return ray


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


_RAY_CONTEXT: dict[str, TrialContext] = {}  # a Ray worker's copy of the context, by object id


def _run_on_ray(box: list[Any], trial: Trial) -> TrialOutcome:
    """The Ray task: fetch the shared context (once per worker process) and run the trial.
    ``box`` holds the context's ObjectRef, so that Ray does not resolve it before this runs and
    a context that cannot be loaded on the worker is told in one line."""
    import ray

    ref = box[0]
    key = ref.hex()
    if key not in _RAY_CONTEXT:
        try:
            ctx = ray.get(ref)
        except Exception as exc:  # RaySystemError: client_exc is the unpickling error (or text)
            cause = getattr(exc, "cause", None) or getattr(exc, "client_exc", None) or exc
            detail = _one_line(cause) if isinstance(cause, BaseException) else str(cause)
            raise ConfigError(
                f"a Ray worker could not load the model, data and loss ({detail}); "
                "every module they import must be installed on the workers, or use "
                "--executor process"
            ) from None
        _RAY_CONTEXT.clear()
        _RAY_CONTEXT[key] = ctx
    with one_thread():
        return run_trial(_RAY_CONTEXT[key], trial)


class RayRunner:
    """Runs trials as Ray tasks, at most ``workers`` at a time (see the module docstring)."""

    def __init__(self, ctx: TrialContext, workers: int | None) -> None:
        ray = self._ray = _import_ray()
        self._started = not ray.is_initialized()
        if self._started:
            opts: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
            if not os.environ.get("RAY_ADDRESS"):  # a local node of our own
                opts.update(num_cpus=workers or free_cores(), include_dashboard=False)
            try:
                ray.init(**opts)
            except Exception as exc:
                raise ConfigError(
                    f"--executor ray could not start or reach Ray ({_one_line(exc)}); check "
                    "RAY_ADDRESS and `ray status`, or use --executor process"
                ) from None
        try:
            cluster = int(ray.cluster_resources().get("CPU", 1))
            self.workers = max(1, workers or cluster)
            for name, module in list(sys.modules.items()):
                if name.startswith(USER_MODULE_PREFIX):
                    ray.cloudpickle.register_pickle_by_value(module)
            try:
                self._box = [ray.put(ctx)]
            except Exception as exc:
                raise ConfigError(
                    f"--executor ray cannot send the model, data and loss to Ray "
                    f"({_one_line(exc)}); use --executor process, which forks instead"
                ) from None
            self._task = ray.remote(num_cpus=1, max_retries=0)(_run_on_ray)
        except BaseException:
            self._shutdown()
            raise
        self._queue: collections.deque[Trial] = collections.deque()
        self._running: dict[Any, Trial] = {}

    def _fill(self) -> None:
        while self._queue and len(self._running) < self.workers:
            trial = self._queue.popleft()
            self._running[self._task.remote(self._box, trial)] = trial

    def submit(self, trial: Trial) -> None:
        self._queue.append(trial)
        self._fill()

    def next_done(self) -> TrialOutcome:
        (ref,), _ = self._ray.wait(list(self._running), num_returns=1)
        self._running.pop(ref)
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as exc:
            cause = exc.cause  # the trial's own error (run_trial lets the primary's propagate)
            if isinstance(cause, GradmedicError):
                raise cause from None
            raise cause from exc
        finally:
            self._fill()

    def pending(self) -> int:
        return len(self._queue) + len(self._running)

    def close(self) -> None:
        self._queue.clear()
        for ref in self._running:
            self._ray.cancel(ref, force=True)
        self._running.clear()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


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
    free core; for ``ray`` on a cluster, its CPU count). Raises UnknownNameError for an unknown
    executor, ConfigError for ``workers < 1`` and for ``ray`` when Ray is missing, cannot start
    or cannot take the context."""
    if executor not in EXECUTORS:
        raise unknown_name("executor", executor, EXECUTORS)
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}; e.g. --workers 4")
    if executor == "ray":
        return RayRunner(ctx, workers)
    n = workers if workers is not None else free_cores()
    fork = "fork" in multiprocessing.get_all_start_methods()
    if executor == "serial" or not fork or (executor == "auto" and n < 2):
        return SerialRunner(ctx)
    return ProcessRunner(ctx, max(1, n))
