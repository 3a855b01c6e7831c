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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from gradmedic._callspec import parse_call
from gradmedic.errors import ConfigError, unknown_name

__all__ = [
    "ACTIVATION_TYPES",
    "KINDS",
    "SATURATION_FRACTION",
    "SWAP_TARGETS",
    "ActivationKind",
    "Derivative",
    "derivative_for",
    "functional_kind",
    "is_activation",
    "kind_of",
    "make_activation",
    "params_of",
    "spec_of",
    "theory_spec",
]

#: Fraction of the maximum slope below which a unit counts as saturated.
SATURATION_FRACTION = 0.01

Tensor = torch.Tensor
DerivFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Derivative:
    """The elementwise derivative of one activation module and its largest absolute value.

    ``active``: for slopes that are 0 or 1 only (relu, relu6, hardtanh, threshold), the boolean
    mask where ``phi' = 1``; cheaper to count than the float derivative.
    """

    name: str
    fn: DerivFn
    max_slope: float
    active: Callable[[Tensor], Tensor] | None = None

    def count_active(self, x: Tensor) -> Tensor:
        """Number of entries where phi' = 1 (only for 0/1 slopes)."""
        if self.name == "relu":  # clamp + sign + sum: 2-3x cheaper than summing a bool mask
            return x.clamp(min=0).sign_().sum()
        return self.active(x).sum()  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# derivatives (torch, elementwise)

_SQRT_2PI = math.sqrt(2.0 * math.pi)
SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772


def _mask(lo: float | None, hi: float | None) -> Callable[[Tensor], Tensor]:
    def fn(x: Tensor) -> Tensor:
        if hi is None:
            return x > lo
        if lo is None:
            return x < hi
        return (x > lo) & (x < hi)

    return fn


def _step(lo: float | None, hi: float | None) -> DerivFn:
    mask = _mask(lo, hi)
    return lambda x: mask(x).to(x.dtype)


def _leaky(slope: float | Tensor) -> DerivFn:
    def fn(x: Tensor) -> Tensor:
        s = slope
        if isinstance(s, Tensor) and s.numel() > 1 and x.dim() >= 2:
            s = s.detach().to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
        elif isinstance(s, Tensor):
            s = s.detach().to(x.dtype).reshape(())
        return torch.where(x > 0, torch.ones_like(x), torch.zeros_like(x) + s)

    return fn


def _elu(alpha: float, scale: float = 1.0) -> DerivFn:
    def fn(x: Tensor) -> Tensor:
        return scale * torch.where(x > 0, torch.ones_like(x), alpha * torch.exp(x.clamp(max=0)))

    return fn


def _dsigmoid(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _dtanh(x: Tensor) -> Tensor:
    return 1 - torch.tanh(x).square()


def _dgelu(x: Tensor) -> Tensor:
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * x.square()) / _SQRT_2PI
    return cdf + x * pdf


