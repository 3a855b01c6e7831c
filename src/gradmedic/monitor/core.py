"""The gradient-flow Monitor.

Backpropagation multiplies per-layer factors (article section 1.1; Glorot & Bengio 2010,
eq. 6): the gradient that reaches layer ``l``'s input is the one at its output times the
layer's Jacobian, ``dL/dx_l = J_l^T dL/dy_l``. The Monitor measures, per recorded step:

* ``grad_norm``, ``param_norm`` and ``update_ratio`` ``||dW|| / ||W||`` per parameter, and the
  module aggregate ``grad_norm`` (root of the summed squares over the module's own parameters);
* the backward signal ``signal_out = ||dL/dy_l||`` at each module's output, ``signal_in =
  ||dL/dx_l||`` at its input and the gain ``alpha_l = signal_in / signal_out``; over a chain
  of L layers the gains multiply to the end-to-end ratio (``0.9**20 = 0.1216``);
* activation statistics of activation modules: mean ``phi'(x)`` and ``phi'(x)^2``, saturated
  fraction (``|phi'| < 1%`` of its maximum), dead fraction (units zero for every sample of
  the batch), mean/std of the output and the mean square of the pre-activation ``q``;
* for nn.RNN / nn.LSTM / nn.GRU the gradient reaching every time step: ``input_grad_t =
  ||dL/dx_t||`` (always, cheap) and, on request, ``hidden_grad_t = ||dL/dh_t||`` by unrolling
  the cell with the weights of that forward pass (Pascanu, Mikolov & Bengio 2013);
* the first module whose output (forward order) or output gradient (backward order) is not
  finite.

The gain at a module measures that module's own contribution: ``signal_in`` is the
vector-Jacobian product through the module alone, even when its input also feeds a skip
connection (the Monitor gives the module a private view of its input). For a residual block
``y = x + F(x)`` hooked as one module the gain is that of the whole block, identity included.

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

import fnmatch
import functools
import json
import math
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from gradmedic._version import __version__
from gradmedic.errors import ConfigError, GradmedicError, ModelError
from gradmedic.monitor.rnn import RNN_TYPES, unrolled_hidden_grads
from gradmedic.monitor.schedule import Schedule, ScheduleLike
from gradmedic.nn.activations import SATURATION_FRACTION, derivative_for, is_activation
from gradmedic.nn.modelinfo import module_facts
from gradmedic.trace import SCHEMA_VERSION, Row, Trace, TraceWriter, frame_from_rows, read_trace

__all__ = ["Monitor", "NonFiniteError"]


class NonFiniteError(GradmedicError):
    """Raised at the end of a step when ``halt_on_nonfinite=True`` and a value was not finite."""


ModuleSelector = str | type | Sequence[str | type] | None


def _tensors(obj: Any) -> list[torch.Tensor]:
    """Floating-point tensors in a (nested) output."""
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() or obj.is_complex() else []
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


#: Tensors up to this size always get their norm in float64 (cheap); larger ones in float32
#: once their previous record showed a signal far from float32's underflow.
_WIDE_NORM_MAX = 1 << 12
#: Entries used for activation statistics (the first samples of the batch); dead units use all.
_STATS_MAX = 1 << 18


def _norm(g: torch.Tensor, wide: bool = True) -> torch.Tensor:
    """L2 norm. In float64 a vanished signal of 1e-30 per entry does not square to 0; float32
    (8x cheaper on a large feature map) is used only where the last record was above 1e-8."""
    g = g.detach()
    if wide or g.numel() <= _WIDE_NORM_MAX:
        return torch.linalg.vector_norm(g, dtype=torch.float64)
    return torch.linalg.vector_norm(g).double()


def _head(t: torch.Tensor) -> torch.Tensor:
    """At most ``_STATS_MAX`` entries of ``t``, as whole leading samples (a view, no copy)."""
    n = t.numel()
    if n <= _STATS_MAX or t.dim() < 2:
        return t.reshape(-1)
    keep = max(1, _STATS_MAX * t.shape[0] // n)
    return t[:keep].reshape(-1)


class Monitor:
    """Record gradient flow of ``model`` during training, with hooks it owns and always removes.

    Args:
        model: any ``nn.Module``.
        optimizer: when given, steps are counted by the optimizer's own step hooks (so gradient
            accumulation records once per optimizer step) and ``update_ratio`` is measured.
            Without it call :meth:`step` once per training step, after ``backward``.
        trace: path of a SQLite trace to append to (crash-safe); ``None`` keeps rows in memory.
        every: record every k-th step (default 20). A recorded step costs about half a
            training step on a deep MLP of small layers (hooks, norms, activation statistics),
            a few percent on conv nets and LSTMs; every 20th step keeps the average within the
            5% budget (benchmarks/RESULTS.md). ``every=1`` records all; or pass ``schedule``.
        schedule: what steps to record gradient norms and backward signals (overrides ``every``).
        activations: schedule of activation statistics (default: same as ``schedule``).
        rnn_time: schedule of RNN ``input_grad_t`` profiles (default: same as ``schedule``).
        rnn_hidden: schedule of exact ``hidden_grad_t`` profiles by unrolling (default never).
        modules: which modules to hook: ``None`` = all leaf modules; glob(s) on qualified names
            (``"layers.*"``) and/or module types (``nn.Linear``).
        signal: measure the backward signal and gains (default True).
        weights: record parameter norms and, with an optimizer, update ratios (default True).
        nonfinite: watch for NaN/Inf (default True). Recorded steps name the first module in
            forward order whose output, and the first in backward order whose gradient, is not
            finite. Every other step keeps one fused gradient-norm check on the device (no host
            sync); the first bad step is read at the next recorded step or at detach.
        halt_on_nonfinite: raise :class:`NonFiniteError` at the step where a value went non-finite.
        scaler: an AMP ``GradScaler``; backward signals are divided by its scale and the trace
            marks them unscaled (``meta.amp``).
        metadata: extra run metadata (seed, command, ...) written to the trace.
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
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ModelError(
                f"Monitor needs a torch.nn.Module, got {type(model).__name__}; pass your model"
            )
        self.model = model
        self.optimizer = optimizer
        self.schedule = Schedule.coerce(schedule if schedule is not None else every)
        self.act_schedule = self.schedule if activations is None else Schedule.coerce(activations)
        self.rnn_schedule = self.schedule if rnn_time is None else Schedule.coerce(rnn_time)
        self.hidden_schedule = Schedule.coerce(rnn_hidden)
        self.signal = signal
        self.weights = weights
        self._snap_bufs: list[torch.Tensor] = []
        self._snap_ids: list[int] = []
        self.nonfinite = nonfinite
        self.halt_on_nonfinite = halt_on_nonfinite
        self.scaler = scaler
        self._selector = modules
        self._metadata = dict(metadata or {})
        self._trace_path = Path(trace) if trace is not None else None
        self._writer: TraceWriter | None = None
        self._rows: list[Row] = []
        self._handles: list[Any] = []
        self._tensor_handles: list[Any] = []
        self._attached = False
        self.step_index = 0
        self.events: list[dict[str, Any]] = []
        self._module_handles: list[Any] = []
        self._selected: list[tuple[str, nn.Module]] | None = None
        self._first_bad: torch.Tensor | None = None
        self._in_nonfinite = False
        self._f32_ok: set[tuple[str, str]] = set()
        self._g32_ok: set[tuple[str, str]] = set()
        self._plan_step()
        self._param_names: list[tuple[str, str, nn.Parameter]] = []
        self._modules_at_attach: list[tuple[int, str, str, str | None, int, str]] = []
        self._meta_at_attach: dict[str, Any] = {}
        self._reset_step()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Monitor:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def attach(self) -> Monitor:
        """Register the hooks. Idempotent; returns ``self``."""
        if self._attached:
            return self
        seen: set[int] = set()
        self._param_names = []
        for mname, module in self.model.named_modules():
            for pname, p in module.named_parameters(recurse=False):
                if id(p) in seen:  # tied weights: counted once, under the first owner
                    continue
                seen.add(id(p))
                self._param_names.append((mname, pname, p))
        if not self._param_names:
            raise ModelError(
                f"{type(self.model).__name__} has no parameters; the Monitor measures gradients "
                "of trainable parameters, so give it a model that has some"
            )
        selected = self._select_modules()
        self._kinds = {n: (is_activation(m), isinstance(m, RNN_TYPES)) for n, m in selected}
        self._trainable = {n: any(p.requires_grad for p in m.parameters()) for n, m in selected}
        self._derivs = {n: derivative_for(m) for n, m in selected if is_activation(m)}
        self._channel_first = _channel_first_activations(self.model)
        self._selected = selected
        try:
            self._plan_step()  # installs the module hooks if this step needs them
            if self.optimizer is not None:
                self._handles.append(self.optimizer.register_step_pre_hook(self._opt_pre))
                self._handles.append(self.optimizer.register_step_post_hook(self._opt_post))
            # the structure and init statistics as they are now, before any update
            self._modules_at_attach = self._module_rows()
            self._meta_at_attach = self._run_metadata()
            if self._trace_path is not None:
                self._writer = TraceWriter(self._trace_path)
                self._writer.set_meta(self._meta_at_attach)
                self._writer.set_modules(self._modules_at_attach)
        except BaseException:
            self._remove_hooks()
            raise
        self._attached = True
        return self

    def detach(self) -> None:
        """Remove every hook of ours (module, optimizer and tensor hooks) and close the trace.

        Safe to call after an exception in the user's forward or backward, and more than once.
        """
        self._remove_hooks()
        self._reset_step()
        self._flush_sentinel()
        if self._writer is not None:
            self._writer.set_meta({"finished": time.time(), "steps": self.step_index})
            self._writer.close()
            self._writer = None
        self._attached = False

    def _remove_hooks(self) -> None:
        for h in self._handles + self._tensor_handles + self._module_handles:
            h.remove()
        self._handles.clear()
        self._tensor_handles.clear()
        self._module_handles.clear()
        self._selected = None

    def _set_module_hooks(self, on: bool) -> None:
        """Module hooks exist only on steps that record something: other steps run the model
        exactly as without the Monitor (PyTorch's fast path for modules without hooks)."""
        if on and not self._module_handles and self._selected:
            for name, module in self._selected:
                self._module_handles.append(
                    module.register_forward_pre_hook(functools.partial(self._pre_hook, name))
                )
                self._module_handles.append(
                    module.register_forward_hook(functools.partial(self._fwd_hook, name))
                )
        elif not on and self._module_handles:
            for h in self._module_handles:
                h.remove()
            self._module_handles.clear()

    # ------------------------------------------------------------------ selection
    def _select_modules(self) -> list[tuple[str, nn.Module]]:
        sel = self._selector
        items = list(self.model.named_modules())
        if sel is None:
            return [(n, m) for n, m in items if not any(True for _ in m.children())]
        sels = [sel] if isinstance(sel, (str, type)) else list(sel)
        globs = [s for s in sels if isinstance(s, str)]
        types = tuple(s for s in sels if isinstance(s, type))
        bad = [s for s in sels if not isinstance(s, (str, type))]
        if bad:
            raise ConfigError(
                f"modules= takes glob strings and nn.Module types, got {bad!r}; "
                "e.g. modules=['encoder.*', torch.nn.Linear]"
            )
        out = [
            (n, m)
            for n, m in items
            if (types and isinstance(m, types)) or any(fnmatch.fnmatchcase(n, g) for g in globs)
        ]
        if not out:
            names = ", ".join(n for n, _ in items if n)[:300]
            raise ConfigError(
                f"modules={sel!r} matches no module of {type(self.model).__name__}; "
                f"module names are: {names}"
            )
        return out

    # ------------------------------------------------------------------ per-step state
    def _reset_step(self) -> None:
        for h in getattr(self, "_tensor_handles", []):
            h.remove()
        self._tensor_handles = []
        self._sig_out: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._sig_in: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._calls: dict[str, int] = defaultdict(int)
        self._act: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._pending_pre: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._rnn_t: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._rnn_capture: dict[str, dict[str, Any]] = {}
        self._fwd_flags: list[tuple[str, torch.Tensor]] = []
        self._bwd_order: list[tuple[str, torch.Tensor]] = []
        self._losses: list[torch.Tensor] = []
        self._snapshot: list[torch.Tensor] | None = None

    def _plan_step(self) -> None:
        """Decide once per step what to record, so hooks only test booleans."""
        step = self.step_index
        self._rec = self.schedule(step)
        self._act_on = self.act_schedule(step)
        self._rnn_on = self._rec or self.rnn_schedule(step)
        self._hidden_on = self.hidden_schedule(step)
        self._any_pre = (self._rec and self.signal) or self._act_on or self._rnn_on
        self._any_pre = self._any_pre or self._hidden_on
        self._set_module_hooks(self._any_pre or self._rec)

    def _recording(self) -> bool:
        return self._rec

    # ------------------------------------------------------------------ hooks
    def _pre_hook(self, name: str, module: nn.Module, args: tuple) -> tuple | None:
        if not (self._any_pre and torch.is_grad_enabled()):
            return None
        is_act, is_rnn = self._kinds[name]
        if is_act and self._act_on and args and isinstance(args[0], torch.Tensor):
            self._pre_activation_stats(name, module, args[0])
        if is_rnn and self._hidden_on:
            self._capture_rnn(name, module, args)
        rnn = is_rnn and self._rnn_on
        if not ((self._rec and self.signal) or rnn):
            return None
        inplace = bool(getattr(module, "inplace", False))
        new_args = list(args)
        changed = False
        for i, a in enumerate(args):
            if not isinstance(a, torch.Tensor) or not a.is_floating_point():
                continue
            seq = rnn and i == 0  # the time profile comes from the input sequence, not h0
            if inplace:
                if a.requires_grad:  # a hook before the in-place op sees dL/d(input)
                    self._hook_tensor(a, name, "in", module, seq)
                continue
            if not a.requires_grad and not self._trainable[name]:
                continue  # never pull a backward pass through a frozen part of the model
            a2 = a.view_as(a) if a.requires_grad else a.detach().requires_grad_(True)
            self._hook_tensor(a2, name, "in", module, seq)
            new_args[i] = a2
            changed = True
        return tuple(new_args) if changed else None

    def _fwd_hook(self, name: str, module: nn.Module, args: tuple, output: Any) -> None:
        if not torch.is_grad_enabled():
            return
        rec = self._rec
        self._calls[name] += 1
        outs = _tensors(output)
        if self.nonfinite and outs:
            # A float64 sum is NaN/Inf iff an entry is (float32 or half sums overflow on large
            # finite outputs): one reduction, read at the step's end with everything else.
            with torch.no_grad():
                probe = sum(t.detach().sum(dtype=torch.float64) for t in outs)
            self._fwd_flags.append((name, probe))
        if self._act_on and outs and self._kinds[name][0]:
            self._post_activation_stats(name, module, outs[0])
        if rec and self.signal:
            for t in outs:
                if t.requires_grad:
                    self._hook_tensor(t, name, "out", module, False)
        cap = self._rnn_capture.get(name)
        if cap is not None:
            grads = cap.setdefault("grads", {})
            for i, t in enumerate(outs):
                if t.requires_grad:
                    hook = functools.partial(grads.__setitem__, i)
                    self._tensor_handles.append(t.register_hook(lambda g, h=hook: h(g.detach())))

    def _hook_tensor(
        self, t: torch.Tensor, name: str, side: str, module: nn.Module, rnn_time: bool
    ) -> None:
        if side == "out":
            fn = functools.partial(self._on_out_grad, name)
        else:
            fn = functools.partial(self._on_in_grad, name, module if rnn_time else None)
        self._tensor_handles.append(t.register_hook(fn))

    def _on_out_grad(self, name: str, g: torch.Tensor) -> None:
        nrm = _norm(g, (name, "signal_out") not in self._f32_ok)
        self._sig_out[name].append(nrm)
        self._bwd_order.append((name, nrm))

    def _on_in_grad(self, name: str, rnn_module: nn.Module | None, g: torch.Tensor) -> None:
        if self._recording() and self.signal:
            nrm = _norm(g, (name, "signal_in") not in self._f32_ok)
            self._sig_in[name].append(nrm)
            self._bwd_order.append((name, nrm))
        if rnn_module is not None and g.dim() >= 2:
            gd = g.detach().double()
            if g.dim() == 2:  # unbatched (T, F)
                per_t = gd.square().sum(dim=1)
            elif getattr(rnn_module, "batch_first", False):
                per_t = gd.square().sum(dim=(0, 2))
            else:
                per_t = gd.square().sum(dim=(1, 2))
            self._rnn_t[name].append(per_t)

    def _pre_activation_stats(self, name: str, module: nn.Module, x: torch.Tensor) -> None:
        d = self._derivs.get(name)
        if d is None:
            return
        with torch.no_grad():
            xd = x.detach()
            xd = xd.float() if xd.dtype in (torch.float16, torch.bfloat16) else xd
            flat = _head(xd)
            n = flat.numel()
            if d.active is not None:  # phi' in {0, 1}: mean phi' = share active, saturated = rest
                mean = d.count_active(flat) / n
                stats = [mean, mean, 1 - mean]
            else:
                dphi = d.fn(flat)
                thr = SATURATION_FRACTION * d.max_slope
                stats = [dphi.sum() / n, torch.dot(dphi, dphi) / n, (dphi.abs() < thr).sum() / n]
            stats.append(torch.dot(flat, flat) / n)
        self._pending_pre[name].append(torch.stack(stats))

    def _post_activation_stats(self, name: str, module: nn.Module, y: torch.Tensor) -> None:
        pending = self._pending_pre.get(name)
        if not pending:
            return
        pre = pending.pop()
        with torch.no_grad():
            yd = y.detach()
            yd = yd.float() if yd.dtype in (torch.float16, torch.bfloat16) else yd
            # a dead unit is zero for every sample (and, in a feature map, every position)
            mag = yd if isinstance(module, _NONNEG) else yd.abs()
            if yd.dim() < 2:  # a batch of scalars: one unit
                peak = mag.amax(0, keepdim=True)
            elif self._channel_first.get(name) and yd.dim() > 2:
                peak = mag.amax(dim=[0, *range(2, yd.dim())])
            else:
                peak = mag.reshape(-1, yd.shape[-1]).amax(0)
            dead = (peak == 0).sum() / peak.numel()
            flat = _head(yd)
            n = flat.numel()
            mean = flat.sum() / n
            var = (torch.dot(flat, flat) / n - mean * mean).clamp_min(0) * (n / max(n - 1, 1))
            post = torch.stack([dead, mean, var.sqrt()])
        self._act[name].append(torch.cat([pre.to(post.dtype), post]))

    def _capture_rnn(self, name: str, module: nn.Module, args: tuple) -> None:
        if getattr(module, "bidirectional", False) or not args:
            return
        x = args[0]
        if not isinstance(x, torch.Tensor):  # PackedSequence: not supported for unrolling
            return
        hx = args[1] if len(args) > 1 else None
        detach = lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t  # noqa: E731
        self._rnn_capture[name] = {
            "module": module,
            "x": x.detach(),
            "hx": tuple(detach(h) for h in hx) if isinstance(hx, tuple) else detach(hx),
            "weights": {k: v.detach().clone() for k, v in module.named_parameters()},
        }

    # ------------------------------------------------------------------ stepping
    def observe(self, loss: torch.Tensor | float) -> None:
        """Record the loss of the current step (no host sync: read at the step's end)."""
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach().reshape(-1)[:1].float())
        else:
            self._losses.append(torch.tensor([float(loss)]))

    def _opt_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.weights and self._rec:
            params = [p for _, _, p in self._param_names if p.grad is not None]
            with torch.no_grad():
                if [id(p) for p in params] != self._snap_ids:
                    self._snap_bufs = [p.detach().clone() for p in params]
                    self._snap_ids = [id(p) for p in params]
                else:  # reuse the buffers: no allocation on the hot path
                    torch._foreach_copy_(self._snap_bufs, [p.detach() for p in params])
            self._snap_params = params
            self._snapshot = self._snap_bufs

    def _opt_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._finish_step()

    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """End the current training step (call once per step, after backward).

        Only for use without ``optimizer=``; with an optimizer, steps end by themselves.
        """
        if self.optimizer is not None:
            raise ConfigError(
                "this Monitor was given the optimizer and ends steps by itself at "
                "optimizer.step(); do not also call monitor.step()"
            )
        if loss is not None:
            self.observe(loss)
        self._finish_step()

    def _finish_step(self) -> None:
        step = self.step_index
        try:
            if self._recording():
                self._record(step)
            elif self.nonfinite:
                self._sentinel(step)
        finally:
            self._reset_step()
            self.step_index += 1
            self._plan_step()

    def _grads(self) -> list[tuple[str, str, torch.Tensor, torch.Tensor]]:
        return [(m, n, p, p.grad) for m, n, p in self._param_names if p.grad is not None]

    def _sentinel(self, step: int) -> None:
        """Unrecorded step: a NaN check over every gradient that stays on the device.

        One fused float32 norm over all gradients (and the observed losses); the first step
        whose result is NaN is kept in a device tensor and read at the next recorded step (or
        at detach): no host sync. Only NaN counts here - a float32 sum of squares overflows to
        Inf for finite gradients above ~1e19, which is an exploding gradient, not a non-finite
        one; recorded steps measure those exactly (float64 where needed). With
        ``halt_on_nonfinite`` the check is read at once, to stop at that step.
        """
        if self._in_nonfinite:  # already reported; re-armed by a finite record
            return
        grads = [g for *_, g in self._grads()]
        probes = [torch.stack(_foreach_norms(grads, [False] * len(grads))).sum()] if grads else []
        probes += [loss.double().reshape(()) for loss in self._losses]
        if not probes:
            return
        total = probes[0] if len(probes) == 1 else torch.stack(probes).sum()
        bad = torch.isnan(total)
        mark = torch.tensor(step, device=total.device)
        if self._first_bad is None or self._first_bad.device != total.device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=total.device)
        self._first_bad = torch.where(bad & (self._first_bad < 0), mark, self._first_bad)
        if self.halt_on_nonfinite and bool(bad):
            self._flush_sentinel()
            self._halt(step, None)

    def _flush_sentinel(self, value: float | None = None) -> None:
        """Turn a pending sentinel hit into an event (and a row)."""
        if self._first_bad is None:
            return
        first = int(self._first_bad) if value is None else int(value)
        self._first_bad = None
        if first >= 0:
            self._in_nonfinite = True
            self._add_event(
                first,
                "nonfinite_gradient",
                None,
                "a gradient was NaN/Inf on an unrecorded step; the module is named at the next "
                "recorded step (record every step to name it at once)",
            )
            self._emit(
                [
                    (first, "", "", "nonfinite_gradient", None, 1.0),
                    (first, "", "", "nonfinite", None, 1.0),
                ]
            )

    def _forward_detail(self, name: str) -> str:
        module = dict(self.model.named_modules()).get(name)
        params = list(module.parameters()) if module is not None else []
        if params and not all(bool(torch.isfinite(p).all()) for p in params):
            return (
                "first module whose output is NaN/Inf; its parameters are already non-finite, "
                "so an earlier update (a NaN gradient or an exploding step) put them there"
            )
        return _FWD_DETAIL

    def _record(self, step: int) -> None:
        items = self._grads()
        # Every quantity stays on the device as a few stacked vectors; one transfer at the end.
        blocks: list[tuple[list[tuple[str, str, str, int | None]], torch.Tensor]] = []

        def add(labels: list[tuple[str, str, str, int | None]], vec: torch.Tensor) -> None:
            blocks.append((labels, vec.reshape(-1).double()))

        if items:
            grads = [g for *_, g in items]
            # float64 where the last record was tiny (or on the first record): see _norm
            wide = [(m, n) not in self._g32_ok for m, n, _, _ in items]
            add(
                [(m, n, "grad_norm", None) for m, n, _, _ in items],
                torch.stack(_foreach_norms(grads, wide)),
            )
            if self.weights:
                params = [p.detach() for _, _, p, _ in items]
                add(
                    [(m, n, "param_norm", None) for m, n, _, _ in items],
                    torch.stack(_foreach_norms(params, [False] * len(params))),
                )
            if self._snapshot is not None:
                owner = {id(p): (m, n) for m, n, p in self._param_names}
                keys = [owner[id(p)] for p in self._snap_params]
                with torch.no_grad():
                    before = torch.stack(_foreach_norms(self._snapshot, [False] * len(keys)))
                    torch._foreach_sub_(self._snapshot, [p.detach() for p in self._snap_params])
                    delta = torch.stack(
                        _foreach_norms(self._snapshot, [k not in self._g32_ok for k in keys])
                    )
                labels = [(*k, "update_ratio", None) for k in keys]
                add(labels, delta / before.clamp_min(1e-30))
        scale = self._scale_tensor()
        for qty, store in (("signal_out", self._sig_out), ("signal_in", self._sig_in)):
            if store:
                names = list(store)
                vec = torch.stack([torch.stack(store[n]).square().sum() for n in names]).sqrt()
                add([(n, "", qty, None) for n in names], vec / scale if scale is not None else vec)
        for name, stats in self._act.items():
            add([(name, "", q, None) for q in _ACT_FIELDS], torch.stack(stats).mean(dim=0))
        for name, profiles in self._rnn_t.items():
            if len({p.shape for p in profiles}) == 1:
                prof = torch.stack(profiles).sum(dim=0).sqrt()
                labels = [(name, "", "input_grad_t", t) for t in range(prof.numel())]
                add(labels, prof / scale if scale is not None else prof)
        for name, cap in self._rnn_capture.items():
            if cap.get("grads") and not (cap["module"].training and cap["module"].dropout):
                full, last = unrolled_hidden_grads(cap)
                for qty, profiles in (("hidden_grad_t", full), ("hidden_grad_t_last", last)):
                    for layer, prof in enumerate(profiles):
                        labels = [(name, f"layer{layer}", qty, t) for t in range(prof.numel())]
                        add(labels, prof)
        if self._losses:
            add([("", "", "loss", None)], torch.stack(self._losses).mean())
        if self._first_bad is not None:  # a hit from an unrecorded step, read in this transfer
            add([("", "", "_first_bad", None)], self._first_bad.double())
        n_fwd, n_bwd = len(self._fwd_flags), len(self._bwd_order)
        tensors = [v for _, v in blocks]
        if n_fwd:
            tensors.append(torch.stack([f for _, f in self._fwd_flags]).float())
        if n_bwd:
            tensors.append(torch.stack([s for _, s in self._bwd_order]).float())

        values = _to_host(tensors)  # the one host synchronisation of this step
        n_main = len(values) - n_fwd - n_bwd
        fwd_probes = values[n_main : n_main + n_fwd]
        bwd_norms = values[n_main + n_fwd :]
        labels_all = [lab for labs, _ in blocks for lab in labs]
        rows: list[Row] = []
        mod_sq: dict[str, float] = defaultdict(float)
        sig: dict[tuple[str, str], float] = {}
        for (module, param, qty, idx), v in zip(labels_all, values[:n_main], strict=True):
            if qty == "_first_bad":
                self._flush_sentinel(v)
                continue
            rows.append((step, module, param, qty, idx, v))
            if qty == "grad_norm":
                mod_sq[module] += v * v
            elif qty in ("signal_in", "signal_out"):
                sig[(module, qty)] = v
        # float32 is safe between underflow (~1e-19 per entry) and overflow (~1e19 in norm)
        self._f32_ok = {k for k, v in sig.items() if 1e-8 < v < 1e15}
        self._g32_ok = {
            (m, p) for _, m, p, q, _, v in rows if q == "grad_norm" and p and 1e-8 < v < 1e15
        }
        for module, sq in mod_sq.items():
            rows.append((step, module, "", "grad_norm", None, math.sqrt(sq)))
        total_sq = sum(mod_sq.values())
        rows.append((step, "", "", "grad_norm_total", None, math.sqrt(total_sq)))
        for name, calls in self._calls.items():
            if (name, "signal_out") in sig and (name, "signal_in") in sig:
                out = sig[(name, "signal_out")]
                gain = sig[(name, "signal_in")] / out if out > 0 else math.nan
                rows.append((step, name, "", "gain", None, gain))
            if calls > 1:
                rows.append((step, name, "", "calls", None, float(calls)))
        if scale is not None:
            rows.append((step, "", "", "amp_unscaled", None, 1.0))
        self._check_nonfinite(step, fwd_probes, bwd_norms, rows, total_sq)
        self._emit(rows)

    def _check_nonfinite(
        self,
        step: int,
        fwd_flags: list[float],
        bwd_norms: list[float],
        rows: list[Row],
        total_sq: float,
    ) -> None:
        if not self.nonfinite:
            return
        fwd = next(
            (
                n
                for (n, _), v in zip(self._fwd_flags, fwd_flags, strict=True)
                if not math.isfinite(v)
            ),
            None,
        )
        bwd = next(
            (
                n
                for (n, _), v in zip(self._bwd_order, bwd_norms, strict=True)
                if not math.isfinite(v)
            ),
            None,
        )
        found = False
        if fwd is not None:
            self._add_event(step, "nonfinite_forward", fwd, self._forward_detail(fwd))
            rows.append((step, fwd, "", "nonfinite_forward", None, 1.0))
            found = True
        if bwd is not None:
            self._add_event(
                step,
                "nonfinite_backward",
                bwd,
                "first module whose input or output gradient is NaN/Inf in backward order",
            )
            rows.append((step, bwd, "", "nonfinite_backward", None, 1.0))
            found = True
        if not math.isfinite(total_sq):
            found = True
            if fwd is None and bwd is None:
                self._add_event(step, "nonfinite_gradient", None, "a parameter gradient")
        self._in_nonfinite = found
        if found:
            rows.append((step, "", "", "nonfinite", None, 1.0))
            if self.halt_on_nonfinite:
                self._emit(rows)
                self._halt(step, fwd or bwd)

    def _halt(self, step: int, where: str | None) -> None:
        raise NonFiniteError(
            f"non-finite value at step {step} in {where or 'a parameter gradient'}; lower the "
            "learning rate, clip gradients or fix the module that produced it (see the trace)"
        )

    def _add_event(self, step: int, kind: str, module: str | None, detail: str) -> None:
        self.events.append({"step": step, "kind": kind, "module": module, "detail": detail})

    def _scale_tensor(self) -> torch.Tensor | None:
        if self.scaler is None or not getattr(self.scaler, "is_enabled", lambda: True)():
            return None
        get = getattr(self.scaler, "_get_scale_async", None)
        s = get() if get is not None else torch.tensor(float(self.scaler.get_scale()))
        return None if s is None else s.detach().float().reshape(())

    def _emit(self, rows: list[Row]) -> None:
        if self._writer is not None:
            self._writer.append(rows)
        else:
            self._rows.extend(rows)

    # ------------------------------------------------------------------ results
    def frame(self) -> pd.DataFrame:
        """All recorded rows as a long DataFrame (step, module, parameter, quantity, idx, value)."""
        return self.trace().frame

    def trace(self) -> Trace:
        """The recorded trace (read back from disk when a trace file is used)."""
        if self._trace_path is not None and self._writer is None and self._trace_path.exists():
            return read_trace(self._trace_path)
        if self._writer is not None:
            return read_trace(self._trace_path)  # WAL: readable while writing
        meta = dict(self._meta_at_attach or self._run_metadata())
        meta.update(schema_version=SCHEMA_VERSION, steps=self.step_index)
        rows = self._modules_at_attach or self._module_rows()
        mods = pd.DataFrame(rows, columns=["ord", "name", "type", "activation", "n_params", "info"])
        return Trace(frame=frame_from_rows(self._rows), modules=mods, meta=meta)

    def _run_metadata(self) -> dict[str, Any]:
        n_params = sum(p.numel() for _, _, p in self._param_names)
        devices = sorted({str(p.device) for _, _, p in self._param_names})
        meta = {
            "gradmedic_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "command": sys.argv,
            "created": time.time(),
            "model_class": type(self.model).__name__,
            "model_summary": repr(self.model)[:20000],
            "n_params": n_params,
            "devices": devices,
            "seed": torch.initial_seed(),
            "amp": self.scaler is not None,
            "schedule": repr(self.schedule),
        }
        meta.update(self._metadata)
        return meta

    def _module_rows(self) -> list[tuple[int, str, str, str | None, int, str]]:
        rows = []
        for i, (name, m) in enumerate(self.model.named_modules()):
            own = sum(p.numel() for p in m.parameters(recurse=False))
            d = derivative_for(m) if is_activation(m) else None
            rows.append(
                (i, name, type(m).__name__, d.name if d else None, own, json.dumps(module_facts(m)))
            )
        return rows


