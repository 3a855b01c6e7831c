"""Functional layers: a bare parameter used by ``x @ W.T`` and ``torch.sigmoid`` called in
``forward`` are measured like modules, under pseudo-module names.

Mechanism: a :class:`torch.overrides.TorchFunctionMode`, on recorded steps only, sees every
torch call made by the code of the modules in ``record_in`` (containers with their own
``forward``, such as a user block or the model itself, and user-defined leaves that hold
parameters). The module hooks keep a stack of the hooked modules that are running; the mode is
on the torch-function stack exactly while the innermost of them is one of those (it is popped
while ``nn.Linear``, ``nn.LSTM`` or ``nn.MultiheadAttention`` run, so their internals pay
nothing) and is always popped when the model's forward ends or raises. Two kinds of call are
measured, each like a module call (private input view, output and input gradient hooks,
activation statistics, the non-finite check):

* a **weight use**: a linear map (``matmul``/``@``, ``mm``, ``bmm``, ``mv``, ``linear``,
  ``conv*``, ``einsum``, ``addmm``, ...) of an activation with a model parameter, or a tensor
  derived from parameters only (``W.T``, ``W * g``), named ``<param>@<op>``: the parameter's
  qualified name, ``<root>.`` for the model's own (``<root>.W@matmul``, ``block.proj@linear``).
  Its facts (``fan_in`` = the contracted size, ``sw2 = fan_in Var(W)`` of the weight as used,
  ``sb2`` of a bias passed with it or added to its output next) go into the module table, and
  the parameter's gradient rows are repeated under its name as parameter ``weight``;
* an **activation** of the registry (``functional_kind``: ``torch.sigmoid``, ``F.relu``,
  ``x.tanh()``, ``F.leaky_relu(z, 0.2)`` with its parameters), named
  ``<module>@<kind>`` after the module whose code calls it (``<root>@sigmoid``), with ``#2``,
  ``#3``, ... for later calls in the same forward of that module.

Pseudo-modules enter the module table in execution order, after the module or pseudo-module
that ran before their first call. A measured user leaf in which functional layers were found
(the model ``y = sigmoid(x @ W.T)`` itself) then keeps no signal rows of its own: its layers
are measured instead. Calls that TorchDynamo traces (``torch.compile``) pass through: eager
mode only. Cost: only models with such code pay (a pure ``nn.Sequential`` of torch modules gets
no mode); each torch call in that code passes one Python function (1-3 us), each measured
layer costs as much as a module hook (``benchmarks/monitor_overhead.py``, functional-mlp).

Example::

    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.W = torch.nn.Parameter(torch.ones(3, 4))
    ...     def forward(self, x):
    ...         return torch.sigmoid(x @ self.W.T)
    >>> from gradmedic import Monitor
    >>> with Monitor(Net(), every=1) as mon:
    ...     mon.model(torch.zeros(2, 4)).sum().backward(); mon.step()
    >>> f = mon.frame(); f[f.quantity == "dphi_mean"][["module", "value"]].values.tolist()
    [['<root>@sigmoid', 0.25]]
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from gradmedic.monitor.functional_ops import (
    ACTIVATIONS,
    WEIGHT_OPS,
    FunctionalCall,
    PseudoModule,
    bind_params,
    fans,
    flat_args,
    record_in,
    remove_mode,
    set_bias,
)
from gradmedic.nn.activations import ActivationKind
from gradmedic.nn.modelinfo import functional_activation_facts, weight_use_facts

__all__ = ["FunctionalCall", "FunctionalRecorder", "PseudoModule", "record_in"]


class _Frame:
    __slots__ = ("counts", "name", "record")

    def __init__(self, name: str, record: bool) -> None:
        self.name, self.record, self.counts = name, record, {}


class FunctionalRecorder(TorchFunctionMode):
    """Measures functional layers in the code of the modules ``record``.

    Args:
        model: the monitored model (parameter names).
        record: names of the modules whose code is measured (:func:`record_in`).
        pre, post: the Monitor's probe dispatch for a measured call: ``pre(name, call, args)``
            returns replacement inputs (or None), ``post(name, call, output)``.
        discovered: called once with each new :class:`PseudoModule`, before its first call.
    """

    def __init__(
        self,
        model: nn.Module,
        record: set[str],
        pre: Callable[[str, Any, tuple], tuple | None],
        post: Callable[[str, Any, Any], None],
        discovered: Callable[[PseudoModule], None],
    ) -> None:
        super().__init__()
        self.record = record
        self._pre, self._post, self._on_new = pre, post, discovered
        self._params: dict[int, tuple[str, nn.Parameter]] = {}
        for mname, m in model.named_modules():
            for pname, p in m.named_parameters(recurse=False):
                label = f"{mname or '<root>'}.{pname}"
                self._params.setdefault(id(p), (label, p))
        #: every pseudo-module found so far, in discovery order
        self.modules: dict[str, PseudoModule] = {}
        #: a pseudo-module was found since the Monitor last wrote the module table
        self.new = False
        #: the mode is on the torch-function stack
        self.active = False
        self._in_pass = False
        self._stack: list[_Frame] = []
        self._derived: dict[int, tuple[Any, tuple[str, nn.Parameter]]] = {}
        self._outputs: dict[int, tuple[Any, PseudoModule]] = {}
        self._last = ""

    # ------------------------------------------------------------------ lifecycle
    def begin_pass(self) -> None:
        """The model's forward begins (the root's pre-hook)."""
        self._clear()
        self._in_pass = True

    def end_pass(self) -> None:
        """The forward ended or raised, or the Monitor detaches: pop the mode if it is ours
        on top of the stack."""
        self._in_pass = False
        self._switch(False)
        self._clear()

    def _clear(self) -> None:
        self._stack, self._derived, self._outputs, self._last = [], {}, {}, ""

    def enter(self, name: str) -> None:
        """A hooked module ``name`` starts its forward."""
        if self._in_pass:
            frame = _Frame(name, name in self.record)
            self._stack.append(frame)
            self._last = name
            self._switch(frame.record)

    def suspend(self) -> None:
        """Take the mode off while the Monitor's own hook code runs (:meth:`enter` and
        :meth:`exit` put it back as the running module needs)."""
        self._switch(False)

    def exit(self, name: str) -> None:
        """A hooked module ``name`` finished its forward."""
        while self._stack:
            if self._stack.pop().name == name:
                break
        self._switch(bool(self._stack) and self._stack[-1].record)

    def _switch(self, on: bool) -> None:
        if on and not self.active and not torch.compiler.is_compiling():
            torch._C._push_on_torch_function_stack(self)
            self.active = True
        elif not on and self.active:
            n = torch._C._len_torch_function_stack()
            if n and torch._C._get_function_stack_at(n - 1) is self:
                torch._C._pop_torch_function_stack()
                self.active = False
            elif not self._in_pass:  # a mode pushed above ours was left behind: lift ours out
                remove_mode(self)
                self.active = False

    # ------------------------------------------------------------------ the mode
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (
            not self._stack
            or not self._stack[-1].record
            or "out" in kwargs
            or torch.compiler.is_compiling()  # TorchDynamo traces the call: not measured
        ):
            return func(*args, **kwargs)
        try:
            kind, op = ACTIVATIONS.get(func), WEIGHT_OPS.get(func)
        except TypeError:  # an unhashable callable
            kind = op = None
        if kind is not None and args and self._activation_input(args[0]):
            return self._activation(func, kind, args, kwargs)
        tensors = [t for t in flat_args(args, kwargs) if isinstance(t, torch.Tensor)]
        if not tensors:
            return func(*args, **kwargs)
        owned = [self._param_of(t) for t in tensors]
        if op is not None and any(owned):
            acts = [
                i
                for i, a in enumerate(args)
                if isinstance(a, torch.Tensor) and a.is_floating_point() and not self._param_of(a)
            ]
            if acts:
                wt = next(t for t, o in zip(tensors, owned, strict=True) if o)
                return self._weight_use(func, op, args, kwargs, wt, self._param_of(wt), acts)
        out = func(*args, **kwargs)
        if all(owned):  # W.T, W * g, torch.cat([W1, W2]): still "the weight"
            for t in flat_args((out,), {}):
                if isinstance(t, torch.Tensor):
                    self._derived[id(t)] = (weakref.ref(t), owned[0])
        else:
            self._follow(func, out, tensors, owned)
        return out

    def _param_of(self, t: Any) -> tuple[str, nn.Parameter] | None:
        hit = self._params.get(id(t))
        if hit is not None and hit[1] is t:
            return hit
        d = self._derived.get(id(t))
        return d[1] if d is not None and d[0]() is t else None

    def _activation_input(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor) and x.is_floating_point() and not self._param_of(x)

    def _measure(self, entry: PseudoModule, func, args, kwargs, pos, call) -> Any:
        new = self._pre(entry.name, call, tuple(args[i] for i in pos))
        if new is not None:
            args = list(args)
            for i, a in zip(pos, new, strict=True):
                args[i] = a
        out = func(*args, **kwargs)
        self._post(entry.name, call, out)
        if isinstance(out, torch.Tensor):
            self._outputs[id(out)] = (weakref.ref(out), entry)
        self._last = entry.name
        return out

    def _discover(self, name: str, make: Callable[[], PseudoModule]) -> PseudoModule:
        entry = self.modules.get(name)
        if entry is None:
            entry = make()
            self.modules[name] = entry
            self.new = True
            self._on_new(entry)
        return entry

    def _weight_use(self, func, op, args, kwargs, wt, owned, acts) -> Any:
        label, param = owned
        owner = self._stack[-1].name

        def make() -> PseudoModule:
            fan_in, fan_out = fans(op, args, wt)
            info = weight_use_facts(wt, op, fan_in=fan_in, fan_out=fan_out, param=label)
            return PseudoModule(f"{label}@{op}", self._last, owner, info, param=param)

        entry = self._discover(f"{label}@{op}", make)
        bias = kwargs.get("bias", args[2] if len(args) > 2 and op in _BIASED else None)
        if isinstance(bias, torch.Tensor) and self._param_of(bias):
            set_bias(entry, bias)
        return self._measure(entry, func, args, kwargs, acts, _PLAIN)

    def _activation(self, func, kind: ActivationKind, args, kwargs) -> Any:
        frame = self._stack[-1]
        k = frame.counts[kind.name] = frame.counts.get(kind.name, 0) + 1
        name = f"{frame.name or '<root>'}@{kind.name}" + (f"#{k}" if k > 1 else "")
        params, inplace = bind_params(func, kind, args, kwargs)
        source = self._outputs.get(id(args[0]))
        conv = source is not None and source[0]() is args[0] and source[1].info["op"][:4] == "conv"

        def make() -> PseudoModule:
            info = functional_activation_facts(kind.name, params)
            return PseudoModule(
                name, self._last, frame.name, info, kind=kind, kind_params=params,
                channel_first=conv,
            )  # fmt: skip

        entry = self._discover(name, make)
        return self._measure(entry, func, args, kwargs, (0,), _INPLACE if inplace else _PLAIN)

    def _follow(self, func: Any, out: Any, tensors: list, owned: list) -> None:
        """A bias added to a weight use's output (``x @ W.T + b``): its ``sb2``; the result
        is followed as that layer's output (for the activation after a convolution)."""
        if not isinstance(out, torch.Tensor):
            return
        adds = getattr(func, "__name__", "") in _ADDS
        for t in tensors:
            hit = self._outputs.get(id(t))
            if hit is not None and hit[0]() is t:
                for b, o in zip(tensors, owned, strict=True):
                    if adds and o is not None and "bias" not in hit[1].info:
                        set_bias(hit[1], b)
                self._outputs[id(out)] = (weakref.ref(out), hit[1])
                return


_BIASED = frozenset({"linear", "conv1d", "conv2d", "conv3d"})
_ADDS = frozenset({"add", "__add__", "__radd__", "add_", "__iadd__"})
_PLAIN, _INPLACE = FunctionalCall(False), FunctionalCall(True)