def _dsilu(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _dsoftsign(x: Tensor) -> Tensor:
    return (1 + x.abs()).reciprocal().square()


def _dhardswish(x: Tensor) -> Tensor:  # x relu6(x + 3) / 6: slope (2x + 3) / 6 on (-3, 3)
    inner = (x > -3) & (x < 3)
    return torch.where(x >= 3, torch.ones_like(x), inner * (2 * x + 3) / 6)


def _dmish(x: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(F.mish(x).sum(), x)
    return g


def _dcelu(alpha: float) -> DerivFn:
    return lambda x: torch.where(x > 0, torch.ones_like(x), torch.exp(x.clamp(max=0) / alpha))


def _dshrink(lam: float) -> DerivFn:
    return lambda x: (x.abs() > lam).to(x.dtype)


# --------------------------------------------------------------------------------------------
# the registry


@dataclass(frozen=True)
class ActivationKind:
    """One elementwise activation, as every part of gradmedic sees it.

    ``params``: constructor parameters with their defaults, in positional order, read back
    from the module attribute of the same name. ``derivative(params, module)`` builds the
    :class:`Derivative`. ``theory_params``: the parameters theory's activation of the same
    name takes (None: theory does not model this kind). ``tails``: ``"both"`` when the slope
    vanishes on both tails (units *saturate*), ``"negative"`` when only below zero (units are
    *inactive*, and dead when inactive on every sample), ``"none"`` otherwise.
    ``nonnegative``: outputs are never negative (a dead unit is then one whose output is 0).
    ``functions``: functional forms computing the same thing; ``methods``: tensor methods.
    ``swap_target``: offered by the activation-swap remedy.
    """

    name: str
    torch_type: type[nn.Module]
    derivative: Callable[[Mapping[str, Any], nn.Module | None], Derivative]
    params: tuple[tuple[str, Any], ...] = ()
    theory_params: tuple[str, ...] | None = None
    tails: Literal["both", "negative", "none"] = "none"
    nonnegative: bool = False
    functions: tuple[Any, ...] = ()
    methods: tuple[str, ...] = ()
    swap_target: bool = False
    aliases: tuple[str, ...] = field(default=())

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.params)

    @property
    def saturates(self) -> bool:
        """True when the zero-slope side is called *saturated* (both tails)."""
        return self.tails == "both"

    def build(self, **params: Any) -> nn.Module:
        """A fresh module of this kind with ``params`` (defaults for the rest)."""
        if self.torch_type is nn.Identity:
            return nn.Identity()
        return self.torch_type(**params)


def _k(
    name: str,
    torch_type: type[nn.Module],
    derivative: Callable[[Mapping[str, Any], nn.Module | None], Derivative],
    **kw: Any,
) -> ActivationKind:
    return ActivationKind(name, torch_type, derivative, **kw)


def _const(name: str, fn: DerivFn, top: float, active: Any = None) -> Any:
    return lambda p, m: Derivative(name, fn, top, active)


def _prelu_derivative(p: Mapping[str, Any], m: nn.Module | None) -> Derivative:
    w = m.weight if m is not None else torch.tensor(float(p.get("init", 0.25)))
    top = float(w.detach().abs().max())
    return Derivative("prelu", _leaky(w), max(1.0, top))


def _softplus_derivative(p: Mapping[str, Any], m: nn.Module | None) -> Derivative:
    b = float(p["beta"])
    return Derivative("softplus", lambda x: torch.sigmoid(b * x), 1.0)


#: Every activation kind, by canonical name (the zoo, theory and CLI syntax). Order matters
#: for :func:`kind_of`: a subclass (ReLU6 of Hardtanh) comes before its base.
KINDS: dict[str, ActivationKind] = {
    k.name: k
    for k in (
        _k(
            "sigmoid",
            nn.Sigmoid,
            _const("sigmoid", _dsigmoid, 0.25),
            theory_params=(),
            tails="both",
            nonnegative=True,
            functions=(torch.sigmoid, F.sigmoid),
            methods=("sigmoid", "sigmoid_"),
            swap_target=True,
            aliases=("logistic",),
        ),
        _k(
            "tanh",
            nn.Tanh,
            _const("tanh", _dtanh, 1.0),
            theory_params=(),
            tails="both",
            functions=(torch.tanh, F.tanh),
            methods=("tanh", "tanh_"),
            swap_target=True,
        ),
        _k(
            "relu6",
            nn.ReLU6,
            _const("relu6", _step(0.0, 6.0), 1.0, _mask(0.0, 6.0)),
            theory_params=None,
            tails="both",
            nonnegative=True,
            functions=(F.relu6,),
        ),
        _k(
            "relu",
            nn.ReLU,
            _const("relu", _step(0.0, None), 1.0, _mask(0.0, None)),
            theory_params=(),
            tails="negative",
            nonnegative=True,
            functions=(torch.relu, F.relu),
            methods=("relu", "relu_"),
            swap_target=True,
        ),
        _k(
            "leaky_relu",
            nn.LeakyReLU,
            lambda p, m: Derivative(
                "leaky_relu",
                _leaky(float(p["negative_slope"])),
                max(1.0, abs(float(p["negative_slope"]))),
            ),
            params=(("negative_slope", 0.01),),
            theory_params=("negative_slope",),
            tails="none",
            functions=(F.leaky_relu,),
            swap_target=True,
            aliases=("leakyrelu",),
        ),
        _k("prelu", nn.PReLU, _prelu_derivative, tails="none"),
        _k(
            "rrelu",  # random slope in training; its mean in expectation
            nn.RReLU,
            lambda p, m: Derivative(
                "rrelu", _leaky((float(p["lower"]) + float(p["upper"])) / 2), 1.0
            ),
            params=(("lower", 1.0 / 8), ("upper", 1.0 / 3)),
            tails="none",
        ),
        _k(
            "celu",
            nn.CELU,
            lambda p, m: Derivative("celu", _dcelu(float(p["alpha"])), 1.0),
            params=(("alpha", 1.0),),
            tails="negative",
            functions=(F.celu,),
        ),
        _k(
            "elu",
            nn.ELU,
            lambda p, m: Derivative("elu", _elu(float(p["alpha"])), max(1.0, float(p["alpha"]))),
            params=(("alpha", 1.0),),
            theory_params=("alpha",),
            tails="negative",
            functions=(F.elu,),
            swap_target=True,
        ),
        _k(
            "selu",
            nn.SELU,
            _const("selu", _elu(SELU_ALPHA, SELU_LAMBDA), SELU_LAMBDA * max(1.0, SELU_ALPHA)),
            theory_params=(),
            tails="negative",
            functions=(torch.selu, F.selu),
            swap_target=True,
        ),
        _k(
            "gelu",
            nn.GELU,
            _const("gelu", _dgelu, 1.128904),
            params=(("approximate", "none"),),
            theory_params=(),
            tails="negative",
            functions=(F.gelu,),
            swap_target=True,
        ),
        _k(
            "silu",
            nn.SiLU,
            _const("silu", _dsilu, 1.099839),
            theory_params=(),
            tails="negative",
            functions=(F.silu,),
            swap_target=True,
            aliases=("swish",),
        ),
        _k(
            "softsign",
            nn.Softsign,
            _const("softsign", _dsoftsign, 1.0),
            theory_params=(),
            tails="both",
            functions=(F.softsign,),
        ),
        _k(
            "hardtanh",
            nn.Hardtanh,
            lambda p, m: Derivative(
                "hardtanh",
                _step(float(p["min_val"]), float(p["max_val"])),
                1.0,
                _mask(float(p["min_val"]), float(p["max_val"])),
            ),
            params=(("min_val", -1.0), ("max_val", 1.0)),
            theory_params=("min_val", "max_val"),
            tails="both",
            functions=(F.hardtanh,),
            aliases=("hard_tanh",),
        ),
        _k(
            "hardsigmoid",
            nn.Hardsigmoid,
            _const("hardsigmoid", lambda x: _step(-3.0, 3.0)(x) / 6.0, 1.0 / 6.0),
            tails="both",
            nonnegative=True,
            functions=(F.hardsigmoid,),
        ),
        _k(
            "hardswish",
            nn.Hardswish,
            _const("hardswish", _dhardswish, 1.5),
            theory_params=(),
            tails="negative",
            functions=(F.hardswish,),
        ),
        _k(
            "mish",
            nn.Mish,
            _const("mish", _dmish, 1.088498),
            theory_params=(),
            tails="negative",
            functions=(F.mish,),
        ),
        _k(
            "softplus",
            nn.Softplus,
            _softplus_derivative,
            params=(("beta", 1.0), ("threshold", 20.0)),
            theory_params=("beta",),
            tails="negative",
            functions=(F.softplus,),
        ),
        _k(
            "logsigmoid",
            nn.LogSigmoid,
            _const("logsigmoid", lambda x: torch.sigmoid(-x), 1.0),
            tails="none",
            functions=(F.logsigmoid,),
        ),
        _k(
            "tanhshrink",
            nn.Tanhshrink,
            _const("tanhshrink", lambda x: torch.tanh(x).square(), 1.0),
            tails="none",
        ),
        _k(
            "softshrink",
            nn.Softshrink,
            lambda p, m: Derivative(
                "softshrink",
                _dshrink(float(p["lambd"])),
                1.0,
                lambda x, lam=float(p["lambd"]): x.abs() > lam,
            ),
            params=(("lambd", 0.5),),
            tails="none",
        ),
        _k(
            "hardshrink",
            nn.Hardshrink,
            lambda p, m: Derivative(
                "hardshrink",
                _dshrink(float(p["lambd"])),
                1.0,
                lambda x, lam=float(p["lambd"]): x.abs() > lam,
            ),
            params=(("lambd", 0.5),),
            tails="none",
        ),
        _k(
            "threshold",
            nn.Threshold,
            lambda p, m: Derivative(
                "threshold",
                _step(float(p["threshold"]), None),
                1.0,
                _mask(float(p["threshold"]), None),
            ),
            params=(("threshold", 0.0), ("value", 0.0)),
            tails="negative",
        ),
        _k(
            "linear",
            nn.Identity,
            _const("linear", torch.ones_like, 1.0),
            theory_params=(),
            tails="none",
            aliases=("identity",),
        ),
    )
}

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
