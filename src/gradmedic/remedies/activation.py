"""Activation swap: replace saturating activations (sigmoid, tanh) by ones that keep a slope.

Why (Glorot & Bengio 2010; Maas et al. 2013; Clevert et al. 2016): back-propagation multiplies
the gradient by ``phi'(h)`` at every layer; sigmoid's derivative is at most 0.25 and both
sigmoid and tanh have ``phi' -> 0`` when saturated, so the product over depth vanishes.
ReLU keeps ``phi' = 1`` on positives but units can die; LeakyReLU (``0.01 x`` for ``x < 0``),
ELU, GELU, SiLU and SELU keep a slope. Targets: ``relu``, ``leaky_relu(slope)``, ``elu(alpha)``,
``gelu``, ``silu``, ``selu``, ``tanh``, ``sigmoid`` (by name or class).

Which modules change: ``where=None`` selects every activation module except an output
activation (one with no Linear/Conv after it, which belongs to the loss: see ``fix-loss``);
otherwise ``where`` is a module class, a class name (``"Sigmoid"``), a qualified-name glob
(``"3"``, ``"blocks.*.act"``) or a list of them.

Activations called as functions in ``forward`` (``torch.sigmoid(h)``, ``F.relu(h)``,
``h.tanh()``) cannot be swapped by replacing modules: :func:`swap_activation` rewrites them
with torch.fx when the model is traceable (the result is then a ``torch.fx.GraphModule``) and
otherwise lists every call it could not change in the report's warnings.

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
>>> new, rep = swap_activation(net, "leaky_relu")
>>> rep.changes
['1: Sigmoid -> LeakyReLU(0.01)']
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from gradmedic.errors import ConfigError, unknown_name
from gradmedic.nn.activations import (
    ACTIVATION_TYPES,
    KINDS,
    SWAP_TARGETS,
    is_activation,
    kind_of,
    make_activation,
)
from gradmedic.remedies.base import (
    WEIGHTED_TYPES,
    RemedyReport,
    leaf_modules,
    maybe_copy,
    set_submodule,
)
from gradmedic.remedies.functional import find_functional_activations, rewrite_functional
from gradmedic.remedies.registry import remedy

__all__ = [
    "output_activations",
    "swap_activation",
    "swap_activation_",
]


def _describe(mod: nn.Module) -> str:
    if isinstance(mod, nn.LeakyReLU):
        return f"LeakyReLU({mod.negative_slope:g})"
    if isinstance(mod, nn.ELU):
        return f"ELU({float(mod.alpha):g})"
    return type(mod).__name__


def _target_factory(
    to: str | type[nn.Module] | nn.Module, slope: float | None, alpha: float | None
) -> tuple[str, Any]:
    """(label, zero-argument factory of fresh activation modules)."""
    if isinstance(to, nn.Module):
        template = to
        return _describe(template), lambda: copy.deepcopy(template)
    if isinstance(to, type) and issubclass(to, nn.Module):
        kind = kind_of(to)
        if kind is None or kind.name not in SWAP_TARGETS:
            valid = [KINDS[n].torch_type.__name__ for n in SWAP_TARGETS]
            raise unknown_name("activation class", to.__name__, valid)
        to = kind.name
    name = str(to).strip().lower()
    base = name.split("(")[0].strip()
    if base not in SWAP_TARGETS:
        raise unknown_name("activation to swap to", base, SWAP_TARGETS)
    if "(" not in name:
        if slope is not None and base != "leaky_relu":
            raise ConfigError(f"slope= only applies to leaky_relu, not {base}")
        if alpha is not None and base != "elu":
            raise ConfigError(f"alpha= only applies to elu, not {base}")
        if base == "leaky_relu":
            name = f"leaky_relu({0.01 if slope is None else float(slope)})"
        elif base == "elu":
            name = f"elu({1.0 if alpha is None else float(alpha)})"
    make_activation(name)  # validate the arguments now
    return _describe(make_activation(name)), lambda: make_activation(name)


def output_activations(model: nn.Module) -> set[str]:
    """Names of activation modules with no Linear/Conv after them (the model's output
    nonlinearity, paired with the loss)."""
    out: set[str] = set()
    for name, mod in leaf_modules(model):
        if isinstance(mod, WEIGHTED_TYPES):
            out.clear()
        elif is_activation(mod):
            out.add(name)
    return out


def _type_by_name(text: str) -> type[nn.Module] | None:
    low = text.lower().replace("_", "")
    for cls in ACTIVATION_TYPES:
        if cls.__name__.lower() == low:
            return cls
    return None


def _selected(name: str, mod: nn.Module, where: Any) -> bool:
    if isinstance(where, type):
        return isinstance(mod, where)
    if isinstance(where, str):
        cls = _type_by_name(where)
        if cls is not None:
            return isinstance(mod, cls)
        return fnmatch.fnmatchcase(name, where)
    if isinstance(where, Iterable):
        return any(_selected(name, mod, w) for w in where)
    raise ConfigError(
        f"where={where!r} is invalid; give an activation class (nn.Sigmoid), a class name "
        "('Sigmoid'), a qualified-name glob ('blocks.*.act') or a list of them"
    )


def _kind_name(cls: type[nn.Module] | None) -> str | None:
    k = kind_of(cls) if cls is not None else None
    return None if k is None else k.name


def _fn_selected(kind: str, where: Any) -> bool:
    if where is None:
        return True
    if isinstance(where, str):
        return _kind_name(_type_by_name(where)) == kind
    if isinstance(where, type):
        return _kind_name(where) == kind
    if isinstance(where, Iterable):
        return any(_fn_selected(kind, w) for w in where)
    return False


def _swap_modules(model: nn.Module, where: Any, factory: Any, label: str, rep: RemedyReport) -> int:
    outputs = output_activations(model)
    n = 0
    for name, mod in leaf_modules(model):
        if not is_activation(mod):
            continue
        if where is None:
            if name in outputs:
                rep.warnings.append(
                    f"kept output activation {name} ({_describe(mod)}): it is paired with the "
                    "loss; use fix-loss to fuse it, or select it with where= to swap it anyway"
                )
                continue
        elif not _selected(name, mod, where):
            continue
        new = factory()
        if type(new) is type(mod) and _describe(new) == _describe(mod):
            continue
        set_submodule(model, name, new)
        rep.changes.append(f"{name}: {_describe(mod)} -> {label}")
        n += 1
    return n


def _swap(
    model: nn.Module, target: tuple[str, Callable[[], nn.Module]], where: Any, *, fx: bool
) -> tuple[nn.Module, RemedyReport]:
    """Swap the selected activation modules of ``model`` in place for ``target`` (``(label,
    factory)`` from :func:`_target_factory`), then its functional activation calls: rewritten
    through torch.fx when ``fx``, else listed in the warnings. Returns ``(model, or the
    GraphModule that replaces it, report)``."""
    label, factory = target
    model_out = model
    rep = RemedyReport(spec=_spec(label))
    n = _swap_modules(model, where, factory, label, rep)
    calls = [c for c in find_functional_activations(model) if _fn_selected(c["kind"], where)]
    if calls:
        gm = None
        if fx:
            gm = rewrite_functional(
                model,
                lambda kind: _fn_selected(kind, where),
                factory,
                label,
                rep,
                keep_output=where is None,
            )
        if gm is not None:
            model_out = gm
        else:
            why = (
                f"torch.fx cannot trace the model ({rep.details.get('fx_error', '')}); "
                "replace the call in your code"
                if fx
                else "an in-place swap cannot rewrite functional calls; use swap_activation() "
                "(torch.fx) or replace it in your code"
            )
            for c in calls:
                rep.warnings.append(
                    f"not changed: {c['call']} in {c['class']}.forward (line {c['line']}): "
                    f"{why} with a module, e.g. self.act = nn.{label.split('(')[0]}()"
                )
    if n == 0 and not calls:
        _nothing_selected(model, where)
    return model_out, rep


def swap_activation_(
    model: nn.Module,
    to: str | type[nn.Module] | nn.Module = "leaky_relu",
    *,
    where: Any = None,
    slope: float | None = None,
    alpha: float | None = None,
) -> RemedyReport:
    """Swap activation *modules* in place; functional calls are listed in the warnings
    (use :func:`swap_activation` to rewrite them through torch.fx).

    Raises ConfigError when nothing matches ``where``.
    """
    return _swap(model, _target_factory(to, slope, alpha), where, fx=False)[1]


def _spec(label: str) -> str:
    low = label.lower()
    if low.startswith("leakyrelu"):
        return f"swap-activation(to=leaky_relu,slope={low[len('leakyrelu(') : -1]})"
    if low.startswith("elu("):
        return f"swap-activation(to=elu,alpha={low[4:-1]})"
    return f"swap-activation(to={_kind_name(getattr(nn, label, None)) or low})"


def _nothing_selected(model: nn.Module, where: Any) -> None:
    acts = [f"{n} ({_describe(m)})" for n, m in leaf_modules(model) if is_activation(m)]
    if not acts:
        raise ConfigError(
            f"remedy 'swap-activation' does not apply to {type(model).__name__}: it has no "
            "activation module and no functional activation call in forward"
        )
    what = "besides the output activation" if where is None else f"matching where={where!r}"
    raise ConfigError(
        f"swap-activation found no activation {what}; activations in the model: {', '.join(acts)}"
    )


def swap_activation(
    model: nn.Module,
    to: str | type[nn.Module] | nn.Module = "leaky_relu",
    *,
    where: Any = None,
    slope: float | None = None,
    alpha: float | None = None,
    inplace: bool = False,
) -> tuple[nn.Module, RemedyReport]:
    """Swap activations, returning ``(new model, report)``; the input model is untouched
    unless ``inplace`` (see the module docstring for ``to`` and ``where``).

    When the model's own ``forward`` code calls activations as functions, the model is traced
    with ``torch.fx.symbolic_trace`` and those calls are replaced by modules; the returned
    model is then a ``GraphModule`` with the same submodule names. If tracing fails, the
    report's warnings name every call left unchanged.
    """
    target = _target_factory(to, slope, alpha)  # a bad target fails before the model is copied
    return _swap(maybe_copy(model, inplace), target, where, fx=True)


# ---------------------------------------------------------------------------------------------
# registration


def _has_hidden_activation(model: nn.Module) -> str | None:
    outs = output_activations(model)
    hidden = [n for n, m in leaf_modules(model) if is_activation(m) and n not in outs]
    if hidden or find_functional_activations(model):
        return None
    return "it has no hidden activation module and no functional activation call in forward"


@remedy("swap-activation", order=20, applies=_has_hidden_activation)
def _swap_activation_remedy(
    model: nn.Module,
    /,
    to: str = "leaky_relu",
    slope: float | None = None,
    alpha: float | None = None,
    where: str | None = None,
) -> tuple[nn.Module, RemedyReport]:
    """replace saturating activations (sigmoid/tanh) by ones that keep a slope"""
    return swap_activation(model, to, where=where, slope=slope, alpha=alpha, inplace=True)
