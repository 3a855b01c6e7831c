""":func:`get_activation`: resolve an activation name, a spec string such as ``"leaky_relu(0.2)"``
or ``"elu(alpha=0.5)"``, an :class:`Activation` or a callable into an :class:`Activation`.

Names are looked up in :data:`gradmedic.theory.builtin_activations.BUILTINS`; spec strings are
read by :func:`gradmedic._callspec.parse_call`, the one ``name(args)`` parser of gradmedic, and
their positional arguments follow the PyTorch module's (``hardtanh(min_val, max_val)``).

Example::

    >>> get_activation("hardtanh(-2, 2)").spec
    'hardtanh(min_val=-2, max_val=2)'
    >>> get_activation("softplus", beta=2).gamma
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any, Union

from gradmedic._callspec import parse_call
from gradmedic.errors import ConfigError, unknown_name
from gradmedic.theory.activations import Activation
from gradmedic.theory.builtin_activations import BUILTINS, NAME_ALIASES

__all__ = ["ActivationLike", "activation_names", "as_activation", "get_activation"]

#: What every theory function accepts as ``act``.
ActivationLike = Union[str, Activation, Callable[[Any], Any]]  # noqa: UP007 (runtime alias)

_EXAMPLES = "e.g. 'tanh', 'leaky_relu(0.2)' or 'elu(alpha=0.5)'"


def activation_names() -> tuple[str, ...]:
    """The built-in activation names, sorted.

    >>> activation_names()[:3]
    ('elu', 'gelu', 'hardswish')
    """
    return tuple(sorted(BUILTINS))


def _number(value: Any, spec: str) -> Any:
    """A parameter value read from ``spec``, refused with a hint unless it is a number."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(
            f"could not read {value!r} in activation '{spec}' as a number; write {_EXAMPLES}"
        )
    return value


def get_activation(spec: ActivationLike, **params: float) -> Activation:
    """Resolve an activation name, spec string, :class:`Activation` or callable.

    Names with parameters parse like Python calls (:func:`gradmedic._callspec.parse_call`):
    ``"leaky_relu(0.2)"``, ``"leaky_relu(negative_slope=0.2)"``, ``"elu(alpha=0.5)"``,
    ``"hardtanh(-2, 2)"``; keyword arguments work too (``get_activation("elu", alpha=0.5)``).
    Built-ins: sigmoid, tanh, relu, leaky_relu (negative_slope=0.01), elu (alpha=1), selu
    (PyTorch constants), gelu (exact, ``x Phi(x)``), silu, softsign, softplus (beta=1), mish,
    hardswish, hardtanh (min_val=-1, max_val=1), linear. Names are case-insensitive and ``-``
    reads as ``_``; aliases: logistic, leakyrelu, swish, identity, hard_tanh.

    Raises :class:`~gradmedic.errors.UnknownNameError` for an unknown name (with the valid
    ones) and :class:`~gradmedic.errors.ConfigError` for a malformed spec, a parameter the
    activation does not take, one given twice, or a value that is not a finite number.

    Example::

        >>> get_activation("elu(alpha=0.5)").spec
        'elu(alpha=0.5)'
        >>> get_activation("Tanh").name
        'tanh'
    """
    if isinstance(spec, Activation):
        if params:
            raise ConfigError("parameters cannot be applied to an Activation instance")
        return spec
    if not isinstance(spec, str):
        if callable(spec):
            if params:
                raise ConfigError(
                    "parameters cannot be applied to a callable; bind them in the function"
                )
            return Activation.from_callable(spec)
        raise ConfigError(
            f"activation must be a name such as 'tanh', an Activation or a callable; "
            f"got {type(spec).__name__}"
        )
    if not spec.strip():
        raise ConfigError(f"empty activation; write a name with optional arguments, {_EXAMPLES}")
    name, args, kwargs = parse_call(spec, what="activation")
    key = name.replace("-", "_")
    key = NAME_ALIASES.get(key, key)
    entry = BUILTINS.get(key)
    if entry is None:
        raise unknown_name("activation", name, BUILTINS)
    takes = ", ".join(entry.params) if entry.params else "no parameters"
    values: dict[str, float] = {}

    def put(pname: str, value: Any) -> None:
        canonical = entry.aliases.get(pname, pname)
        if canonical not in entry.params:
            raise ConfigError(f"activation '{key}' takes {takes}; got '{pname}'")
        if canonical in values:
            raise ConfigError(f"activation '{key}': parameter '{canonical}' given twice")
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ConfigError(
                f"activation '{key}': parameter '{canonical}' must be a finite number; "
                f"got {value!r}"
            )
        values[canonical] = float(value)

    if len(args) > len(entry.params):
        raise ConfigError(
            f"activation '{key}' takes {takes}; could not place '{args[len(entry.params)]}' "
            f"in '{spec}'"
        )
    for pname, value in zip(entry.params, args, strict=False):
        put(pname, _number(value, spec))
    for pname, value in kwargs.items():
        put(pname, _number(value, spec))
    for pname, value in params.items():
        put(pname, value)
    return entry.factory(**values)


def as_activation(act: ActivationLike) -> Activation:
    """``act`` itself if it is an :class:`Activation`, else :func:`get_activation` of it."""
    return act if isinstance(act, Activation) else get_activation(act)
