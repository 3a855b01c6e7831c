"""The remedy registry: the :func:`remedy` decorator, spec parsing and :func:`apply`.

A remedy is one function, registered where it is implemented (one module per family:
activation, init, structure, recurrent, loss, clipping)::

    @remedy("add-norm", order=40, applies=_norm_applies)
    def _add_norm(model: nn.Module, /, kind: str = "batch") -> tuple[nn.Module, RemedyReport]:
        '''insert BatchNorm/LayerNorm after each hidden Linear/Conv'''
        return add_norm(model, kind, inplace=True)

Its parameters are read from the signature: the model comes first (positional-only), the
remedy's parameters follow with their defaults and types (``str``, ``int``, ``float``,
``bool``, ``X | None``), and keyword-only ``batch`` / ``loss`` ask for the data batch (LSUV)
or the loss in use (``fix-loss``). The first docstring line is the summary. ``order`` places
the remedy in a combination (structure first, then activation, init, heads, loss, training
remedies); ``applies(model)`` returns None when the remedy applies, else the reason it does
not.

A remedy spec is ``name`` or ``name(key=value, ...)`` (the ``str()`` of a
:class:`~gradmedic.diagnosis.finding.Prescription`), read by
:func:`gradmedic._callspec.parse_call`; several join with ``+``::

    model, report = apply(model, "swap-activation(to=leaky_relu)+reinit(scheme=kaiming)")

Model remedies change (a copy of) the model; training remedies (clippers, ``lower-lr``) leave
it alone and put what the training loop needs in the report (``report.grad_transform``,
``report.lr_factor``); ``fix-loss`` also sets ``report.loss``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any

import torch
from torch import nn

from gradmedic._callspec import is_none_text, parse_call, split_top
from gradmedic.errors import ConfigError, unknown_name
from gradmedic.remedies.base import RemedyReport, maybe_copy

__all__ = [
    "REMEDIES",
    "Remedy",
    "applicable",
    "apply",
    "canonical_order",
    "parse_remedy",
    "remedy",
    "spec_applies",
    "split_specs",
]

#: Keyword-only parameters a remedy function may declare to receive the run's context.
CONTEXT = ("batch", "loss")

Check = Callable[[nn.Module], "str | None"]


def _always(model: nn.Module) -> str | None:
    return None


@dataclass(frozen=True)
class Remedy:
    """One registered remedy.

    ``params``: parameter name -> default; ``types``: parameter name -> annotation (both from
    the function's signature). ``check(model)`` returns ``None`` when the remedy applies,
    else the reason it does not ("it has no nn.RNN module"). ``fn(model, **params)`` changes
    ``model`` in place (it may return a different module object, e.g. a wrapper) and returns
    ``(model, report)``; ``context`` names the keyword-only arguments it takes (``batch``,
    ``loss``).
    """

    name: str
    order: int
    summary: str
    params: dict[str, Any]
    types: dict[str, Any]
    check: Check
    fn: Callable[..., tuple[nn.Module, RemedyReport]]
    context: tuple[str, ...] = ()

    def run(
        self, model: nn.Module, params: dict[str, Any], batch: Any = None, loss: Any = None
    ) -> tuple[nn.Module, RemedyReport]:
        """Apply the remedy in place with bound ``params`` (see :func:`parse_remedy`)."""
        given = {"batch": batch, "loss": loss}
        return self.fn(model, **params, **{k: given[k] for k in self.context})


#: Every registered remedy by name, in :func:`canonical_order` (the ``order`` of each).
REMEDIES: dict[str, Remedy] = {}


def _signature(name: str, fn: Callable[..., Any]) -> tuple[dict, dict, tuple[str, ...]]:
    """(defaults, types, context) of a remedy function; TypeError for a malformed one."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    ps = list(sig.parameters.values())
    if not ps or ps[0].kind is not inspect.Parameter.POSITIONAL_ONLY:
        raise TypeError(f"remedy '{name}': the model must be the first, positional-only argument")
    defaults: dict[str, Any] = {}
    context: list[str] = []
    for p in ps[1:]:
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name in CONTEXT:
            context.append(p.name)
        elif p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.default is not p.empty:
            defaults[p.name] = p.default
        else:
            raise TypeError(
                f"remedy '{name}': parameter '{p.name}' needs a default (keyword-only "
                f"parameters may only be {', '.join(CONTEXT)})"
            )
    return defaults, {k: hints.get(k, Any) for k in defaults}, tuple(context)


def remedy(
    name: str, *, order: int, applies: Check | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the remedy ``name`` (see the module docstring).

    Raises TypeError at import time for a function whose signature does not follow the
    convention, and ValueError for a name registered twice.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in REMEDIES:
            raise ValueError(f"remedy '{name}' is registered twice")
        defaults, types, context = _signature(name, fn)
        summary = (inspect.getdoc(fn) or "").split("\n")[0].strip()
        entry = Remedy(name, order, summary, defaults, types, applies or _always, fn, context)
        items = sorted([*REMEDIES.values(), entry], key=lambda r: r.order)
        REMEDIES.clear()
        REMEDIES.update((r.name, r) for r in items)
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# specs


def split_specs(spec: Any) -> list[str]:
    """``"a(x=1)+b"`` -> ``["a(x=1)", "b"]``; lists and Prescriptions are accepted.

    Raises ConfigError for an empty spec or unbalanced parentheses.
    """
    if isinstance(spec, (list, tuple)):
        return [s for item in spec for s in split_specs(item)]
    text = str(spec).strip()
    if not text:
        raise ConfigError("empty remedy spec; give a remedy name, e.g. reinit(scheme=kaiming)")
    return [p.strip() for p in split_top(text, "+", "remedy spec") if p.strip()]


def _describe(tp: Any) -> str:
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, UnionType) else (tp,)
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a name"}
    parts = [words.get(a, getattr(a, "__name__", str(a))) for a in args if a is not NoneType]
    return " or ".join(parts) + (" (or none)" if NoneType in args else "")


def _coerce(tp: Any, value: Any) -> tuple[bool, Any]:
    """(ok, value converted to ``tp``): an int is a valid ``float`` (kept as given), numbers
    become text for ``str`` (a module name ``3``), whole floats become ints for ``int``."""
    if tp is Any:
        return True, value
    if typing.get_origin(tp) in (typing.Union, UnionType):
        if NoneType in typing.get_args(tp) and is_none_text(value):
            return True, None  # the text none means no value only where None is allowed
        for arg in typing.get_args(tp):
            ok, out = _coerce(arg, value)
            if ok:
                return True, out
        return False, value
    if tp is NoneType:
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is float:
        return number, value
    if tp is int:
        whole = number and float(value).is_integer()
        return whole, int(value) if whole else value
    if tp is str:
        return isinstance(value, str) or number, str(value) if number else value
    return isinstance(value, tp), value


def parse_remedy(spec: Any) -> tuple[Remedy, dict[str, Any]]:
    """Look up one remedy spec and bind its parameters (defaults filled in, values checked
    against the parameter types).

    Raises :class:`~gradmedic.errors.UnknownNameError` for an unknown remedy or parameter
    (listing the valid ones) and ConfigError for too many arguments or a value of the wrong
    type.

    >>> parse_remedy("clip-grad-norm(0.5)")[1]
    {'max_norm': 0.5}
    """
    name, args, kwargs = parse_call(str(spec), what="remedy")
    if name not in REMEDIES:
        raise unknown_name("remedy", name, REMEDIES)
    entry = REMEDIES[name]
    names = list(entry.params)
    if len(args) > len(names):
        usage = ", ".join(f"{k}=..." for k in names) or "no parameters"
        raise ConfigError(f"remedy '{spec}' takes at most {len(names)} argument(s): {usage}")
    given = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in entry.params:
            raise unknown_name(f"parameter of remedy '{name}'", key, names)
        if key in given:
            raise ConfigError(f"remedy '{spec}' gives {key} twice; keep one of them")
        given[key] = value
    bound = dict(entry.params)
    for key, value in given.items():
        ok, bound[key] = _coerce(entry.types[key], value)
        if not ok:
            raise ConfigError(
                f"remedy '{name}': {key}={value!r} is invalid, it must be "
                f"{_describe(entry.types[key])}; e.g. {name}({key}={entry.params[key]})"
            )
    return entry, bound


def applicable(model: nn.Module) -> list[str]:
    """Names of the remedies that apply to ``model`` in canonical order (training remedies
    always apply)."""
    return [name for name, r in REMEDIES.items() if r.check(model) is None]


def spec_applies(model: nn.Module, spec: Any) -> str | None:
    """None when every remedy of ``spec`` (one spec, a ``+``-joined combination or a
    Prescription) applies to ``model``, each after the ones before it; else the reason it does
    not (an unknown name too). The model is left untouched: later parts are checked on a copy
    changed by the earlier ones only when they need it (``forget-bias`` after ``replace-rnn``).

    >>> spec_applies(nn.Sequential(nn.Linear(2, 2)), "forget-bias")
    'forget-bias: it has no nn.LSTM module with biases'
    """
    try:
        parts = [parse_remedy(p) for p in split_specs(spec)]
    except ConfigError as exc:
        return str(exc)
    current = model
    for i, (entry, params) in enumerate(parts):
        reason = entry.check(current)
        if reason is not None:
            return f"{entry.name}: {reason}"
        if i + 1 < len(parts) and any(e.check(current) is not None for e, _ in parts[i + 1 :]):
            try:
                current, _ = entry.run(maybe_copy(current, False), params)
            except Exception as exc:  # a remedy that needs data (lsuv) cannot be tried here
                return f"{entry.name}: {exc}"
    return None


def canonical_order(specs: Iterable[str]) -> list[str]:
    """Sort remedy specs by each remedy's ``order`` (stable within one remedy name; unknown
    names last)."""

    def key(s: str) -> int:
        entry = REMEDIES.get(parse_call(s, what="remedy")[0])
        return entry.order if entry is not None else 10**9

    return sorted(specs, key=key)


# ---------------------------------------------------------------------------------------------
# apply


def _batch_input(data_batch: Any) -> torch.Tensor | None:
    if data_batch is None:
        return None
    if isinstance(data_batch, torch.Tensor):
        return data_batch
    if isinstance(data_batch, (tuple, list)) and data_batch:
        first = data_batch[0]
        if isinstance(first, torch.Tensor):
            return first
    raise ConfigError(
        "data_batch must be an input tensor or an (inputs, targets) pair, got "
        f"{type(data_batch).__name__}"
    )


def apply(
    model: nn.Module,
    spec: Any,
    *,
    data_batch: Any = None,
    inplace: bool = False,
    loss: Any = None,
) -> tuple[nn.Module, RemedyReport]:
    """Apply one remedy spec, a ``+``-joined combination, a list of specs or a Prescription.

    Args:
        model: the model; it is deep-copied first unless ``inplace``.
        spec: e.g. ``"reinit(scheme=kaiming)"``, ``"replace-rnn(to=gru)+clip-grad-norm"``.
        data_batch: inputs (or an ``(inputs, targets)`` pair) for data-driven remedies (LSUV).
        inplace: change ``model`` itself (the returned model may still be a new object when a
            remedy wraps or traces the model: always use the returned one).
        loss: the loss in use (spec or module), checked by ``fix-loss``.

    Returns: ``(model to train, report)``; the report also carries ``loss`` (fix-loss),
    ``grad_transform`` (a clipper) and ``lr_factor``.

    Raises ConfigError naming the remedies that do apply when one does not, and
    UnknownNameError for names that do not exist (every name is checked before the model
    changes).

    >>> from torch import nn
    >>> _, rep = apply(nn.Sequential(nn.Linear(2, 2)), "lower-lr(factor=0.5)")
    >>> rep.lr_factor
    0.5
    """
    bound = [parse_remedy(p) for p in split_specs(spec)]
    out = maybe_copy(model, inplace)
    x = _batch_input(data_batch)
    report: RemedyReport | None = None
    for entry, params in bound:
        reason = entry.check(out)
        if reason is not None:
            raise ConfigError(
                f"remedy '{entry.name}' does not apply to {type(out).__name__}: {reason}; "
                f"remedies that apply: {', '.join(applicable(out))}"
            )
        out, rep = entry.run(out, params, x, loss)
        if rep.loss is not None:
            loss = rep.loss
        report = rep if report is None else report.merge(rep)
    if report is None:  # split_specs never returns an empty list; kept for type checkers
        raise ConfigError("empty remedy spec; give a remedy name, e.g. reinit(scheme=kaiming)")
    return out, report