_FWD_DETAIL = "first module whose output is NaN/Inf"
_NONNEG = (nn.ReLU, nn.ReLU6, nn.Hardsigmoid, nn.Sigmoid)

_ACT_FIELDS = (
    "dphi_mean",
    "dphi_sq_mean",
    "saturated_frac",
    "preact_ms",
    "dead_frac",
    "act_mean",
    "act_std",
)


def _channel_first_activations(model: nn.Module) -> dict[str, bool]:
    """Activations that follow a conv or batch-norm layer see (N, C, ...) feature maps, whose
    units are channels; others see (..., features). Decided from the module order."""
    channel_first = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)
    feature_last = (nn.Linear, nn.LayerNorm, nn.RNNBase, nn.Embedding)
    out: dict[str, bool] = {}
    after_conv = False
    for name, m in model.named_modules():
        if isinstance(m, channel_first + feature_last):
            after_conv = isinstance(m, channel_first)
        elif is_activation(m):
            out[name] = after_conv
    return out


def _foreach_norms(
    tensors: list[torch.Tensor], wide: Sequence[bool] | None = None
) -> list[torch.Tensor]:
    """L2 norms of many tensors with one fused kernel per (device, dtype, width) group.

    ``wide[i]`` accumulates tensor i in float64 (no underflow for entries below 1e-19, at the
    price of a conversion); the others use their own dtype. Results are float64 scalars.
    """
    out: dict[int, torch.Tensor] = {}
    groups: dict[tuple[Any, Any, bool], list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        w = True if wide is None else bool(wide[i])
        groups[(t.device, t.dtype, w or t.numel() <= _WIDE_NORM_MAX)].append(i)
    for (_, _, w), idxs in groups.items():
        ts = [tensors[i].detach() for i in idxs]
        norms = torch._foreach_norm(ts, 2, dtype=torch.float64) if w else torch._foreach_norm(ts)
        for i, n in zip(idxs, norms, strict=True):
            out[i] = n.double()
    return [out[i] for i in range(len(tensors))]


def _to_host(tensors: list[torch.Tensor]) -> list[float]:
    """Concatenate per device and copy to the host: one synchronisation per device."""
    if not tensors:
        return []
    by_dev: dict[Any, list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        by_dev[t.device].append(i)
    values: list[list[float]] = [[] for _ in tensors]
    for idxs in by_dev.values():
        flat = torch.cat([tensors[i].double() for i in idxs]).cpu().tolist()
        pos = 0
        for i in idxs:
            n = tensors[i].numel()
            values[i] = flat[pos : pos + n]
            pos += n
    return [v for vs in values for v in vs]
