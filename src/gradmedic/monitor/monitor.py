"""The gradient-flow Monitor: the lifecycle (attach/detach), the per-step plan of which probes
run (module hooks exist only on recorded steps), step counting, the one host transfer of a
recorded step and the trace. What is measured lives in ``gradmedic.monitor.probes``. With the
same seed, training is bit-identical with and without the Monitor.

Example::

    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> with Monitor(model, optimizer=opt) as mon:
    ...     for _ in range(3):
    ...         opt.zero_grad()
    ...         loss = model(torch.randn(8, 4)).pow(2).mean()
    ...         loss.backward()
    ...         mon.observe(loss)
    ...         opt.step()
    >>> sorted(mon.frame()["quantity"].unique())[:3]
    ['act_mean', 'act_std', 'dead_frac']
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from gradmedic.errors import ConfigError, ModelError
from gradmedic.monitor.dispatch import ModuleDispatch
from gradmedic.monitor.distributed import DistSync, parallel_metadata
from gradmedic.monitor.hooks import Hooks, ModuleSelector, select_modules
from gradmedic.monitor.passes import PassGuard
from gradmedic.monitor.probes import (
    ActivationProbe,
    NonFiniteProbe,
    ParamsProbe,
    Probe,
    RnnProbe,
    SignalProbe,
    StepProbe,
    amp_scale,
)
from gradmedic.monitor.probes.attention_logits import AttentionLogitsProbe
from gradmedic.monitor.probes.base import to_host
from gradmedic.monitor.probes.step import wrap_scaler_update
from gradmedic.monitor.runinfo import ModuleRow, module_rows, run_metadata
from gradmedic.monitor.schedule import Schedule, ScheduleLike
from gradmedic.trace import SCHEMA_VERSION, Row, Trace, TraceWriter, frame_from_rows, read_trace
from gradmedic.trace.sinks import Sink, Sinks

__all__ = ["Monitor"]


class Monitor(ModuleDispatch):
    """Record gradient flow of ``model`` during training, with hooks it owns and always removes.

    What is hooked (``gradmedic.monitor.dispatch``): every leaf module and every module that
    computes on its own (``nn.MultiheadAttention``) is measured; every other module with
    children, the model itself included, is watched for where a NaN is born; functional layers
    (a bare parameter in ``x @ W.T``, ``torch.sigmoid`` in ``forward``) are measured under
    pseudo-module names (``gradmedic.monitor.functional``). A step abandoned by an exception
    in forward, backward or ``optimizer.step()`` is discarded at the next forward
    (``gradmedic.monitor.passes``; :meth:`discard_step` does it by hand).

    Args:
        model: any ``nn.Module``.
        optimizer: when given, steps are counted by the optimizer's own step hooks (so gradient
            accumulation records once per optimizer step) and ``update_ratio`` is measured.
            Without it call :meth:`step` once per training step, after ``backward``.
        trace: path of a SQLite trace (crash-safe); ``None`` keeps rows in memory. An existing
            trace is appended to: its steps are kept, this run's steps continue after its last
            one, and the attachment is added to ``meta["runs"]``. Only one writer at a time:
            a trace another Monitor or process is writing is refused (``TraceError``).
        overwrite: replace an existing trace instead of appending to it (default False).
        every: record every k-th step (default 20). Recording everything costs about a
            quarter of a training step on a 20-layer MLP of 512-wide layers and on a small
            conv net, an eighth on an LSTM; a step that records nothing reads every gradient
            once for the every-step curve (1-2%). Every 20th step keeps the average at 1.02-
            1.06x (benchmarks/RESULTS.md). ``every=1`` records all; or pass ``schedule``.
        schedule: what steps to record (gradient norms and backward signals); overrides ``every``.
        activations: of the recorded steps, those with activation statistics (default: all).
        rnn_time: of the recorded steps, those with RNN ``input_grad_t`` profiles (default: all).
        rnn_hidden: of the recorded steps, those with exact ``hidden_grad_t`` profiles by
            unrolling (default: none).
        modules: which modules to measure: ``None`` = leaves, modules that compute on their own
            and functional layers (see above); glob(s) on qualified names (``"layers.*"``)
            and/or module types (``nn.Linear``): those alone (the root is still watched).
        signal: measure the backward signal and gains (default True).
        weights: record parameter norms and, with an optimizer, update ratios (default True).
        nonfinite: watch for NaN/Inf (default True); see ``probes.nonfinite``.
        halt_on_nonfinite: raise :class:`NonFiniteError` at the step where a value went non-finite.
        scaler: an AMP ``GradScaler``; backward signals are divided by its scale and the trace
            marks them unscaled (``meta.amp``).
        metadata: extra run metadata (seed, command, ...) written to the trace.
        sinks: objects with ``write(step, scalars)`` and ``close()``
            (:class:`gradmedic.trace.sinks.Sink`), given the step's scalars (global gradient
            norm, loss, non-finite events, signal ratio, worst layer: ``sinks.TAGS``) after
            each recorded step and closed at detach; errors are warned once.

    Raises:
        ModelError: ``model`` is not an ``nn.Module``, or (at attach) it has no parameters.
        ConfigError: a bad schedule, sink, or ``modules`` selector matching nothing (at attach).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        trace: str | Path | None = None,
        every: int = 20,
        schedule: ScheduleLike = None,
        activations: ScheduleLike | None = None,
        rnn_time: ScheduleLike | None = None,
        rnn_hidden: ScheduleLike = False,
        modules: ModuleSelector = None,
        signal: bool = True,
        weights: bool = True,
        nonfinite: bool = True,
        halt_on_nonfinite: bool = False,
        scaler: Any | None = None,
        metadata: dict[str, Any] | None = None,
        sinks: Iterable[Sink] = (),
        overwrite: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ModelError(
                f"Monitor needs a torch.nn.Module, got {type(model).__name__}; pass your model"
            )
        self.model = model
        self.optimizer = optimizer
        self.schedule = Schedule.coerce(schedule if schedule is not None else every)
        self.halt_on_nonfinite = halt_on_nonfinite
        self.scaler = scaler
        self.step_index = 0
        self.events: list[dict[str, Any]] = []
        self._selector = modules
        self._metadata = dict(metadata or {})
        self._trace_path = Path(trace) if trace is not None else None
        self._writer: TraceWriter | None = None
        self._overwrite = overwrite
        self._sinks = Sinks(sinks)
        self._rows: list[Row] = []
        self._hooks = Hooks()
        self._attached = False
        self._selected: list[tuple[str, nn.Module]] | None = None
        self._modules_at_attach: list[ModuleRow] = []
        self._modules_now: list[ModuleRow] = []
        self._meta_at_attach: dict[str, Any] = {}
        self._meta_extra: dict[str, Any] = {}
        self._hooked: list[tuple[str, nn.Module]] = []
        self._watch_only: set[str] = set()
        self._fn = self._fn_live = None
        self._root_live = False
        self._per_module: bool | None = None  # which module hooks are installed (None: none)
        self._guard = PassGuard(lambda: [p for *_, p in self._params.names])
        # iterations whose optimizer.step() a GradScaler skipped still count (issue 12)
        self._stepped = self._skipping = False
        self._unwrap_scaler: Any = None
        # the probes, in the order their rows are written (nonfinite reads params and signal)
        self._step = StepProbe()
        self._params = ParamsProbe(weights)
        self._signal = SignalProbe(signal)
        self._nonfinite = NonFiniteProbe(
            model, self.events, self._emit, self._params, self._signal, self._step,
            enabled=nonfinite, halt=halt_on_nonfinite,
        )  # fmt: skip
        self._nonfinite.emit_curve = self._emit_trace  # every-step curves: trace, not sinks
        self._acts = ActivationProbe(self._sub_schedule(activations))
        self._probes: list[Probe] = [
            self._step,
            self._params,
            self._signal,
            self._acts,
            RnnProbe(self._sub_schedule(rnn_time), Schedule.coerce(rnn_hidden)),
            AttentionLogitsProbe(),
            self._nonfinite,
        ]
        self._dist = DistSync.maybe(self._acts, self.events)  # torch.distributed: one gather
        if self._dist is not None:
            self._probes.append(self._dist.probe)
            if self._dist.rank != 0:  # rank 0 alone writes the trace and the sinks
                self._trace_path, self._sinks = None, Sinks(())
        self._plan_step()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Monitor:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def attach(self) -> Monitor:
        """Register the hooks (and open the trace). Idempotent; returns ``self``."""
        if self._attached:
            return self
        self._params.bind(self.model, [], self._hooks)  # no parameters: ModelError, first
        selected = select_modules(self.model, self._selector)
        for probe in self._probes:
            if probe is not self._params:
                probe.bind(self.model, selected, self._hooks)
        self._selected = selected
        try:
            # the structure and init statistics as they are now, before any update
            self._modules_at_attach = module_rows(self.model)
            self._meta_at_attach = self._run_metadata()
            self._bind_structure(selected)
            self._guard.reset()
            self._sinks.set_modules(self._modules_at_attach)  # signal_ratio needs the layers
            if self._trace_path is not None:
                self._writer = TraceWriter(self._trace_path, overwrite=self._overwrite)
                self._overwrite = False  # a re-attach appends to what this run wrote
                # an appended run continues the step numbers of the trace
                self.step_index = max(self.step_index, self._writer.next_step)
                self._writer.set_meta(self._meta_at_attach)
                self._writer.set_modules(self._modules_at_attach)
            self._plan_step()  # installs the module hooks if this step records
            if self.optimizer is not None:
                self._hooks.install_optimizer(self.optimizer, self._opt_pre, self._opt_post)
                if self.scaler is not None and hasattr(self.scaler, "update"):
                    self._unwrap_scaler = wrap_scaler_update(self.scaler, self._scaler_update)
        except BaseException:
            self._hooks.remove_all()
            self._selected = None
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            raise
        self._attached = True
        return self

    def detach(self) -> None:
        """Remove every hook of ours (module, optimizer and tensor hooks), close the trace and
        the sinks. Safe to call after an exception in the user's forward or backward, and more
        than once."""
        if self._fn is not None:
            self._fn.end_pass()  # pops our function mode if a forward left it behind
        self._fn_live = None
        self._hooks.remove_all()
        if self._unwrap_scaler is not None:
            self._unwrap_scaler()
            self._unwrap_scaler = None
        self._selected = None
        self._reset_step()
        self._nonfinite.flush()
        if self._writer is not None:
            self._writer.set_meta({"finished": time.time(), "steps": self.step_index})
            self._writer.close()
            self._writer = None
        if self._attached:
            self._sinks.close()
        self._attached = False

    # ------------------------------------------------------------------ per-step plan
    def _sub_schedule(self, value: ScheduleLike | None) -> Schedule:
        return self.schedule if value is None else Schedule.coerce(value)

    def _plan_step(self) -> None:
        """Decide once per step which probes run, so hooks only loop over active ones."""
        self._recording = self.schedule(self.step_index)
        active = [p for p in self._probes if p.plan(self.step_index, self._recording)]
        self._pre = [p for p in active if _overrides(p, "pre_forward")]
        self._fwd = [p for p in active if _overrides(p, "forward")]
        self._inputs = [p for p in active if _overrides(p, "wants_input")]
        self._any_pre = bool(self._pre or self._inputs)
        # module hooks only when a probe measures modules this step (gradient norms alone
        # need none); the root's hooks (step guard, output) whenever the step records
        per_module = any(p.needs_modules() for p in {*self._pre, *self._fwd, *self._inputs})
        if self._recording and self._selected:
            if self._per_module != per_module:
                self._hooks.remove_modules()
            hooked = self._hooked if per_module else []
            self._hooks.install_modules(
                hooked, self._pre_hook, self._fwd_hook, root=self._root_hooks()
            )
            self._fn_live = self._fn if per_module else None
            self._per_module = per_module
        else:
            self._hooks.remove_modules()
            self._fn_live = None
            self._per_module = None

    def _reset_step(self) -> None:
        self._drop_step_state()
        self._guard.reset()

    # ------------------------------------------------------------------ stepping
    def observe(self, loss: torch.Tensor | float) -> None:
        """Record the loss of the current step (no host sync: read at the step's end)."""
        self._step.observe(loss)

    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """End the current training step (call once per step, after backward).

        Only for use without ``optimizer=``; with an optimizer, steps end by themselves.

        Raises:
            ConfigError: the Monitor was given an optimizer.
            NonFiniteError: with ``halt_on_nonfinite``, when this step went non-finite.
        """
        if self.optimizer is not None:
            raise ConfigError(
                "this Monitor was given the optimizer and ends steps by itself at "
                "optimizer.step(); do not also call monitor.step()"
            )
        if loss is not None:
            self.observe(loss)
        self._finish_step()

    def _opt_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._guard.step_begins()
        self._params.before_optimizer_step()

    def _opt_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._stepped = True
        self._finish_step()

    def _scaler_update(self) -> None:
        """Before ``GradScaler.update()``: an iteration without ``optimizer.step()`` was
        skipped by the scaler; it ends here as its own step, marked skipped."""
        if not self._stepped:
            self._skipping = True
            self._finish_step()
        self._stepped = False

    def _finish_step(self) -> None:
        step = self.step_index
        try:
            self._step.skipped = self._nonfinite.skipped = skipped = self._skipping
            if self._recording:
                self._record(step)
            else:
                self._nonfinite.sentinel(step, self._step.losses, amp_scale(self.scaler), skipped)
        finally:
            self._skipping = False
            self._reset_step()
            self.step_index += 1
            self._plan_step()

    def _record(self, step: int) -> None:
        active = [p for p in self._probes if p.on]
        scale = amp_scale(self.scaler)
        reads = [p.read(scale) for p in active]
        if self._dist is not None:  # global-batch values: one collective, still on the device
            reads = self._dist.reduce(active, reads)
        values = to_host([t for r in reads for t in r])  # the one host synchronisation
        rows: list[Row] = []
        pos = 0
        for probe, r in zip(active, reads, strict=True):
            n = sum(t.numel() for t in r)
            probe.rows(step, values[pos : pos + n], rows)
            pos += n
        self._after_record(step, rows)  # first: the sinks' ratio needs the new module table
        self._emit(rows)
        self._nonfinite.raise_if_halting()

    def _emit(self, rows: list[Row]) -> None:
        self._emit_trace(rows)
        self._sinks.write_rows(rows)

    def _emit_trace(self, rows: list[Row]) -> None:
        if self._writer is not None:
            self._writer.append(rows)
        else:
            self._rows.extend(rows)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue this one, as JSON-able values: ``step_index``
        (the number the next step gets), ``trace`` (its path or None), ``schedule`` (repr).
        Save it with the model's checkpoint; :meth:`load_state_dict` takes it back.

        Example::

            >>> Monitor(torch.nn.Linear(2, 1)).state_dict()["step_index"]
            0
        """
        trace = None if self._trace_path is None else str(self._trace_path)
        return {"step_index": self.step_index, "trace": trace, "schedule": repr(self.schedule)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the step numbering of a saved run: the next step is numbered
        ``state["step_index"]``, or later when this Monitor (or the trace it appends to)
        already went past it, so a resumed run never repeats a step number. Call it between
        steps, before or after :meth:`attach`.

        Raises:
            ConfigError: ``state`` has no non-negative integer ``step_index``.
        """
        try:
            step = int(state["step_index"])
        except (KeyError, TypeError, ValueError):
            step = -1
        if step < 0:
            raise ConfigError(
                "load_state_dict takes the dict of Monitor.state_dict() (with a non-negative "
                f"'step_index'); got {state!r:.80}"
            )
        self.step_index = max(self.step_index, step)
        self._plan_step()

    # ------------------------------------------------------------------ results
    def frame(self) -> pd.DataFrame:
        """All recorded rows as a long DataFrame (step, module, parameter, quantity, idx, value)."""
        return self.trace().frame

    def trace(self) -> Trace:
        """The recorded trace (read back from disk when a trace file is used)."""
        if self._trace_path is not None and (self._writer is not None or self._trace_path.exists()):
            return read_trace(self._trace_path)  # WAL: readable while writing
        meta = dict(self._meta_at_attach or self._run_metadata())
        meta.update(schema_version=SCHEMA_VERSION, steps=self.step_index, **self._meta_extra)
        rows = self._modules_now or self._modules_at_attach or module_rows(self.model)
        mods = pd.DataFrame(rows, columns=["ord", "name", "type", "activation", "n_params", "info"])
        return Trace(frame=frame_from_rows(self._rows), modules=mods, meta=meta)

    def _run_metadata(self) -> dict[str, Any]:
        params = [p for *_, p in self._params.names]
        extra = {"amp": self.scaler is not None, "schedule": repr(self.schedule)}
        extra.update(parallel_metadata(self.model))
        return run_metadata(self.model, params, {**extra, **self._metadata})


def _overrides(probe: Probe, method: str) -> bool:
    return getattr(type(probe), method) is not getattr(Probe, method)
