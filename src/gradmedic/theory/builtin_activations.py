"""The built-in activations: numpy ``phi``, ``phi'``, ``phi''`` with their kinks and ``sup |phi'|``.

Each factory builds one :class:`~gradmedic.theory.activations.Activation`; its parameters and
defaults follow the PyTorch module of the same name (``nn.LeakyReLU(negative_slope=0.01)``,
``nn.ELU(alpha=1)``, ``nn.Hardtanh(min_val=-1, max_val=1)``, ``nn.Softplus(beta=1)``). SELU uses
the constants of Klambauer et al. 2017, GELU the exact ``x Phi(x)`` (Hendrycks & Gimpel 2016).
:func:`gradmedic.theory.get_activation` looks names up in :data:`BUILTINS`.

Example::

    >>> act = BUILTINS["leaky_relu"].factory(negative_slope=0.2)
    >>> act.spec, act.linear_slopes, act.gamma
    ('leaky_relu(negative_slope=0.2)', (1.0, 0.2), 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from gradmedic.errors import ConfigError
from gradmedic.theory import _elementwise as ew
from gradmedic.theory._elementwise import Array
from gradmedic.theory.activations import Activation

__all__ = ["BUILTINS", "NAME_ALIASES", "Entry"]

_SELU_LAMBDA = 1.0507009873554805
_SELU_ALPHA = 1.6732632423543772


def _make_sigmoid() -> Activation:
    return Activation(
        "sigmoid", ew.sigmoid, ew.dsigmoid, ew.d2sigmoid, gamma_value=0.25, _key=("sigmoid",)
    )


def _make_tanh() -> Activation:
    return Activation("tanh", np.tanh, ew.dtanh, ew.d2tanh, gamma_value=1.0, _key=("tanh",))


def _piecewise_linear(name: str, slope_pos: float, slope_neg: float, params: tuple) -> Activation:
    def phi(x: Array) -> Array:
        return np.where(x > 0, slope_pos * x, slope_neg * x)

    def dphi(x: Array) -> Array:
        return np.where(x > 0, slope_pos, slope_neg) + 0.0 * x

    return Activation(
        name,
        phi,
        dphi,
        ew.zeros,
        params=params,
        kinks=(0.0,),
        gamma_value=max(abs(slope_pos), abs(slope_neg)),
        linear_slopes=(slope_pos, slope_neg),
        _key=(name, params),
    )


def _make_relu() -> Activation:
    return _piecewise_linear("relu", 1.0, 0.0, ())


def _make_leaky_relu(negative_slope: float = 0.01) -> Activation:
    return _piecewise_linear(
        "leaky_relu", 1.0, negative_slope, (("negative_slope", negative_slope),)
    )


def _make_linear() -> Activation:
    return Activation(
        "linear",
        ew.identity,
        ew.ones,
        ew.zeros,
        gamma_value=1.0,
        linear_slopes=(1.0, 1.0),
        _key=("linear",),
    )


def _make_elu(alpha: float = 1.0) -> Activation:
    if not alpha > 0:
        raise ConfigError(f"elu alpha must be > 0 (PyTorch's default is 1.0); got {alpha:g}")
    f, df, d2f = ew.elu_parts(alpha, 1.0)
    params = (("alpha", alpha),)
    return Activation(
        "elu", f, df, d2f, params, (0.0,), gamma_value=max(1.0, alpha), _key=("elu", params)
    )


def _make_selu() -> Activation:
    f, df, d2f = ew.elu_parts(_SELU_ALPHA, _SELU_LAMBDA)
    return Activation(
        "selu",
        f,
        df,
        d2f,
        kinks=(0.0,),
        gamma_value=_SELU_LAMBDA * _SELU_ALPHA,
        _key=("selu",),
    )


def _make_gelu() -> Activation:
    # phi''(x) = pdf(x) (2 - x^2) = 0 at x = +-sqrt(2): max phi' = Phi(sqrt 2) + sqrt(2) pdf(sqrt 2)
    top = float(ew.dgelu(np.array(math.sqrt(2.0))))
    return Activation("gelu", ew.gelu, ew.dgelu, ew.d2gelu, gamma_value=top, _key=("gelu",))


def _make_silu() -> Activation:
    return Activation("silu", ew.silu, ew.dsilu, ew.d2silu, _key=("silu",))


def _make_softsign() -> Activation:
    return Activation(
        "softsign",
        ew.softsign,
        ew.dsoftsign,
        ew.d2softsign,
        kinks=(0.0,),
        gamma_value=1.0,
        _key=("softsign",),
    )


def _make_softplus(beta: float = 1.0) -> Activation:
    """softplus(x) = log(1 + e^(beta x)) / beta (PyTorch's ``nn.Softplus(beta)``):
    phi' = sigmoid(beta x), so sup phi' = 1; phi'' = beta sigmoid'(beta x)."""
    if not beta > 0:
        raise ConfigError(f"softplus needs beta > 0 (PyTorch's default is 1); got beta={beta:g}")
    if beta == 1.0:
        return Activation(
            "softplus", ew.softplus, ew.sigmoid, ew.dsigmoid, gamma_value=1.0, _key=("softplus",)
        )

    def phi(x: Array) -> Array:
        return ew.softplus(beta * x) / beta

    def dphi(x: Array) -> Array:
        return ew.sigmoid(beta * x)

    def d2phi(x: Array) -> Array:
        return beta * ew.dsigmoid(beta * x)

    params = (("beta", beta),)
    return Activation(
        "softplus", phi, dphi, d2phi, params, gamma_value=1.0, _key=("softplus", params)
    )


def _make_mish() -> Activation:
    """mish(x) = x tanh(softplus(x)) (Misra 2019)."""
    return Activation("mish", ew.mish, ew.dmish, ew.d2mish, _key=("mish",))


def _make_hardswish() -> Activation:
    """hardswish(x) = x relu6(x + 3) / 6 (Howard et al. 2019): slope (2x + 3)/6 on (-3, 3)."""
    return Activation(
        "hardswish",
        ew.hardswish,
        ew.dhardswish,
        ew.d2hardswish,
        kinks=(-3.0, 3.0),
        gamma_value=1.5,
        _key=("hardswish",),
    )


def _make_hardtanh(min_val: float = -1.0, max_val: float = 1.0) -> Activation:
    if not min_val < max_val:
        raise ConfigError(
            f"hardtanh needs min_val < max_val (PyTorch's default is -1, 1); "
            f"got min_val={min_val:g}, max_val={max_val:g}"
        )

    def phi(x: Array) -> Array:
        return np.clip(x, min_val, max_val)

    def dphi(x: Array) -> Array:
        return ((x > min_val) & (x < max_val)).astype(float)

    params = (("min_val", min_val), ("max_val", max_val))
    return Activation(
        "hardtanh",
        phi,
        dphi,
        ew.zeros,
        params,
        kinks=(min_val, max_val),
        gamma_value=1.0,
        _key=("hardtanh", params),
    )


@dataclass(frozen=True)
class Entry:
    """One built-in: its factory, its parameter names in positional order, parameter aliases."""

    factory: Callable[..., Activation]
    params: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)


#: The built-in activations by canonical name.
BUILTINS: dict[str, Entry] = {
    "sigmoid": Entry(_make_sigmoid),
    "tanh": Entry(_make_tanh),
    "relu": Entry(_make_relu),
    "leaky_relu": Entry(
        _make_leaky_relu, ("negative_slope",), {"slope": "negative_slope", "a": "negative_slope"}
    ),
    "elu": Entry(_make_elu, ("alpha",)),
    "selu": Entry(_make_selu),
    "gelu": Entry(_make_gelu),
    "silu": Entry(_make_silu),
    "softsign": Entry(_make_softsign),
    "softplus": Entry(_make_softplus, ("beta",)),
    "mish": Entry(_make_mish),
    "hardswish": Entry(_make_hardswish),
    "hardtanh": Entry(_make_hardtanh, ("min_val", "max_val"), {"min": "min_val", "max": "max_val"}),
    "linear": Entry(_make_linear),
}

#: Other names for built-ins (after lower-casing and ``-`` -> ``_``).
NAME_ALIASES = {
    "logistic": "sigmoid",
    "leakyrelu": "leaky_relu",
    "swish": "silu",
    "identity": "linear",
    "hard_tanh": "hardtanh",
}
