"""The one activation registry: every elementwise activation gradmedic knows, in one table.

Each :class:`ActivationKind` ties together what used to live in eight places: the PyTorch
module type, its constructor parameters (read back from the module's attributes of the same
name), the elementwise derivative ``phi'(x)`` the Monitor measures, whether mean-field theory
models it (the theory spec is built from the same parameters, so ``Softplus(beta=2)`` and
``Hardtanh(-2, 2)`` get the prediction for *their* parameters), the functional forms
(``torch.sigmoid``, ``F.relu``) the remedies can rewrite, and how its zero-slope side is
called:

- *saturated* (``tails="both"``): ``|phi'|`` tiny on both tails (sigmoid, tanh, softsign,
  hardtanh, hardsigmoid); a unit is saturated when ``|phi'(x)|`` is below 1% of the maximum
  slope (Glorot & Bengio 2010).
- *inactive* (``tails="negative"``): the ReLU family, whose slope is zero (or tiny) on the
  negative side only; a unit inactive on every sample of the batch is *dead* (Maas et al.
  2013; Lu et al. 2019).

Adding an activation is one entry in :data:`KINDS` (and, for a theory prediction, one in
``gradmedic.theory``'s activation table with the same name and parameters).

Example::

    >>> import torch
    >>> k = kind_of(torch.nn.Softplus(beta=2.0))
    >>> k.name, params_of(torch.nn.Softplus(beta=2.0))
    ('softplus', {'beta': 2.0, 'threshold': 20.0})
    >>> theory_spec(torch.nn.Softplus(beta=2.0))
    'softplus(beta=2)'
    >>> d = derivative_for(torch.nn.Sigmoid())
    >>> float(d.fn(torch.zeros(3)).mean()), d.max_slope
    (0.25, 0.25)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from gradmedic._callspec import parse_call
from gradmedic.errors import ConfigError, unknown_name
from gradmedic.nn.activation_kinds import KINDS, ActivationKind
from gradmedic.nn.derivatives import SATURATION_FRACTION, Derivative

__all__ = [
    "ACTIVATION_TYPES",
    "KINDS",
    "SATURATION_FRACTION",
    "SWAP_TARGETS",
    "ActivationKind",
    "Derivative",
    "bind_activation",
    "derivative_for",
    "functional_kind",
    "is_activation",
    "kind_of",
    "make_activation",
    "params_of",
    "resolve_name",
    "spec_of",
    "theory_spec",
    "theory_spec_from",
]

#: Activation module types the Monitor collects statistics for (subclasses included).
#: ``nn.Identity`` is a no-op, not an activation the Monitor measures.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = tuple(
    k.torch_type for k in KINDS.values() if k.torch_type is not nn.Identity
)

#: Names the activation-swap remedy accepts as ``to=``.
SWAP_TARGETS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if k.swap_target)

_ALIASES: dict[str, str] = {a: k.name for k in KINDS.values() for a in k.aliases}
_FUNCTIONS: dict[Any, ActivationKind] = {f: k for k in KINDS.values() for f in k.functions}


def is_activation(module: nn.Module) -> bool:
    """True when ``module`` is an elementwise activation the Monitor knows how to differentiate."""
    return isinstance(module, ACTIVATION_TYPES)


def kind_of(module: nn.Module | type[nn.Module] | None) -> ActivationKind | None:
    """The registry entry of an activation module (or class); subclasses resolve to their
    nearest known base (``nn.ReLU6`` is its own kind; a user subclass of ``nn.Tanh`` is tanh).
    None for anything that is not a known activation (``nn.Identity`` included)."""
    if module is None:
        return None
    cls = module if isinstance(module, type) else type(module)
    for base in cls.__mro__:
        for k in KINDS.values():
            if k.torch_type is base and base is not nn.Identity:
                return k
    return None


def params_of(module: nn.Module) -> dict[str, Any]:
    """The constructor parameters of an activation module, read from its attributes.

    >>> params_of(nn.Hardtanh(-2.0, 2.0))
    {'min_val': -2.0, 'max_val': 2.0}
    """
    k = kind_of(module)
    if k is None:
        return {}
    out: dict[str, Any] = {}
    for pname, default in k.params:
        v = getattr(module, pname, default)
        out[pname] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    return out


def derivative_for(module: nn.Module) -> Derivative | None:
    """The elementwise derivative of an activation module, or ``None`` if unknown."""
    k = kind_of(module)
    return None if k is None else k.derivative(params_of(module), module)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def spec_of(module: nn.Module | None) -> str | None:
    """The activation in the zoo syntax, parameters that differ from the default written out:
    ``leaky_relu(negative_slope=0.2)``, ``hardtanh(min_val=-2, max_val=2)``; ``linear`` for
    None (no activation); None for modules that are not activations."""
    if module is None:
        return "linear"
    k = kind_of(module)
    if k is None:
        return None
    p = params_of(module)
    changed = [f"{n}={_fmt(p[n])}" for n, d in k.params if p.get(n) != d]
    return f"{k.name}({', '.join(changed)})" if changed else k.name


def theory_spec_from(name: str | None, params: Mapping[str, Any]) -> str | None:
    """The ``gradmedic.theory.get_activation`` spec for an activation ``name`` with ``params``,
    or None when theory does not model it with those parameters (a parameter theory does not
    take differs from its default, e.g. GELU's tanh approximation)."""
    k = KINDS.get(_ALIASES.get(str(name), str(name))) if name else None
    if k is None or k.theory_params is None:
        return None
    defaults = dict(k.params)
    for pname, default in defaults.items():
        numerical_switch = pname == "threshold" and k.name == "softplus"
        changed = params.get(pname, default) != default
        if pname not in k.theory_params and changed and not numerical_switch:
            return None
    parts = [
        f"{n}={_fmt(float(params.get(n, defaults[n])))}"
        for n in k.theory_params
        if float(params.get(n, defaults[n])) != float(defaults[n])
    ]
    return f"{k.name}({', '.join(parts)})" if parts else k.name


def theory_spec(module: nn.Module) -> str | None:
    """The theory spec of an activation module (see :func:`theory_spec_from`)."""
    k = kind_of(module)
    return None if k is None else theory_spec_from(k.name, params_of(module))


def functional_kind(fn: Any) -> ActivationKind | None:
    """The kind a functional call computes (``torch.sigmoid`` -> sigmoid), or None."""
    try:
        return _FUNCTIONS.get(fn)
    except TypeError:  # unhashable callables
        return None


def resolve_name(name: str) -> ActivationKind:
    """The kind for a name or alias (case-insensitive, ``-`` as ``_``); raises
    :class:`~gradmedic.errors.UnknownNameError` listing the valid names."""
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in KINDS:
        raise unknown_name("activation", name.strip(), KINDS)
    return KINDS[key]


def make_activation(spec: str) -> nn.Module:
    """Build an activation module from ``relu``, ``leaky_relu(0.2)``, ``elu(alpha=0.5)``,
    ``hardtanh(-2, 2)`` or ``softplus(beta=2)``; ``linear`` gives ``nn.Identity``.

    Raises :class:`~gradmedic.errors.ConfigError` for an unknown name, a parameter the
    activation does not take, or a value of the wrong type.

    >>> make_activation("leaky_relu(0.2)")
    LeakyReLU(negative_slope=0.2)
    """
    name, bound = bind_activation(spec)
    return KINDS[name].build(**bound)


def bind_activation(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse ``spec`` and bind its arguments to the kind's parameters: ``(name, params)``."""
    raw, args, kwargs = parse_call(spec, what="activation")
    k = resolve_name(raw)
    names = k.param_names
    usage = f"{k.name}({', '.join(names)})" if names else k.name
    if len(args) > len(names):
        raise ConfigError(
            f"activation '{spec}' takes at most {len(names)} argument(s); write it as {usage}"
        )
    bound = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names or key in bound:
            raise ConfigError(
                f"activation '{spec}' has no parameter '{key}' (or it is given twice); "
                f"write it as {usage}"
            )
        bound[key] = value
    defaults = dict(k.params)
    for key, value in bound.items():
        if isinstance(defaults[key], str):
            if not isinstance(value, str):
                raise ConfigError(f"activation '{spec}': {key} must be a name, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"activation '{spec}': {key} must be a number, got {value!r}; "
                f"e.g. {k.name}({defaults[key]})"
            )
    if k.name == "gelu" and bound.get("approximate", "none") not in ("none", "tanh"):
        raise ConfigError(f"activation '{spec}': approximate must be none or tanh")
    return k.name, bound
