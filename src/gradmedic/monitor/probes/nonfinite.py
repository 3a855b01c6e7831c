"""Non-finite values: where a NaN/Inf was born (a module, or the loss), and a sentinel.

On a recorded step every tensor a hooked module takes or returns is reduced to its minimum and
maximum (``torch.aminmax``: one pass in the tensor's own dtype), once (a block that returns its
last child's output, or a layer fed by the previous one, reuses them while the tensor is
unchanged). NaN propagates into both and ±Inf into one, and the extremes of finite entries
cannot overflow, so a value counts as non-finite exactly when it is non-finite *in the dtype
the model uses* (an overflow of float32 at 3.4e38 is seen in the layer that produced it, not
one earlier). A float64 sum, used before, was as exact but 5x (a 131k-entry activation) to
100x (a 4M-entry feature map) slower on the CPU, where the conversion is not vectorised
(benchmarks/RESULTS.md). The extremes are read with everything else (one host transfer) and
give, in this order:

* ``NONFINITE_FORWARD``: the module where the value was born: the first module to finish its
  forward whose output is non-finite while all its inputs were finite. Modules finish before
  the module that called them, so this is the innermost one (``block.attn``, not ``block``);
  a NaN made by a functional op between a block's children is born in the block. Its detail
  says whether the module's parameters were already non-finite when the forward began
  (checked then, before any update of this step: only then did "an earlier update put them
  there"), or, when no module had finite inputs, that the model's input already was.
* ``NONFINITE_LOSS``: every module output was finite, but the observed loss
  (``Monitor.observe``) is NaN/Inf (detail ``"loss value is NaN/Inf"``), or the gradient
  entering the model's output, before any module's backward ran, is (``"loss is finite but
  its gradient w.r.t. the model output is NaN/Inf"``: an undefined derivative at a boundary,
  such as ``log`` at 0; also the detail when the loss was not observed). No module's
  backward is then blamed.
* ``NONFINITE_BACKWARD``: the first module in backward order whose input or output gradient
  is non-finite (the signal norms of :class:`SignalProbe`, in float64).
* ``NONFINITE_GRADIENT``: a parameter gradient alone.

``OUTPUT_RMS`` (every recorded step) is the root mean square of the model's output in
float64: a loss that is Inf because the outputs are 1e19 (an exploding forward) is told from
one that is undefined at a boundary (``log(0)``).

Every event also writes ``NONFINITE`` (1.0) and appends ``{"step", "kind", "module",
"detail"}`` to ``Monitor.events``.

Unrecorded steps keep one fused float32 norm over all gradients (and the observed losses) on the
device and remember the first step where it is NaN, without a host sync
(:class:`~gradmedic.monitor.probes.sentinel.Sentinel`), reported with its exact step at the
next recorded step or at detach.

Raises:
    NonFiniteError: with ``halt=True``, at the step where a value went non-finite (recorded
        steps: after the step's rows are written; the sentinel then reads its check at once).

Example::

    >>> from gradmedic import Monitor
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> with Monitor(model, every=1) as mon:
    ...     (model(torch.ones(1, 2)) * float("nan")).sum().backward(); mon.step()
    >>> [(e["kind"], e["module"]) for e in mon.events]
    [('nonfinite_loss', None)]
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradmedic.monitor.probes.base import Probe, norm
from gradmedic.monitor.probes.params import ParamsProbe
from gradmedic.monitor.probes.sentinel import NonFiniteError, Sentinel, halt
from gradmedic.monitor.probes.signal import SignalProbe
from gradmedic.monitor.probes.step import StepProbe
from gradmedic.trace import Quantity, Row

__all__ = ["LOSS_DETAIL", "LOSS_GRAD_DETAIL", "NonFiniteError", "NonFiniteProbe"]

_FWD_DETAIL = "first module whose output is NaN/Inf"
_FWD_DETAIL_PARAMS = (
    "first module whose output is NaN/Inf; its parameters are already non-finite, "
    "so an earlier update (a NaN gradient or an exploding step) put them there"
)
_FWD_DETAIL_INPUT = (
    "first module whose output is NaN/Inf; its input was already NaN/Inf (the model's input "
    "data, or an operation outside the hooked modules)"
)
_BWD_DETAIL = "first module whose input or output gradient is NaN/Inf in backward order"
LOSS_DETAIL = "loss value is NaN/Inf"
LOSS_GRAD_DETAIL = "loss is finite but its gradient w.r.t. the model output is NaN/Inf"


class NonFiniteProbe(Sentinel, Probe):
    """Names where the first NaN/Inf of a recorded step was born; dates NaN on unrecorded steps.

    Args:
        model: the monitored model (its parameters are checked when a forward begins).
        events: the Monitor's event list, appended to.
        emit: writes rows to the trace (sentinel hits are written as they are read).
        params, signal, step: the probes whose gradients, backward norms and loss are checked.
        enabled: watch at all; halt: raise :class:`NonFiniteError` at the bad step.
    """

    #: also called for the modules the Monitor only watches (containers, the root)
    watches = True

    def __init__(
        self,
        model: nn.Module,
        events: list[dict[str, Any]],
        emit: Callable[[list[Row]], None],
        params: ParamsProbe,
        signal: SignalProbe,
        step: StepProbe,
        *,
        enabled: bool = True,
        halt: bool = False,
    ) -> None:
        self.model, self.events, self.emit = model, events, emit
        self.params, self.signal, self.step = params, signal, step
        self.enabled, self.halt = enabled, halt
        #: parameters a functional pseudo-module uses (its own parameters), by name
        self.pseudo_params: dict[str, list[nn.Parameter]] = {}
        self.init_sentinel()
        self._halting: tuple[int, str | None] | None = None
        self.reset()

    def plan(self, step: int, recording: bool) -> bool:
        self.on = recording and (self.enabled or bool(self._curve_steps))
        return self.on

    # ------------------------------------------------------------------ forward
    def begin_pass(self) -> None:
        """A forward of the model begins: check its parameters once per step, before this
        step's update can change them: one sum per parameter in its own dtype (NaN/Inf
        propagate; 8x cheaper on CPU than a fused max-abs; a finite tensor whose sum exceeds
        the dtype's range, entries near 1e33 in float32, would count as non-finite)."""
        if self.on and self._psum is None:
            with torch.no_grad():
                sums = [p.detach().sum().double() for *_, p in self.params.names]
            self._psum = torch.stack(sums) if sums else None

    def pre_forward(self, name: str, module: nn.Module, args: tuple) -> None:
        ins = []
        for a in args:
            if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex()):
                ins.append(self._index_of(a))
        self._pending.setdefault(name, []).append(tuple(ins))

    def forward(self, name: str, module: nn.Module, outs: list[torch.Tensor]) -> None:
        pending = self._pending.get(name)
        ins = pending.pop() if pending else ()
        if outs:  # a block returning its last child's output reuses that child's sum
            self._calls.append((name, ins, tuple(self._index_of(t) for t in outs)))

    def model_output(self, outs: list[torch.Tensor]) -> None:
        """The model's forward returned ``outs``: keep the mean square of the first."""
        if outs:
            with torch.no_grad():
                t = outs[0].detach()
                t = torch.view_as_real(t) if t.is_complex() else t
                self._out_ms.append(torch.linalg.vector_norm(t, dtype=torch.float64) ** 2)
                self._out_n += max(t.numel(), 1)

    def output_grad(self, g: torch.Tensor) -> None:
        """The gradient entering the model's output (before any module's backward ran)."""
        self._out_grads.append(norm(g))

    def _index_of(self, t: torch.Tensor) -> int:
        """Index of ``t``'s minimum in :attr:`_sums` (its maximum follows): reduced once,
        reused while ``t`` is unchanged (the same tensor at the same version; an in-place op
        makes a new pair)."""
        compiling = torch.compiler.is_compiling()  # (no guards on tensor ids under TorchDynamo)
        hit = None if compiling else self._known.get(id(t))
        if hit is not None and hit[0]() is t and hit[2] == t._version:
            return hit[1]
        index = len(self._sums)
        with torch.no_grad():
            self._sums.extend(_extremes(t))
        if not compiling:
            self._known[id(t)] = (weakref.ref(t), index, t._version)
        return index

    # ------------------------------------------------------------------ reading
    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        out = self.curve_read()  # the every-step curves of the unrecorded iterations, first
        if not self.enabled:
            return out
        self._layout = [len(self._sums), len(self.signal.order), len(self._out_grads), 0]
        self._order = [n for n, _ in self.signal.order]
        for part in (self._sums, [s for _, s in self.signal.order], self._out_grads):
            if part:
                out.append(torch.stack(part))
        if self._psum is not None:
            self._layout[3] = self._psum.numel()
            out.append(self._psum)
        if self._out_ms:  # last: rows() reads it as values[-1]
            out.append((torch.stack(self._out_ms).sum() / self._out_n).sqrt().reshape(1))
        return out

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        values = self.curve_rows(values)
        if not self.enabled:
            return
        n_sum, n_ord, n_og, n_p = self._layout
        sums = values[:n_sum]
        bwd_norms = values[n_sum : n_sum + n_ord]
        out_grads = values[n_sum + n_ord : n_sum + n_ord + n_og]
        psum = values[n_sum + n_ord + n_og : n_sum + n_ord + n_og + n_p]
        if self._out_ms:
            out.append((step, "", "", Quantity.OUTPUT_RMS.value, None, values[-1]))
        fwd, fwd_detail = self._birth(sums, psum)
        if self.skipped:  # the GradScaler's overflow probe: no event; AMP_OVERFLOW names where
            where = fwd or _first_bad_name(self._order, bwd_norms) or ""
            out.append((step, where, "", Quantity.AMP_OVERFLOW.value, None, 1.0))
            return
        found = False
        where: str | None = None
        if fwd is not None:
            self._event(step, Quantity.NONFINITE_FORWARD, fwd, fwd_detail)
            out.append((step, fwd, "", Quantity.NONFINITE_FORWARD.value, None, 1.0))
            found = True
        loss = self.step.loss_value
        loss_bad = loss is not None and not math.isfinite(loss)
        if fwd is None and (loss_bad or not all(map(math.isfinite, out_grads))):
            self._event(
                step, Quantity.NONFINITE_LOSS, None, LOSS_DETAIL if loss_bad else LOSS_GRAD_DETAIL
            )
            out.append((step, "", "", Quantity.NONFINITE_LOSS.value, None, 1.0))
            found = True
            where = "the loss"
        else:
            bwd = _first_bad_name(self._order, bwd_norms)
            if bwd is not None:
                self._event(step, Quantity.NONFINITE_BACKWARD, bwd, _BWD_DETAIL)
                out.append((step, bwd, "", Quantity.NONFINITE_BACKWARD.value, None, 1.0))
                found = True
            if not self.params.finite and not found:
                self._event(step, Quantity.NONFINITE_GRADIENT, None, "a parameter gradient")
            found = found or not self.params.finite
            where = fwd or bwd
        self._reported = found
        if found:
            out.append((step, "", "", Quantity.NONFINITE.value, None, 1.0))
            if self.halt:
                self._halting = (step, where)

    def _birth(self, sums: list[float], psum: list[float]) -> tuple[str | None, str]:
        def finite(indices: tuple[int, ...]) -> bool:
            return all(math.isfinite(sums[i]) and math.isfinite(sums[i + 1]) for i in indices)

        bad = [c for c in self._calls if not finite(c[2])]
        if not bad:
            return None, _FWD_DETAIL
        born = next((c for c in bad if finite(c[1])), None)
        if born is None:
            return bad[0][0], _FWD_DETAIL_INPUT
        if psum and not all(math.isfinite(psum[i]) for i in self._param_indices(born[0])):
            return born[0], _FWD_DETAIL_PARAMS
        return born[0], _FWD_DETAIL

    def _param_indices(self, name: str) -> list[int]:
        pos = {id(p): i for i, (*_, p) in enumerate(self.params.names)}
        if name in self.pseudo_params:
            ps = self.pseudo_params[name]
        else:
            module = dict(self.model.named_modules()).get(name)
            ps = list(module.parameters()) if module is not None else []
        return [pos[id(p)] for p in ps if id(p) in pos]

    def raise_if_halting(self) -> None:
        """Raise :class:`NonFiniteError` if the step just written was bad and ``halt`` is set."""
        if self._halting is not None:
            step, where = self._halting
            self._halting = None
            halt(step, where)

    def reset(self) -> None:
        self._sums: list[torch.Tensor] = []
        self._known: dict[int, tuple[Any, int, int]] = {}
        self._pending: dict[str, list[tuple[int, ...]]] = {}
        self._calls: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
        self._out_grads: list[torch.Tensor] = []
        self._out_ms: list[torch.Tensor] = []
        self._out_n = 0
        self._psum: torch.Tensor | None = None
        self._order: list[str] = []
        self._layout = [0, 0, 0, 0]
        #: the GradScaler skipped this step's optimizer.step() (set by the Monitor)
        self.skipped = False

    def _event(self, step: int, kind: Quantity, module: str | None, detail: str) -> None:
        self.events.append({"step": step, "kind": kind.value, "module": module, "detail": detail})


def _extremes(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(minimum, maximum) of ``t`` as 0-d tensors in its dtype (of the real view of a complex
    tensor; zeros for an empty one)."""
    t = t.detach()
    t = torch.view_as_real(t) if t.is_complex() else t
    if t.numel() == 0:
        zero = t.new_zeros(())
        return zero, zero
    return tuple(torch.aminmax(t))


def _first_bad_name(names: list[str], values: list[float]) -> str | None:
    return next((n for n, v in zip(names, values, strict=True) if not math.isfinite(v)), None)
