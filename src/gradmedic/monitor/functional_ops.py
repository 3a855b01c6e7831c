"""The torch calls the functional recorder measures, what it reads from their arguments, and
the records it keeps of a functional layer (:class:`PseudoModule`).

``WEIGHT_OPS`` maps each linear map (function or tensor method) to a short op name;
``ACTIVATIONS`` maps each activation function and tensor method of the registry
(:data:`gradmedic.nn.activations.KINDS`: ``functions`` and ``methods``) to its kind.
:func:`fans` gives the ``(fan_in, fan_out)`` of a weight as an op uses it (``fan_in``: the
number of input entries summed per output entry), :func:`bind_params` an activation call's
parameters with their defaults.

Example::

    >>> w = torch.zeros(3, 5)
    >>> wt = w.T  # x @ W.T: the right operand, 5 inputs summed into each of 3 outputs
    >>> fans("matmul", (torch.zeros(2, 5), wt), wt), fans("linear", (None, w), w)
    ((5, 3), (5, 3))
    >>> fans("einsum", ("bi,oi->bo", torch.zeros(2, 5), w), w)
    (5, 3)
    >>> bind_params(torch.nn.functional.leaky_relu, ACTIVATIONS[torch.nn.functional.leaky_relu],
    ...             (torch.zeros(1), 0.2), {})
    ({'negative_slope': 0.2}, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gradmedic.nn.activations import KINDS, ActivationKind

__all__ = [
    "ACTIVATIONS",
    "WEIGHT_OPS",
    "FunctionalCall",
    "PseudoModule",
    "bind_params",
    "fans",
    "flat_args",
    "record_in",
    "remove_mode",
    "set_bias",
]

T = torch.Tensor
WEIGHT_OPS: dict[Any, str] = {}
for _name, _fns in {
    "matmul": (torch.matmul, T.matmul, T.__matmul__, T.__rmatmul__),
    "mm": (torch.mm, T.mm),
    "bmm": (torch.bmm, T.bmm),
    "mv": (torch.mv, T.mv),
    "addmm": (torch.addmm, T.addmm),
    "baddbmm": (torch.baddbmm, T.baddbmm),
    "addmv": (torch.addmv, T.addmv),
    "linear": (F.linear,),
    "bilinear": (F.bilinear,),
    "conv1d": (F.conv1d,),
    "conv2d": (F.conv2d,),
    "conv3d": (F.conv3d,),
    "conv_transpose1d": (F.conv_transpose1d,),
    "conv_transpose2d": (F.conv_transpose2d,),
    "conv_transpose3d": (F.conv_transpose3d,),
    "einsum": (torch.einsum,),
    "tensordot": (torch.tensordot,),
}.items():
    for _f in _fns:
        WEIGHT_OPS[_f] = _name

ACTIVATIONS: dict[Any, ActivationKind] = {}
for _k in KINDS.values():
    for _f in _k.functions:
        ACTIVATIONS[_f] = _k
    for _m in _k.methods:
        if hasattr(T, _m):
            ACTIVATIONS[getattr(T, _m)] = _k

_ADD = {"addmm": 1, "baddbmm": 1, "addmv": 1}  # leading input added to the product


def fans(op: str, args: tuple, w: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of weight ``w`` (as passed) in the call ``op(*args)``.

    Linear/bilinear: ``w.shape[-1]``, ``w.shape[0]``; convolutions: as
    ``torch.nn.init._calculate_fan_in_and_fan_out``; products: the contracted dimension of
    ``w`` (rows of a right operand, columns of a left one); einsum: the sizes of ``w``'s
    subscripts missing from the output. Anything else: ``w[0].numel()``, ``w.shape[0]``."""
    shape = tuple(w.shape)
    if not shape:
        return 1, 1
    if op in ("linear", "bilinear"):
        return shape[-1], shape[0]
    if op.startswith("conv"):
        rf = math.prod(shape[2:]) if len(shape) > 2 else 1
        return (shape[1] if len(shape) > 1 else 1) * rf, shape[0] * rf
    if op in ("matmul", "mm", "bmm", "mv", "addmm", "baddbmm", "addmv"):
        first = _ADD.get(op, 0)
        right = len(args) > first + 1 and args[first + 1] is w
        if len(shape) == 1:
            return shape[0], 1
        return (shape[-2], shape[-1]) if right else (shape[-1], shape[-2])
    if op == "einsum" and args and isinstance(args[0], str):
        return _einsum_fans(args[0], list(args[1:]), w)
    return math.prod(shape[1:]), shape[0]


