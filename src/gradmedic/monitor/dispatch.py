"""The Monitor's module hooks: which probes see which module call, the root's hooks, and the
functional recorder's pseudo-modules.

Three kinds of call reach the probes on a recorded step:

* a *measured* module (``select_modules``): every active probe, with a private input view;
* a *watched* module (``watched_modules``: containers, user blocks, the root): only the
  non-finite probe, so a NaN born in a block's own code between its children is named;
* a functional layer inside a watched module or a user leaf holding parameters
  (:class:`~gradmedic.monitor.functional.FunctionalRecorder`): like a measured module, under
  its pseudo-module name.

The root also gets its own hooks: at the start of each forward the step guard
(:class:`~gradmedic.monitor.passes.PassGuard`) decides whether what was recorded belongs to
an abandoned step (it is then dropped), the parameters are checked for NaN/Inf before this
step's update, and the functional recorder begins its pass; after the forward a hook on the model's
output sees the gradient entering it (the loss's derivative) and marks the backward under
way; a last hook pops the recorder even when the forward raised.

Example::

    >>> from gradmedic import Monitor
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh())
    >>> with Monitor(net, every=1) as mon:
    ...     sorted(mon._watch_only), [n for n, _ in mon._hooked]
    ([''], ['0', '1', ''])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradmedic.monitor.functional import FunctionalRecorder, PseudoModule, record_in
from gradmedic.monitor.hooks import watched_modules
from gradmedic.monitor.probes.base import tensors_in
from gradmedic.monitor.runinfo import with_functional
from gradmedic.trace import Quantity, Row

__all__ = ["ModuleDispatch"]

#: rows that show a layer was measured (the root's own rows do not: it is not a layer)
_MEASURED = frozenset(
    q.value for q in (Quantity.SIGNAL_OUT, Quantity.DPHI_MEAN, Quantity.INPUT_GRAD_T)
)


class ModuleDispatch:
    """Mixin of :class:`gradmedic.Monitor`: module, root and functional hooks (see module
    docstring). Uses the Monitor's probes, hooks, guard and plan attributes."""

    model: nn.Module
    _fn: FunctionalRecorder | None
    _fn_live: FunctionalRecorder | None

    # ------------------------------------------------------------------ structure
    def _bind_structure(self, selected: list[tuple[str, nn.Module]]) -> None:
        """At attach: the watched modules and the functional recorder (default selector)."""
        watched = watched_modules(self.model, selected, self._selector)
        self._hooked = [*selected, *watched]
        self._watch_only = {n for n, _ in watched}
        rec = record_in(self.model, selected, watched) if self._selector is None else set()
        self._fn = (
            FunctionalRecorder(
                self.model, rec, self._measure_pre, self._measure_post, self._discovered
            )
            if rec
            else None
        )
        self._fn_live = None
        self._root_live = False
        self._modules_now = list(self._modules_at_attach)

    def _root_hooks(self) -> tuple[nn.Module, tuple[Any, Any, Any]]:
        return self.model, (self._root_begin, self._root_end, self._root_cleanup)

    # ------------------------------------------------------------------ module hooks
    def _pre_hook(self, name: str, module: nn.Module, args: tuple) -> tuple | None:
        if not torch.is_grad_enabled():
            return None
        fn = self._fn_live
        if fn is not None:
            fn.suspend()  # our own probe code is not the model's
        try:
            if name in self._watch_only:
                if self._nonfinite.on:
                    self._nonfinite.pre_forward(name, module, args)
                return None
            return self._measure_pre(name, module, args)
        finally:
            if fn is not None:
                fn.enter(name)

    def _fwd_hook(self, name: str, module: nn.Module, args: tuple, output: Any) -> None:
        if not torch.is_grad_enabled():
            return
        fn = self._fn_live
        if fn is not None:
            fn.suspend()
        try:
            if name in self._watch_only:
                if self._nonfinite.on:
                    self._nonfinite.forward(name, module, tensors_in(output))
            else:
                self._measure_post(name, module, output)
        finally:
            if fn is not None:
                fn.exit(name)

    def _measure_pre(self, name: str, module: Any, args: tuple) -> tuple | None:
        if not self._any_pre:
            return None
        for probe in self._pre:
            probe.pre_forward(name, module, args)
        listeners = [p for p in self._inputs if p.wants_input(name)]
        if not listeners:
            return None
        return self._hooks.private_inputs(name, module, args, listeners)

    def _measure_post(self, name: str, module: Any, output: Any) -> None:
        outs = tensors_in(output)
        for probe in self._fwd:
            probe.forward(name, module, outs)

    # ------------------------------------------------------------------ the root
    def _root_begin(self, module: nn.Module, args: tuple) -> None:
        self._root_live = torch.is_grad_enabled()
        if not self._root_live:
            return
        if self._guard.begin_forward():  # the state so far belongs to an abandoned step
            self._drop_step_state()
        self._nonfinite.begin_pass()
        if self._fn_live is not None:
            self._fn_live.begin_pass()

    def _root_end(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not self._root_live:
            return
        self._root_live = False
        self._guard.end_forward()
        if self._fn_live is not None:
            self._fn_live.end_pass()
        outs = tensors_in(output)
        if self._nonfinite.on:
            self._nonfinite.model_output(outs)
        for probe in self._fwd:  # other probes that read the model's output (logit scales)
            if probe is not self._nonfinite and hasattr(probe, "model_output"):
                probe.model_output(outs)
        for t in outs:
            if t.requires_grad:
                self._hooks.tensor(t, self._output_grad)

    def _root_cleanup(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._root_live = False
        if self._fn_live is not None:
            self._fn_live.end_pass()  # the forward raised: never leave our mode behind

    def _output_grad(self, g: torch.Tensor) -> None:
        self._guard.backward_reached()
        if self._nonfinite.on:
            self._nonfinite.output_grad(g)

    # ------------------------------------------------------------------ functional layers
    def _discovered(self, entry: PseudoModule) -> None:
        if entry.kind is not None:
            self._hooks.set_trainable(entry.name, False)
            deriv = entry.kind.derivative(entry.kind_params, None)
            self._acts.add_functional(
                entry.name, deriv, entry.kind.nonnegative, entry.channel_first
            )
        elif entry.param is not None:
            self._hooks.set_trainable(entry.name, entry.param.requires_grad)
            self._params.aliases.setdefault(id(entry.param), []).append(entry.name)
            self._nonfinite.pseudo_params[entry.name] = [entry.param]
        if entry.owner not in self._watch_only:  # a user leaf: measured by its layers now
            self._signal.skip.add(entry.owner)

    def _after_record(self, step: int, rows: list[Row]) -> None:
        """Update the module table with new functional layers; say whether anything was
        measured (``meta["measurable"]``, with ``measurable_reason`` when not)."""
        fn = self._fn
        if fn is not None and fn.new:
            fn.new = False
            self._modules_now = with_functional(self._modules_at_attach, fn.modules.values())
            self._sinks.set_modules(self._modules_now)
            if self._writer is not None:
                self._writer.set_modules(self._modules_now)
        if self._meta_extra.get("measurable") is True or not self._signal.on:
            return
        # the model's own rows count when it is a torch layer (``nn.Linear`` as the model),
        # not when it is user code measured as a whole (its computation has no model)
        root_counts = type(self.model).__module__.startswith("torch.")
        if any(r[3] in _MEASURED and (r[1] != "" or root_counts) for r in rows):
            self._set_meta({"measurable": True, "measurable_reason": None})
        elif "measurable" not in self._meta_extra:
            self._set_meta({"measurable": False, "measurable_reason": self._unmeasurable(step)})

    def _unmeasurable(self, step: int) -> str:
        cls = type(self.model).__name__
        return (
            f"no layer of {cls} received a backward signal on recorded step {step}: gradmedic "
            "measures nn modules (Linear, Conv, activations, norms, RNNs, attention), linear "
            "maps of a parameter in forward (matmul/@, linear, conv, einsum) and the activation "
            "functions it knows (torch.sigmoid, F.relu, ...); this model computes with none of "
            "them, or its output does not depend on them"
        )

    def _set_meta(self, items: dict[str, Any]) -> None:
        self._meta_extra.update(items)
        if self._writer is not None:
            self._writer.set_meta(items)

    # ------------------------------------------------------------------ discarding
    def _drop_step_state(self) -> None:
        self._hooks.remove_tensor_hooks()
        for probe in self._probes:
            probe.reset()

    def discard_step(self) -> None:
        """Drop everything recorded since the last step ended (forward calls, backward
        signals, the optimizer's pre-step copy), keeping the step number: for a training
        loop that caught an exception and goes on with the next batch. The Monitor does it
        by itself at the next forward when the model's forward, its backward or
        ``optimizer.step()`` raised, or the gradients were reset without a step (see
        ``gradmedic.monitor.passes``); call it yourself when the loss function raised
        between the forward and the backward. Safe at any time."""
        if self._fn_live is not None:
            self._fn_live.end_pass()
        self._drop_step_state()
        self._guard.reset()