def _einsum_fans(eq: str, operands: list, w: torch.Tensor) -> tuple[int, int]:
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    lhs, _, rhs = eq.replace(" ", "").partition("->")
    subs = lhs.split(",")
    idx = next((i for i, o in enumerate(operands) if o is w), None)
    if idx is None or idx >= len(subs) or "." in subs[idx] or len(subs[idx]) != w.dim():
        return math.prod(w.shape[1:]), w.shape[0]
    if not rhs and "->" not in eq:
        letters = "".join(subs)
        rhs = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    fan_in = math.prod(n for c, n in zip(subs[idx], w.shape, strict=True) if c not in rhs)
    return fan_in, max(1, w.numel() // max(fan_in, 1))


def bind_params(func: Any, kind: ActivationKind, args: tuple, kwargs: dict) -> tuple[dict, bool]:
    """The kind's parameters as this call sets them (defaults otherwise; positional after the
    input, then keywords; numbers as float) and whether the call works in place (a method
    ending in ``_`` or ``inplace=True``)."""
    params = dict(kind.params)
    names = kind.param_names
    rest = args[1:]
    for n, v in zip(names, rest, strict=False):
        params[n] = v
    for n in names:
        if n in kwargs:
            params[n] = kwargs[n]
    for n, v in params.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            params[n] = float(v)
    inplace = (
        getattr(func, "__name__", "").endswith("_")
        or kwargs.get("inplace") is True
        or (len(rest) > len(names) and rest[len(names)] is True)
    )
    return params, bool(inplace)


class FunctionalCall:
    """Stands for the module in probe calls of a functional layer (``inplace`` as modules)."""

    __slots__ = ("inplace",)

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace


@dataclass
class PseudoModule:
    """A functional layer found in the forward: its name, the (pseudo-)module that ran just
    before its first call (``after``), its module-table facts and what the probes need."""

    name: str
    after: str
    owner: str
    info: dict[str, Any]
    param: nn.Parameter | None = None
    kind: ActivationKind | None = None
    kind_params: dict[str, Any] = field(default_factory=dict)
    channel_first: bool = False

    @property
    def activation(self) -> str | None:
        return None if self.kind is None else self.kind.name


def record_in(model: nn.Module, measured: list[tuple[str, nn.Module]], watched: list) -> set[str]:
    """Modules whose own code the recorder measures: watched modules with a ``forward`` of
    their own (not a plain ``nn.Sequential``) and measured user-defined leaves that hold
    parameters directly."""
    out = set()
    for name, m in watched:
        if not (isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward):
            out.add(name)
    for name, m in measured:
        user = not type(m).__module__.startswith("torch.")
        if (
            user
            and not any(True for _ in m.children())
            and any(True for _ in m.parameters(recurse=False))
        ):
            out.add(name)
    return out


def set_bias(entry: PseudoModule, b: torch.Tensor) -> None:
    """Note the bias ``b`` added to weight use ``entry``'s output: ``sb2 = Var(b)`` (0 for a
    single entry or a non-finite variance), ``b_mean``, ``bias = True`` in its facts."""
    bd = b.detach().float()
    entry.info["sb2"] = float(bd.var()) if bd.numel() > 1 else 0.0
    entry.info["b_mean"] = float(bd.mean()) if bd.numel() else 0.0
    entry.info["bias"] = True
    if not math.isfinite(entry.info["sb2"]):
        entry.info["sb2"] = 0.0


def flat_args(args: tuple, kwargs: dict) -> list:
    """Positional and keyword arguments, lists and tuples among them opened one level
    (``torch.cat([W1, W2])``, ``einsum(eq, [a, b])``)."""
    out: list = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, (list, tuple)):
            out.extend(a)
        else:
            out.append(a)
    return out


def remove_mode(mode: Any) -> None:
    """Take ``mode`` out of the torch-function mode stack wherever it is, keeping the others
    in their order (for a mode pushed above ours by user code and never popped)."""
    above = []
    while torch._C._len_torch_function_stack():
        top = torch._C._pop_torch_function_stack()
        if top is mode:
            break
        above.append(top)
    for m in reversed(above):
        torch._C._push_on_torch_function_stack(m)
