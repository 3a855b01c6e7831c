"""Mean-field theory of gradient flow: how deep a network can be before gradients vanish or explode.

This module predicts, from the activation function and the initialisation variances alone, how the
norm of the backward signal ``delta^l = dLoss/dh^l`` changes from layer to layer in a wide, randomly
initialised fully-connected network, and how the same question looks for a recurrent weight matrix.
It needs only numpy (no torch), so the CLI command ``gradmedic theory`` stays fast.

Notation (Poole et al. 2016; Schoenholz et al. 2017): ``h^l = W^l phi(h^{l-1}) + b^l`` with
``W_ij ~ N(0, sw2 / N)`` and ``b_i ~ N(0, sb2)``; ``z`` is a standard normal variable.

* Length map (Poole et al., "Exponential expressivity in deep neural networks through transient
  chaos", NeurIPS 2016, Sec. 2)::

      q^l = sw2 * E[phi(sqrt(q^{l-1}) z)^2] + sb2,        q* = its fixed point.

* The slope of the correlation map at c = 1, the single most useful number::

      chi1 = sw2 * E[phi'(sqrt(q*) z)^2].

  chi1 < 1 is the *ordered* phase (inputs collapse, gradients vanish), chi1 > 1 the *chaotic*
  phase (gradients explode), chi1 = 1 the critical line ("edge of chaos").

* Backprop (Schoenholz, Gilmer, Ganguli, Sohl-Dickstein, "Deep Information Propagation",
  ICLR 2017, Sec. 5): with equal widths, ``E[(delta^l)^2] = chi1 * E[(delta^{l+1})^2]``, so the
  squared norm of ``dLoss/dh`` shrinks by ``chi1`` per layer and the norm by ``sqrt(chi1)``::

      ||dL/dh^1||^2 / ||dL/dh^L||^2 = chi1^(L-1),     xi_grad = -1 / log(chi1).

  A negative ``xi_grad`` means exploding gradients.

* Depth scales (Schoenholz Sec. 3): ``xi_q`` (length convergence), ``xi_c`` (how many layers keep
  two inputs distinguishable). Networks train roughly iff ``L < 6 xi_c``.

* RNNs (Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural networks",
  ICML 2013): with ``gamma = sup |phi'|``, a largest singular value ``lambda1 < 1/gamma`` of
  ``W_rec`` is sufficient for vanishing gradients and ``lambda1 > 1/gamma`` is necessary for
  exploding ones.

Example::

    >>> round(critical_sigma_w2("tanh", 0.05), 4)          # edge of chaos for tanh, sb2 = 0.05
    1.761
    >>> chi1("relu", 2.0, 0.0)                              # He init is critical for ReLU
    1.0
    >>> r = predicted_gradient_ratio("relu", 1.0, 0.0, depth=30)
    >>> f"{r.norm_ratio:.2g}"                               # ||dL/dh^1|| / ||dL/dh^30||
    '4.3e-05'

Numerics. Gaussian expectations use composite Gauss-Legendre quadrature on panels whose edges sit
on every kink of the activation (0 for ReLU, +-1 for hardtanh), on a unit grid in the standard
normal variable and on a unit grid in the pre-activation itself (so that ``tanh(sqrt(q) z)`` is
resolved even for large ``q``). This is exact to ~1e-13 for kinked activations, where plain
Gauss-Hermite quadrature converges slowly; ``gaussian_expectation(..., method="hermite")`` gives
the Gauss-Hermite answer for comparison. Piecewise-linear activations (relu, leaky_relu, linear)
use closed forms. Root finding is Brent's method, written out here (scipy is not a dependency).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from numbers import Integral, Real
from typing import Any, Literal, Union

import numpy as np

from gradmedic.errors import ConfigError, unknown_name

__all__ = [
    "CRITICAL_TOL",
    "TRAINABLE_XI_C_FACTOR",
    "Activation",
    "ActivationLike",
    "CriticalPoint",
    "DepthScales",
    "DerivativeExtrema",
    "GradientRatio",
    "PascanuBound",
    "activation_names",
    "chi1",
    "correlation_map",
    "critical_line",
    "critical_line_from_q",
    "critical_point_at_q",
    "critical_sigma_w2",
    "depth_scales",
    "e_dphi",
    "e_dphi_sq",
    "e_phi_sq",
    "expected_layer_gain",
    "fixed_point_c",
    "fixed_point_q",
    "format_summary",
    "gaussian_expectation",
    "get_activation",
    "length_map",
    "pascanu_bound",
    "phase",
    "predicted_gradient_ratio",
    "summary",
    "xi_c",
    "xi_grad",
    "xi_q",
]

#: ``|chi1 - 1|`` below this counts as critical: xi_grad = -1/log(chi1) is then >= ~1000 layers,
#: so no network of practical depth sees an exponential trend in its gradient norms.
CRITICAL_TOL = 1e-3

#: Schoenholz et al. 2017: networks train roughly iff depth < 6 xi_c.
TRAINABLE_XI_C_FACTOR = 6.0

#: Length maps that grow past this are reported as divergent (q* = inf).
_Q_DIVERGED = 1e12

_SELU_LAMBDA = 1.0507009873554805
_SELU_ALPHA = 1.6732632423543772
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_EPS = float(np.finfo(float).eps)

Array = np.ndarray
Fn = Callable[[Array], Array]


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DerivativeExtrema:
    """Largest and smallest value of ``phi'`` on [-20, 20] and where they occur.

    ``sup_abs = max(|max_value|, |min_value|)`` is Pascanu's ``gamma`` unless the activation
    states a closed-form value (ELU's supremum ``alpha`` at ``0-`` is not attained).
    """

    max_value: float
    argmax: float
    min_value: float
    argmin: float

    @property
    def sup_abs(self) -> float:
        return max(abs(self.max_value), abs(self.min_value))


@dataclass(frozen=True, eq=False)
class Activation:
    """An elementwise activation ``phi`` with its derivatives, for numpy arrays.

    Build one with :func:`get_activation` (``"tanh"``, ``"leaky_relu(0.2)"``,
    ``"elu(alpha=0.5)"``) or :meth:`from_callable` for your own function. Instances compare equal
    when they describe the same function, so results can be cached.

    Example::

        >>> act = get_activation("leaky_relu(0.2)")
        >>> act.spec, float(act.dphi(np.array(-1.0))), act.gamma
        ('leaky_relu(negative_slope=0.2)', 0.2, 1.0)
    """

    name: str
    phi_fn: Fn
    dphi_fn: Fn
    d2phi_fn: Fn
    params: tuple[tuple[str, float], ...] = ()
    #: Points where phi, phi' or phi'' is not smooth; quadrature panels are split there.
    kinks: tuple[float, ...] = ()
    #: sup |phi'| in closed form, when known.
    gamma_value: float | None = None
    #: For piecewise-linear phi through 0: (slope for x > 0, slope for x < 0).
    linear_slopes: tuple[float, float] | None = None
    builtin: bool = True
    _key: tuple[Any, ...] = field(default=(), repr=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Activation) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    # -- evaluation -----------------------------------------------------------------------------
    def phi(self, x: Array | float) -> Array:
        """phi(x), elementwise, as float64."""
        return self.phi_fn(np.asarray(x, dtype=float))

    def dphi(self, x: Array | float) -> Array:
        """phi'(x), elementwise (closed form for built-ins, central difference otherwise)."""
        return self.dphi_fn(np.asarray(x, dtype=float))

    def d2phi(self, x: Array | float) -> Array:
        """phi''(x), elementwise (0 on linear pieces; kinks contribute no delta function)."""
        return self.d2phi_fn(np.asarray(x, dtype=float))

    def __call__(self, x: Array | float) -> Array:
        return self.phi(x)

    @property
    def spec(self) -> str:
        """A string that :func:`get_activation` parses back into this activation."""
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={v:g}" for k, v in self.params)
        return f"{self.name}({inner})"

    # -- derivative extrema ---------------------------------------------------------------------
    def dphi_extrema(self) -> DerivativeExtrema:
        """Max and min of phi' on [-20, 20] (grid of step 0.005, refined by golden section).

        Example (reference case 14)::

            >>> e = get_activation("gelu").dphi_extrema()
            >>> round(e.max_value, 6), round(e.argmax, 6), round(e.min_value, 6)
            (1.128904, 1.414214, -0.128904)
        """
        return _dphi_extrema(self)

    @property
    def gamma(self) -> float:
        """Pascanu's ``gamma = sup_x |phi'(x)|``: 1 for tanh, 1/4 for sigmoid.

        Also the slope against which saturation is measured (a unit whose ``|phi'|`` is far
        below ``gamma`` passes almost no gradient).
        """
        if self.gamma_value is not None:
            return self.gamma_value
        return self.dphi_extrema().sup_abs

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_callable(
        cls,
        fn: Callable[[Any], Any],
        name: str | None = None,
        *,
        dphi: Callable[[Any], Any] | None = None,
        d2phi: Callable[[Any], Any] | None = None,
        kinks: Iterable[float] = (),
        gamma: float | None = None,
    ) -> Activation:
        """Wrap a user function ``phi`` (numpy in, numpy out; scalar functions are vectorised).

        Missing derivatives come from central differences (step ~ eps^(1/3) for phi',
        eps^(1/4) for phi''; accurate to ~1e-10 and ~1e-7). Give ``kinks`` (points where phi
        or phi' is not smooth) for exact quadrature of kinked functions; 0 and the integers in
        [-10, 10] are panel edges anyway.

        Example::

            >>> act = Activation.from_callable(np.tanh, name="my_tanh")
            >>> abs(chi1(act, 2.0, 0.05) - chi1("tanh", 2.0, 0.05)) < 1e-8
            True
        """
        if not callable(fn):
            raise ConfigError(
                f"activation must be a name or a callable phi(x); got {type(fn).__name__}"
            )
        f = _vectorised(fn, "phi")
        df = _vectorised(dphi, "dphi") if dphi is not None else _central_diff(f)
        d2f = _vectorised(d2phi, "d2phi") if d2phi is not None else _second_diff(f)
        label = name or getattr(fn, "__name__", None) or "custom"
        kinks_t = tuple(sorted({float(k) for k in kinks}))
        if gamma is not None and not (math.isfinite(gamma) and gamma > 0):
            raise ConfigError(f"gamma must be a finite number > 0 (sup |phi'|); got {gamma!r}")
        return cls(
            name=str(label),
            phi_fn=f,
            dphi_fn=df,
            d2phi_fn=d2f,
            kinks=kinks_t,
            gamma_value=gamma,
            builtin=False,
            _key=("callable", *map(_hashable, (fn, dphi, d2phi)), kinks_t, gamma),
        )


def _hashable(obj: Any) -> Any:
    """``obj`` itself if hashable (functions hash by identity), else its id."""
    try:
        hash(obj)
    except TypeError:
        return ("id", id(obj))
    return obj


def _vectorised(fn: Callable[[Any], Any], what: str) -> Fn:
    """Return ``fn`` if it maps float arrays to same-shaped arrays, else ``np.vectorize(fn)``."""
    probe = np.array([-1.0, 0.0, 0.5])
    try:
        out = np.asarray(fn(probe), dtype=float)
        if out.shape == probe.shape:
            return lambda x: np.asarray(fn(x), dtype=float)
    except (TypeError, ValueError):
        pass
    vec = np.vectorize(lambda t: float(fn(float(t))), otypes=[float])
    try:
        vec(probe)
    except Exception as exc:
        raise ConfigError(
            f"custom activation {what} could not be evaluated on floats ({exc}); pass a "
            "function that takes a float or a numpy array"
        ) from exc
    return vec


def _central_diff(f: Fn) -> Fn:
    def df(x: Array) -> Array:
        h = 6e-6 * np.maximum(1.0, np.abs(x))
        return (f(x + h) - f(x - h)) / (2.0 * h)

    return df


def _second_diff(f: Fn) -> Fn:
    def d2f(x: Array) -> Array:
        h = 1.2e-4 * np.maximum(1.0, np.abs(x))
        return (f(x + h) - 2.0 * f(x) + f(x - h)) / (h * h)

    return d2f


# Built-in activation functions (numpy, float64, overflow-free) ---------------------------------


def _sigmoid(x: Array) -> Array:
    return np.exp(-np.logaddexp(0.0, -x))


def _dsigmoid(x: Array) -> Array:
    return _sigmoid(x) * _sigmoid(-x)


def _d2sigmoid(x: Array) -> Array:
    return _dsigmoid(x) * (1.0 - 2.0 * _sigmoid(x))


def _dtanh(x: Array) -> Array:
    t = np.tanh(x)
    return 1.0 - t * t


def _d2tanh(x: Array) -> Array:
    t = np.tanh(x)
    return -2.0 * t * (1.0 - t * t)


_erf_obj = np.frompyfunc(math.erf, 1, 1)


def _norm_cdf(x: Array) -> Array:
    return 0.5 * (1.0 + np.asarray(_erf_obj(np.asarray(x) / _SQRT2), dtype=float))


def _norm_pdf(x: Array) -> Array:
    return _INV_SQRT_2PI * np.exp(-0.5 * np.asarray(x) ** 2)


def _gelu(x: Array) -> Array:
    return x * _norm_cdf(x)


def _dgelu(x: Array) -> Array:
    return _norm_cdf(x) + x * _norm_pdf(x)


def _d2gelu(x: Array) -> Array:
    return _norm_pdf(x) * (2.0 - x * x)


def _silu(x: Array) -> Array:
    return x * _sigmoid(x)


def _dsilu(x: Array) -> Array:
    return _sigmoid(x) + x * _dsigmoid(x)


def _d2silu(x: Array) -> Array:
    return _dsigmoid(x) * (2.0 + x * (1.0 - 2.0 * _sigmoid(x)))


def _softsign(x: Array) -> Array:
    return x / (1.0 + np.abs(x))


def _dsoftsign(x: Array) -> Array:
    return 1.0 / (1.0 + np.abs(x)) ** 2


def _d2softsign(x: Array) -> Array:
    return -2.0 * np.sign(x) / (1.0 + np.abs(x)) ** 3


def _softplus(x: Array) -> Array:
    return np.logaddexp(0.0, x)


def _mish(x: Array) -> Array:
    return x * np.tanh(_softplus(x))


def _dmish(x: Array) -> Array:
    t = np.tanh(_softplus(x))
    return t + x * _sigmoid(x) * (1.0 - t * t)


def _d2mish(x: Array) -> Array:
    h = 1e-4
    return (_dmish(x + h) - _dmish(x - h)) / (2 * h)


def _hardswish(x: Array) -> Array:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def _dhardswish(x: Array) -> Array:
    return np.where(x >= 3.0, 1.0, np.where(x <= -3.0, 0.0, (2.0 * x + 3.0) / 6.0))


def _d2hardswish(x: Array) -> Array:
    return np.where((x > -3.0) & (x < 3.0), 1.0 / 3.0, 0.0)


def _identity(x: Array) -> Array:
    return x + 0.0


def _ones(x: Array) -> Array:
    return np.ones_like(x)


def _zeros(x: Array) -> Array:
    return np.zeros_like(x)


def _make_sigmoid() -> Activation:
    return Activation(
        "sigmoid", _sigmoid, _dsigmoid, _d2sigmoid, gamma_value=0.25, _key=("sigmoid",)
    )


def _make_tanh() -> Activation:
    return Activation("tanh", np.tanh, _dtanh, _d2tanh, gamma_value=1.0, _key=("tanh",))


def _piecewise_linear(name: str, slope_pos: float, slope_neg: float, params: tuple) -> Activation:
    def phi(x: Array) -> Array:
        return np.where(x > 0, slope_pos * x, slope_neg * x)

    def dphi(x: Array) -> Array:
        return np.where(x > 0, slope_pos, slope_neg) + 0.0 * x

    return Activation(
        name,
        phi,
        dphi,
        _zeros,
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
        _identity,
        _ones,
        _zeros,
        gamma_value=1.0,
        linear_slopes=(1.0, 1.0),
        _key=("linear",),
    )


def _elu_parts(alpha: float, scale: float) -> tuple[Fn, Fn, Fn]:
    def phi(x: Array) -> Array:
        return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))

    def dphi(x: Array) -> Array:
        return scale * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))

    def d2phi(x: Array) -> Array:
        return scale * np.where(x > 0, 0.0, alpha * np.exp(np.minimum(x, 0.0)))

    return phi, dphi, d2phi


def _make_elu(alpha: float = 1.0) -> Activation:
    if not alpha > 0:
        raise ConfigError(f"elu alpha must be > 0 (PyTorch's default is 1.0); got {alpha:g}")
    f, df, d2f = _elu_parts(alpha, 1.0)
    params = (("alpha", alpha),)
    return Activation(
        "elu", f, df, d2f, params, (0.0,), gamma_value=max(1.0, alpha), _key=("elu", params)
    )


def _make_selu() -> Activation:
    f, df, d2f = _elu_parts(_SELU_ALPHA, _SELU_LAMBDA)
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
    top = float(_dgelu(np.array(_SQRT2)))
    return Activation("gelu", _gelu, _dgelu, _d2gelu, gamma_value=top, _key=("gelu",))


def _make_silu() -> Activation:
    return Activation("silu", _silu, _dsilu, _d2silu, _key=("silu",))


def _make_softsign() -> Activation:
    return Activation(
        "softsign",
        _softsign,
        _dsoftsign,
        _d2softsign,
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
            "softplus", _softplus, _sigmoid, _dsigmoid, gamma_value=1.0, _key=("softplus",)
        )

    def phi(x: Array) -> Array:
        return _softplus(beta * x) / beta

    def dphi(x: Array) -> Array:
        return _sigmoid(beta * x)

    def d2phi(x: Array) -> Array:
        return beta * _dsigmoid(beta * x)

    params = (("beta", beta),)
    return Activation(
        "softplus", phi, dphi, d2phi, params, gamma_value=1.0, _key=("softplus", params)
    )


def _make_mish() -> Activation:
    """mish(x) = x tanh(softplus(x)) (Misra 2019)."""
    return Activation("mish", _mish, _dmish, _d2mish, _key=("mish",))


def _make_hardswish() -> Activation:
    """hardswish(x) = x relu6(x + 3) / 6 (Howard et al. 2019): slope (2x + 3)/6 on (-3, 3)."""
    return Activation(
        "hardswish",
        _hardswish,
        _dhardswish,
        _d2hardswish,
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
        _zeros,
        params,
        kinks=(min_val, max_val),
        gamma_value=1.0,
        _key=("hardtanh", params),
    )


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Activation]
    params: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {
    "sigmoid": _Entry(_make_sigmoid),
    "tanh": _Entry(_make_tanh),
    "relu": _Entry(_make_relu),
    "leaky_relu": _Entry(
        _make_leaky_relu, ("negative_slope",), {"slope": "negative_slope", "a": "negative_slope"}
    ),
    "elu": _Entry(_make_elu, ("alpha",)),
    "selu": _Entry(_make_selu),
    "gelu": _Entry(_make_gelu),
    "silu": _Entry(_make_silu),
    "softsign": _Entry(_make_softsign),
    "softplus": _Entry(_make_softplus, ("beta",)),
    "mish": _Entry(_make_mish),
    "hardswish": _Entry(_make_hardswish),
    "hardtanh": _Entry(
        _make_hardtanh, ("min_val", "max_val"), {"min": "min_val", "max": "max_val"}
    ),
    "linear": _Entry(_make_linear),
}

_NAME_ALIASES = {
    "logistic": "sigmoid",
    "leakyrelu": "leaky_relu",
    "swish": "silu",
    "identity": "linear",
    "hard_tanh": "hardtanh",
}

_SPEC_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)

ActivationLike = Union[str, Activation, Callable[[Any], Any]]  # noqa: UP007 (runtime alias)


def activation_names() -> tuple[str, ...]:
    """The built-in activation names, sorted."""
    return tuple(sorted(_REGISTRY))


def _parse_float(text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"could not read '{text}' in activation '{spec}' as a number; write e.g. "
            "'leaky_relu(0.2)' or 'elu(alpha=0.5)'"
        ) from None


def get_activation(spec: ActivationLike, **params: float) -> Activation:
    """Resolve an activation name, spec string, :class:`Activation` or callable.

    Names with parameters parse like Python calls: ``"leaky_relu(0.2)"``,
    ``"leaky_relu(negative_slope=0.2)"``, ``"elu(alpha=0.5)"``, ``"hardtanh(-2, 2)"``; keyword
    arguments work too (``get_activation("elu", alpha=0.5)``). Built-ins: sigmoid, tanh, relu,
    leaky_relu (negative_slope=0.01), elu (alpha=1), selu (PyTorch constants), gelu (exact,
    ``x Phi(x)``), silu, softsign, hardtanh (min_val=-1, max_val=1), linear.

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
    m = _SPEC_RE.match(spec)
    if m is None:
        raise ConfigError(
            f"could not parse activation '{spec}'; write NAME or NAME(VALUE, KEY=VALUE), "
            "e.g. 'tanh', 'leaky_relu(0.2)' or 'elu(alpha=0.5)'"
        )
    raw_name, arg_text = m.group(1), m.group(2)
    key = raw_name.strip().lower().replace("-", "_")
    key = _NAME_ALIASES.get(key, key)
    entry = _REGISTRY.get(key)
    if entry is None:
        raise unknown_name("activation", raw_name.strip(), _REGISTRY)
    values: dict[str, float] = {}

    def put(pname: str, value: Any) -> None:
        canonical = entry.aliases.get(pname, pname)
        if canonical not in entry.params:
            takes = ", ".join(entry.params) if entry.params else "no parameters"
            raise ConfigError(f"activation '{key}' takes {takes}; got '{pname}'")
        if canonical in values:
            raise ConfigError(f"activation '{key}': parameter '{canonical}' given twice")
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ConfigError(
                f"activation '{key}': parameter '{canonical}' must be a finite number; "
                f"got {value!r}"
            )
        values[canonical] = float(value)

    if arg_text is not None and arg_text.strip():
        for pos, part in enumerate(arg_text.split(",")):
            part = part.strip()
            if "=" in part:
                k, v = (s.strip() for s in part.split("=", 1))
                put(k, _parse_float(v, spec))
            else:
                if pos >= len(entry.params) or any("=" in p for p in arg_text.split(",")[:pos]):
                    takes = ", ".join(entry.params) if entry.params else "no parameters"
                    raise ConfigError(
                        f"activation '{key}' takes {takes}; could not place '{part}' in '{spec}'"
                    )
                put(entry.params[pos], _parse_float(part, spec))
    for k, v in params.items():
        put(k, v)
    return entry.factory(**values)


def _as_act(act: ActivationLike) -> Activation:
    return act if isinstance(act, Activation) else get_activation(act)


@lru_cache(maxsize=256)
def _dphi_extrema(act: Activation) -> DerivativeExtrema:
    x = np.linspace(-20.0, 20.0, 8001)
    d = act.dphi(x)

    def refine(i: int, sign: float) -> tuple[float, float]:
        lo, hi = x[max(i - 1, 0)], x[min(i + 1, x.size - 1)]
        g = lambda t: sign * float(act.dphi(np.array(t)))  # noqa: E731
        best_x, best_v = float(x[i]), g(x[i])
        r = (math.sqrt(5.0) - 1.0) / 2.0
        a, b = lo, hi
        c1, c2 = b - r * (b - a), a + r * (b - a)
        f1, f2 = g(c1), g(c2)
        for _ in range(80):
            if f1 > f2:
                b, c2, f2 = c2, c1, f1
                c1 = b - r * (b - a)
                f1 = g(c1)
            else:
                a, c1, f1 = c1, c2, f2
                c2 = a + r * (b - a)
                f2 = g(c2)
            if b - a < 1e-12:
                break
        for t, v in ((c1, f1), (c2, f2)):
            if v > best_v:
                best_x, best_v = t, v
        return best_x, sign * best_v

    ax, mx = refine(int(np.argmax(d)), 1.0)
    an, mn = refine(int(np.argmin(d)), -1.0)
    return DerivativeExtrema(
        max_value=float(mx), argmax=float(ax), min_value=float(mn), argmin=float(an)
    )


# --------------------------------------------------------------------------------------------
# Gaussian quadrature
# --------------------------------------------------------------------------------------------

_Z_MAX = 10.0  # tails beyond 10 sd carry 1.5e-23 of the mass
_GL_T, _GL_W = np.polynomial.legendre.leggauss(12)
_Z_EDGES = np.arange(-_Z_MAX, _Z_MAX + 0.5, 1.0)
_X_EDGES = np.arange(-10.0, 10.5, 1.0)  # activation features live at |x| <~ 10


def _normal_rule(mean: Array, std: float, kinks: tuple[float, ...]) -> tuple[Array, Array]:
    """Nodes ``x`` (m, K) and weights (m, K) with ``sum_k w f(x) ~= E[f(mean_i + std Z)]``.

    Composite 12-point Gauss-Legendre on panels with edges at the integers in z in [-10, 10],
    at the integers in x in [-10, 10] and at the kinks (each mapped to z = (x - mean)/std and
    clipped to [-10, 10]; clipped edges make empty panels of zero weight).
    """
    mean = np.atleast_1d(np.asarray(mean, dtype=float))
    m = mean.size
    if std <= 0.0:
        return mean[:, None].copy(), np.ones((m, 1))
    xk = np.concatenate([_X_EDGES, np.asarray(kinks, dtype=float)])
    zk = np.clip((xk[None, :] - mean[:, None]) / std, -_Z_MAX, _Z_MAX)
    edges = np.concatenate([np.broadcast_to(_Z_EDGES, (m, _Z_EDGES.size)), zk], axis=1)
    edges.sort(axis=1)
    half = 0.5 * (edges[:, 1:] - edges[:, :-1])
    mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    z = mid[..., None] + half[..., None] * _GL_T
    w = half[..., None] * _GL_W * (_INV_SQRT_2PI * np.exp(-0.5 * z * z))
    return mean[:, None] + std * z.reshape(m, -1), w.reshape(m, -1)


def gaussian_expectation(
    f: Callable[[Array], Array],
    q: float,
    *,
    kinks: Iterable[float] = (),
    method: Literal["panels", "hermite"] = "panels",
    n_nodes: int = 200,
) -> float:
    """``E[f(sqrt(q) z)]`` for ``z ~ N(0, 1)``, i.e. ``Int Dz f(sqrt(q) z)``.

    ``method="panels"`` (default): composite Gauss-Legendre split at ``kinks`` (in x units) and
    on unit grids in z and in x; accurate to ~1e-13 for piecewise-smooth ``f`` with the kinks
    given. ``method="hermite"``: ``n_nodes``-point Gauss-Hermite for the normal measure
    (``numpy.polynomial.hermite_e.hermegauss``), spectrally accurate for smooth ``f`` at moderate
    ``q`` but only ~1e-5 for kinks, and for ``tanh`` at ``q = 5`` it is off by 2e-6 (the
    integrand is narrower than the node spacing); ``n_nodes`` at most 350.

    Example (reference case 26, ``Var[relu(z)] = (1 - 1/pi)/2``)::

        >>> relu = lambda x: np.maximum(x, 0.0)
        >>> m1 = gaussian_expectation(relu, 1.0, kinks=[0.0])
        >>> round(gaussian_expectation(lambda x: relu(x) ** 2, 1.0) - m1**2, 6)
        0.340845
    """
    q = _check_q(q)
    if method == "hermite":
        if (
            isinstance(n_nodes, bool)
            or not isinstance(n_nodes, Integral)
            or not 1 <= n_nodes <= _HERMITE_MAX
        ):
            raise ConfigError(
                f"n_nodes must be an integer in [1, {_HERMITE_MAX}] (numpy's hermegauss "
                f"overflows beyond); got {n_nodes!r}"
            )
        z, w = _hermite_rule(int(n_nodes))
        return float(np.dot(w, f(math.sqrt(q) * z)))
    if method != "panels":
        raise ConfigError(f"method must be 'panels' or 'hermite'; got {method!r}")
    x, w = _normal_rule(np.zeros(1), math.sqrt(q), tuple(float(k) for k in kinks))
    return float(np.sum(w * f(x)))


_HERMITE_MAX = 350


@lru_cache(maxsize=16)
def _hermite_rule(n: int) -> tuple[Array, Array]:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / math.sqrt(2.0 * math.pi)


def _expect(act: Activation, f: Fn, q: float) -> float:
    x, w = _normal_rule(np.zeros(1), math.sqrt(q), act.kinks)
    return float(np.sum(w * f(x)))


def _kappa(act: Activation) -> float:
    """``(a+^2 + a-^2)/2`` for a piecewise-linear activation with slopes a+, a-."""
    sp, sn = act.linear_slopes  # type: ignore[misc]
    return 0.5 * (sp * sp + sn * sn)


def e_phi_sq(act: ActivationLike, q: float) -> float:
    """``E[phi(sqrt(q) z)^2]``, the second moment that drives the length map (Poole 2016).

    Example::

        >>> e_phi_sq("relu", 3.0)                     # q/2 for ReLU
        1.5
    """
    a = _as_act(act)
    q = _check_q(q)
    if a.linear_slopes is not None:
        return _kappa(a) * q
    return _expect(a, lambda x: a.phi(x) ** 2, q)


def e_dphi_sq(act: ActivationLike, q: float) -> float:
    """``E[phi'(sqrt(q) z)^2]``; ``chi1 = sw2 * e_dphi_sq(act, q*)`` (Schoenholz 2017, eq. 5).

    Example::

        >>> e_dphi_sq("relu", 1.0), e_dphi_sq("tanh", 0.0)
        (0.5, 1.0)
    """
    a = _as_act(act)
    q = _check_q(q)
    if a.linear_slopes is not None:
        return _kappa(a)
    return _expect(a, lambda x: a.dphi(x) ** 2, q)


def e_dphi(act: ActivationLike, q: float) -> float:
    """``E[phi'(sqrt(q) z)]``, the mean local slope (mean backward gain of the activation).

    Example::

        >>> e_dphi("relu", 2.0)
        0.5
    """
    a = _as_act(act)
    q = _check_q(q)
    if a.linear_slopes is not None:
        sp, sn = a.linear_slopes
        return 0.5 * (sp + sn)
    return _expect(a, a.dphi, q)


_BEND_OFFSETS = (-8.0, -4.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 4.0, 8.0)


def _e_pair(act: Activation, f: Fn, q: float, c: float) -> float:
    """``E[f(u1) f(u2)]`` with u1, u2 ~ N(0, q), correlation c (nested panel quadrature)."""
    s = math.sqrt(q)
    sd2 = s * math.sqrt(max(0.0, 1.0 - c * c))
    # The inner mean E[f(c x1 + sd2 Z)] bends within a few sd2 of c x1 = kink: add outer edges
    # there, or panels of width ~1 would miss that structure when sd2 is small (c near 1).
    outer = list(act.kinks)
    if c != 0.0:
        outer += [(b + t * sd2) / c for b in act.kinks for t in _BEND_OFFSETS]
    x1, w1 = _normal_rule(np.zeros(1), s, tuple(outer))
    x1, w1 = x1[0], w1[0]
    keep = w1 > 0
    x1, w1 = x1[keep], w1[keep]
    x2, w2 = _normal_rule(c * x1, sd2, act.kinks)
    inner = np.sum(w2 * f(x2), axis=1)
    return float(np.sum(w1 * f(x1) * inner))


def _arccos_kernels(c: float) -> tuple[float, float]:
    """Cho & Saul arc-cosine kernels: E[relu(u1)relu(u2)]/q and E[step(u1)step(u2)]."""
    c = min(1.0, max(-1.0, c))
    theta = math.acos(c)
    k1 = (math.sin(theta) + (math.pi - theta) * c) / (2.0 * math.pi)
    k0 = (math.pi - theta) / (2.0 * math.pi)
    return k1, k0


def _e_phi_phi(act: Activation, q: float, c: float) -> float:
    if act.linear_slopes is not None:
        sp, sn = act.linear_slopes
        d = sp - sn  # phi(x) = sn x + d relu(x)
        k1, _ = _arccos_kernels(c)
        return q * (sn * sn * c + sn * d * c + d * d * k1)
    return _e_pair(act, act.phi, q, c)


def _e_dphi_dphi(act: Activation, q: float, c: float) -> float:
    if act.linear_slopes is not None:
        sp, sn = act.linear_slopes
        d = sp - sn  # phi'(x) = sn + d step(x)
        _, k0 = _arccos_kernels(c)
        return sn * sn + sn * d + d * d * k0
    return _e_pair(act, act.dphi, q, c)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _finite(value: Any, name: str, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number ({hint}); got {value!r}")
    return float(value)


def _check_sw2(sw2: Any) -> float:
    hint = "the weight variance times fan_in: 1.0 is LeCun, 2.0 is He for ReLU"
    v = _finite(sw2, "sigma_w2", hint)
    if v <= 0:
        raise ConfigError(f"sigma_w2 must be > 0 ({hint}); got {v:g}")
    return v


def _check_sb2(sb2: Any) -> float:
    hint = "the bias variance; use 0 for zero-initialised biases"
    v = _finite(sb2, "sigma_b2", hint)
    if v < 0:
        raise ConfigError(f"sigma_b2 must be >= 0 ({hint}); got {v:g}")
    return v


def _check_q(q: Any) -> float:
    hint = "the pre-activation variance"
    v = _finite(q, "q", hint)
    if v < 0:
        raise ConfigError(f"q must be >= 0 ({hint}); got {v:g}")
    return v


def _check_depth(depth: Any) -> int:
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 1:
        raise ConfigError(
            f"depth must be an integer >= 1 (the number of weight layers); got {depth!r}"
        )
    return int(depth)


# --------------------------------------------------------------------------------------------
# Root finding
# --------------------------------------------------------------------------------------------


def _brentq(
    f: Callable[[float], float],
    a: float,
    b: float,
    fa: float | None = None,
    fb: float | None = None,
    xtol: float = 1e-14,
    maxiter: int = 200,
) -> float:
    """Brent's zero finder (Brent 1973, "zero"); needs ``f(a) * f(b) <= 0``."""
    fa = f(a) if fa is None else fa
    fb = f(b) if fb is None else fb
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    if (fa > 0) == (fb > 0):
        raise ValueError("root not bracketed")
    c, fc = a, fa
    d = e = b - a
    for _ in range(maxiter):
        if (fb > 0) == (fc > 0):
            c, fc = a, fa
            d = e = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol = 2.0 * _EPS * abs(b) + 0.5 * xtol
        m = 0.5 * (c - b)
        if abs(m) <= tol or fb == 0.0:
            return b
        if abs(e) < tol or abs(fa) <= abs(fb):
            d = e = m
        else:
            s = fb / fa
            if a == c:
                p, qq = 2.0 * m * s, 1.0 - s
            else:
                qa, r = fa / fc, fb / fc
                p = s * (2.0 * m * qa * (qa - r) - (b - a) * (r - 1.0))
                qq = (qa - 1.0) * (r - 1.0) * (s - 1.0)
            if p > 0:
                qq = -qq
            else:
                p = -p
            if 2.0 * p < min(3.0 * m * qq - abs(tol * qq), abs(e * qq)):
                e, d = d, p / qq
            else:
                d = e = m
        a, fa = b, fb
        b += d if abs(d) > tol else (tol if m > 0 else -tol)
        fb = f(b)
    return b


# --------------------------------------------------------------------------------------------
# Length map, q*, chi1
# --------------------------------------------------------------------------------------------


def length_map(q: float, act: ActivationLike, sw2: float, sb2: float) -> float:
    """One step of the length map, ``q' = sw2 * E[phi(sqrt(q) z)^2] + sb2`` (Poole 2016, eq. 3).

    ``q`` is the variance of a pre-activation ``h_i^l``; the map gives that of layer ``l + 1``.

    Example::

        >>> length_map(1.0, "relu", 2.0, 0.0)     # He init preserves the length exactly
        1.0
    """
    a = _as_act(act)
    return _check_sw2(sw2) * e_phi_sq(a, q) + _check_sb2(sb2)


def _q_slope(act: Activation, sw2: float, q: float) -> float:
    """d q'/d q at q: ``sw2 E[phi'^2 + phi phi'']``, computed as ``sw2 E[x phi phi'] / q`` (Stein).

    The Stein form needs no phi'' and is right for kinked activations too.
    """
    if act.linear_slopes is not None:
        return sw2 * _kappa(act)
    if q == 0.0:
        x0 = np.zeros(1)
        return sw2 * float(act.dphi(x0)[0] ** 2 + act.phi(x0)[0] * act.d2phi(x0)[0])
    return sw2 * _expect(act, lambda x: x * act.phi(x) * act.dphi(x), q) / q


def fixed_point_q(act: ActivationLike, sw2: float, sb2: float, q0: float = 1.0) -> float:
    """The fixed point ``q*`` of the length map reached from ``q^0 = q0``.

    Iterates ``q <- sw2 E[phi(sqrt(q) z)^2] + sb2`` (convergence takes ~xi_q layers), then
    polishes the root of ``q' - q`` with Brent's method. Special cases:

    * ``q* = 0`` when the map contracts to 0 (tanh with ``sb2 = 0`` and ``sw2 <= 1``);
    * ``q* = inf`` when the map grows without bound (ReLU with ``sw2 > 2``, or ``sw2 = 2`` and
      ``sb2 > 0``; any map that passes 1e12);
    * ``q0`` itself when every q is fixed (ReLU with ``sw2 = 2``, ``sb2 = 0``: He init).

    ReLU-family closed form: ``q* = sb2 / (1 - sw2 (1 + a^2) / 2)``.

    Example::

        >>> round(fixed_point_q("relu", 1.9, 0.1), 12)             # reference case 3
        2.0
        >>> round(fixed_point_q("tanh", 25 / 9, 0.0), 4)          # PyTorch's tanh gain 5/3
        1.1785
    """
    a = _as_act(act)
    return _q_star(a, _check_sw2(sw2), _check_sb2(sb2), _check_q(q0))


@lru_cache(maxsize=4096)
def _q_star(act: Activation, sw2: float, sb2: float, q0: float) -> float:
    if act.linear_slopes is not None:
        g = sw2 * _kappa(act)
        if g < 1.0:
            return sb2 / (1.0 - g)
        if sb2 == 0.0 and (g == 1.0 or q0 == 0.0):
            return q0
        return math.inf

    def qmap(q: float) -> float:
        return sw2 * _expect(act, lambda x: act.phi(x) ** 2, q) + sb2

    def h(q: float) -> float:
        return qmap(q) - q

    q = q0
    for _ in range(40):
        nxt = qmap(q)
        if not math.isfinite(nxt) or nxt > _Q_DIVERGED:
            return math.inf
        if abs(nxt - q) <= 1e-14 * q or nxt == q:
            return nxt
        q = nxt
    hq = h(q)
    if hq == 0.0:
        return q
    if hq > 0:  # the iterates increase: the fixed point lies above
        lo, flo = q, hq
        hi = max(4.0 * q, q + 1.0)
        fhi = h(hi)
        while fhi > 0:
            if hi > _Q_DIVERGED:
                return math.inf
            lo, flo = hi, fhi
            hi *= 4.0
            fhi = h(hi)
        return _brentq(h, lo, hi, flo, fhi, xtol=1e-15 * (1.0 + lo))
    hi, fhi = q, hq  # the iterates decrease: the fixed point lies below (maybe 0)
    lo = q / 4.0
    flo = h(lo)
    while flo < 0:
        if lo < 1e-14:
            f0 = h(0.0)
            if f0 <= 0.0:
                return 0.0
            return _brentq(h, 0.0, lo, f0, flo, xtol=1e-300)
        hi, fhi = lo, flo
        lo /= 4.0
        flo = h(lo)
    return _brentq(h, lo, hi, flo, fhi, xtol=1e-15 * hi)


def _chi1_at(act: Activation, sw2: float, q: float) -> float:
    if act.linear_slopes is not None:
        return sw2 * _kappa(act)
    if math.isinf(q):  # q -> inf: phi'(sqrt(q) z) -> phi'(+inf) for z > 0, phi'(-inf) for z < 0
        ends = act.dphi(np.array([-1e8, 1e8]))
        return sw2 * 0.5 * float(ends[0] ** 2 + ends[1] ** 2)
    return sw2 * e_dphi_sq(act, q)


def chi1(act: ActivationLike, sw2: float, sb2: float) -> float:
    """``chi1 = sw2 * E[phi'(sqrt(q*) z)^2]``: the per-layer factor of ``E[(dL/dh)^2]``.

    Poole et al. 2016 (slope of the correlation map at c = 1); Schoenholz et al. 2017, Sec. 5
    (``E[(delta^l)^2] = chi1 E[(delta^{l+1})^2]`` for equal widths). ReLU: ``sw2 / 2`` exactly;
    leaky ReLU: ``sw2 (1 + a^2) / 2``. When q* diverges, the ``q -> inf`` limit is used.

    Example::

        >>> chi1("relu", 1 / 3, 0.0)       # PyTorch's default nn.Linear init, sw2 = 1/3
        0.16666666666666666
        >>> round(chi1("tanh", 25 / 9, 0.0), 4)
        1.2098
    """
    a = _as_act(act)
    sw2, sb2 = _check_sw2(sw2), _check_sb2(sb2)
    return _chi1_at(a, sw2, _q_star(a, sw2, sb2, 1.0))


def expected_layer_gain(act: ActivationLike, sw2: float, sb2: float) -> float:
    """``sqrt(chi1)``: the factor by which the *norm* of ``dL/dh`` grows per layer, going backwards.

    Example::

        >>> expected_layer_gain("relu", 1.0, 0.0)
        0.7071067811865476
    """
    return math.sqrt(chi1(act, sw2, sb2))


# --------------------------------------------------------------------------------------------
# Correlation map, c*, depth scales
# --------------------------------------------------------------------------------------------


def correlation_map(
    c: float, act: ActivationLike, sw2: float, sb2: float, q: float | None = None
) -> float:
    """One step of the correlation map at the length fixed point (Poole 2016, eq. 5).

    ``c' = (sw2 * E[phi(u1) phi(u2)] + sb2) / q*`` with ``u1 = sqrt(q*) z1``,
    ``u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2)``. Pass ``q`` to use another length than q*.

    Example::

        >>> round(correlation_map(0.0, "tanh", 2.0, 0.0), 12)     # odd phi, no bias: c* = 0
        0.0
    """
    a = _as_act(act)
    sw2, sb2 = _check_sw2(sw2), _check_sb2(sb2)
    c = _finite(c, "c", "a correlation in [-1, 1]")
    if not -1.0 <= c <= 1.0:
        raise ConfigError(f"c must lie in [-1, 1] (a correlation); got {c:g}")
    qs = _q_star(a, sw2, sb2, 1.0) if q is None else _check_q(q)
    return _cmap(a, sw2, sb2, qs, c)


def _cmap(act: Activation, sw2: float, sb2: float, q: float, c: float) -> float:
    if q == 0.0 or math.isinf(q):
        return math.nan
    return (sw2 * _e_phi_phi(act, q, c) + sb2) / q


def fixed_point_c(act: ActivationLike, sw2: float, sb2: float) -> float:
    """The stable fixed point ``c*`` of the correlation map.

    ``c* = 1`` in the ordered phase (``chi1 <= 1``: all inputs become alike with depth); in
    the chaotic phase (``chi1 > 1``) ``c* < 1`` is found with Brent's method. ``nan`` when
    ``q*`` is 0 or infinite (the map is then undefined).

    Example (theory.md depth-scale table, tanh, sb2 = 0.05)::

        >>> round(fixed_point_c("tanh", 2.0, 0.05), 5)
        0.74408
    """
    a = _as_act(act)
    sw2, sb2 = _check_sw2(sw2), _check_sb2(sb2)
    return _c_star(a, sw2, sb2)


@lru_cache(maxsize=1024)
def _c_star(act: Activation, sw2: float, sb2: float) -> float:
    q = _q_star(act, sw2, sb2, 1.0)
    k = _chi1_at(act, sw2, q)
    if k <= 1.0:
        return 1.0
    if q == 0.0 or math.isinf(q):
        return math.nan

    def F(c: float) -> float:
        return _cmap(act, sw2, sb2, q, c) - c

    # F < 0 just below c = 1 (slope chi1 > 1); walk down until F >= 0.
    prev_c, prev_f = 1.0, -0.0
    for delta in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0):
        cc = 1.0 - delta
        fc = F(cc)
        if fc >= 0.0:
            if prev_c == 1.0:
                return 1.0  # indistinguishable from 1 at this chi1
            return _brentq(F, cc, prev_c, fc, prev_f, xtol=1e-13)
        prev_c, prev_f = cc, fc
    return -1.0


def _xi(rate: float) -> float:
    """``-1 / log(rate)``: the depth scale of a geometric factor ``rate`` per layer."""
    if math.isnan(rate):
        return math.nan
    rate = abs(rate)
    if rate == 0.0:
        return 0.0
    if rate == 1.0:
        return math.inf
    return -1.0 / math.log(rate)


@dataclass(frozen=True)
class DepthScales:
    """Mean-field quantities at one ``(activation, sw2, sb2)`` (Schoenholz et al. 2017, Sec. 3, 5).

    * ``q_star``: fixed point of the length map;
    * ``chi1``: per-layer factor of ``E[(dL/dh)^2]``;
    * ``c_star``: fixed point of the correlation map (1 in the ordered phase);
    * ``xi_q = -1/log(sw2 E[phi'^2 + phi phi''])``: layers for the length to settle;
    * ``xi_c``: layers over which two inputs stay distinguishable;
      ``-1/log(chi1)`` when ordered, ``-1/log(sw2 E[phi'(u1) phi'(u2)])`` at ``c*`` when chaotic;
      infinite on the critical line;
    * ``xi_grad = -1/log(chi1)``: layers over which ``E[(dL/dh)^2]`` changes by e
      (negative = exploding).
    """

    q_star: float
    chi1: float
    c_star: float
    xi_q: float
    xi_c: float
    xi_grad: float


def depth_scales(act: ActivationLike, sw2: float, sb2: float) -> DepthScales:
    """All depth scales at once (see :class:`DepthScales`).

    Example (theory.md table, tanh, sb2 = 0.05, sw2 = 2)::

        >>> d = depth_scales("tanh", 2.0, 0.05)
        >>> round(d.xi_q, 3), round(d.xi_c, 2), round(d.xi_grad, 2)
        (1.388, 25.21, -21.48)
    """
    a = _as_act(act)
    sw2, sb2 = _check_sw2(sw2), _check_sb2(sb2)
    return _depth_scales(a, sw2, sb2)


@lru_cache(maxsize=1024)
def _depth_scales(act: Activation, sw2: float, sb2: float) -> DepthScales:
    q = _q_star(act, sw2, sb2, 1.0)
    k = _chi1_at(act, sw2, q)
    finite_q = math.isfinite(q)
    xq = _xi(_q_slope(act, sw2, q)) if finite_q else math.nan
    cs = _c_star(act, sw2, sb2)
    if k <= 1.0:
        xc = _xi(k)
    elif math.isnan(cs):
        xc = math.nan
    elif cs == 1.0:
        xc = math.inf
    else:
        xc = _xi(sw2 * _e_dphi_dphi(act, q, cs))
    return DepthScales(q_star=q, chi1=k, c_star=cs, xi_q=xq, xi_c=xc, xi_grad=_xi(k))


def xi_q(act: ActivationLike, sw2: float, sb2: float) -> float:
    """Length depth scale ``xi_q = -1/log(chi1 + sw2 E[phi'' phi])`` at q* (Schoenholz Sec. 3)."""
    return depth_scales(act, sw2, sb2).xi_q


def xi_c(act: ActivationLike, sw2: float, sb2: float) -> float:
    """Correlation depth scale; trainable depth is about ``6 xi_c`` (Schoenholz Sec. 3-4)."""
    return depth_scales(act, sw2, sb2).xi_c


def xi_grad(act: ActivationLike, sw2: float, sb2: float) -> float:
    """Gradient depth scale ``-1/log(chi1)``; negative means exploding (Schoenholz Sec. 5)."""
    return depth_scales(act, sw2, sb2).xi_grad


def phase(
    act: ActivationLike, sw2: float, sb2: float, tol: float = CRITICAL_TOL
) -> Literal["ordered", "critical", "chaotic"]:
    """``"critical"`` if ``|chi1 - 1| < tol``, else ``"ordered"`` (vanishing) or ``"chaotic"``.

    The default ``tol = 1e-3`` puts ``|xi_grad|`` above ~1000 layers.

    Example::

        >>> phase("relu", 2.0, 0.0), phase("tanh", 1.0, 0.05), phase("tanh", 3.0, 0.05)
        ('critical', 'ordered', 'chaotic')
    """
    tol = _finite(tol, "tol", "a tolerance on |chi1 - 1|")
    k = chi1(act, sw2, sb2)
    if abs(k - 1.0) < tol:
        return "critical"
    return "ordered" if k < 1.0 else "chaotic"


# --------------------------------------------------------------------------------------------
# Critical line
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CriticalPoint:
    """A point ``(sigma_w2, sigma_b2)`` on the order/chaos line ``chi1 = 1``, with its ``q*``."""

    sigma_w2: float
    sigma_b2: float
    q_star: float


def critical_sigma_w2(act: ActivationLike, sb2: float) -> float:
    """The weight variance with ``chi1(sw2, sb2) = 1`` (the edge of chaos) at bias variance ``sb2``.

    Solved with Brent's method on ``chi1 - 1`` after bracketing on a doubling grid of ``sw2``.
    ReLU family: ``2 / (1 + a^2)`` for any ``sb2`` (He init). ``nan`` if ``chi1 < 1`` for all
    ``sw2`` up to 1e4.

    Example (reference case 4)::

        >>> [round(critical_sigma_w2("tanh", b), 4) for b in (0.0, 0.01, 0.05, 0.1, 0.3)]
        [1.0, 1.4242, 1.761, 1.9861, 2.5051]
    """
    a = _as_act(act)
    return _critical_sw2(a, _check_sb2(sb2))


@lru_cache(maxsize=1024)
def _critical_sw2(act: Activation, sb2: float) -> float:
    if act.linear_slopes is not None:
        return 1.0 / _kappa(act)

    def f(w: float) -> float:
        return _chi1_at(act, w, _q_star(act, w, sb2, 1.0)) - 1.0

    lo, flo = 0.5, f(0.5)
    if flo >= 0.0:  # already chaotic at 0.5: walk down
        hi, fhi = lo, flo
        while True:
            lo = hi / 2.0
            flo = f(lo)
            if flo < 0.0:
                return _brentq(f, lo, hi, flo, fhi, xtol=1e-12)
            if lo < 1e-6:
                return math.nan
            hi, fhi = lo, flo
    hi, fhi = lo, flo
    while fhi < 0.0:
        lo, flo = hi, fhi
        hi *= 2.0
        if hi > 1e4:
            return math.nan
        fhi = f(hi)
    return _brentq(f, lo, hi, flo, fhi, xtol=1e-12)


def critical_line(act: ActivationLike, sb2_values: Iterable[float]) -> list[CriticalPoint]:
    """The critical line sampled at the given bias variances.

    Example::

        >>> p = critical_line("tanh", [0.05])[0]
        >>> round(p.sigma_w2, 4), round(p.q_star, 4)
        (1.761, 0.57)
    """
    a = _as_act(act)
    out = []
    for b in sb2_values:
        b = _check_sb2(b)
        w = _critical_sw2(a, b)
        q = _q_star(a, w, b, 1.0) if math.isfinite(w) else math.nan
        out.append(CriticalPoint(sigma_w2=w, sigma_b2=b, q_star=q))
    return out


def critical_point_at_q(act: ActivationLike, q: float) -> CriticalPoint:
    """The critical point whose length fixed point is ``q*`` (Pennington, Schoenholz & Ganguli 2017).

    ``sw2 = 1 / E[phi'(sqrt(q*) z)^2]`` and ``sb2 = q* - sw2 E[phi(sqrt(q*) z)^2]``. A negative
    ``sigma_b2`` means no real network has that ``q*`` on the critical line.

    Example::

        >>> p = critical_point_at_q("tanh", 1.0)
        >>> round(p.sigma_w2, 6), round(p.sigma_b2, 6)
        (2.153303, 0.150965)
    """
    a = _as_act(act)
    q = _check_q(q)
    d2 = e_dphi_sq(a, q)
    if d2 <= 0.0:
        return CriticalPoint(sigma_w2=math.inf, sigma_b2=math.nan, q_star=q)
    w = 1.0 / d2
    return CriticalPoint(sigma_w2=w, sigma_b2=q - w * e_phi_sq(a, q), q_star=q)


def critical_line_from_q(act: ActivationLike, q_values: Iterable[float]) -> list[CriticalPoint]:
    """:func:`critical_point_at_q` for each ``q*`` in ``q_values``."""
    a = _as_act(act)
    return [critical_point_at_q(a, q) for q in q_values]


# --------------------------------------------------------------------------------------------
# Predicted gradient ratios
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientRatio:
    """Predicted ratio of backward-signal norms between the first and the last layer.

    With ``L = depth`` pre-activation layers ``h^1 .. h^L`` of equal width (Schoenholz 2017):

    * ``sq_norm_ratio = ||dL/dh^1||^2 / ||dL/dh^L||^2 = chi1^(L-1)``;
    * ``norm_ratio = ||dL/dh^1|| / ||dL/dh^L|| = sqrt(chi1)^(L-1)``;
    * ``log10_norm_ratio``: the same in decades (finite even when the ratio under- or overflows);
    * ``layer_gain = sqrt(chi1)``: the norm factor per layer.

    ``< 1`` means vanishing towards the input, ``> 1`` exploding.
    """

    depth: int
    chi1: float
    layer_gain: float
    norm_ratio: float
    sq_norm_ratio: float
    log10_norm_ratio: float


def predicted_gradient_ratio(
    act: ActivationLike, sw2: float, sb2: float, depth: int
) -> GradientRatio:
    """Mean-field prediction of ``||dL/dh^1|| / ||dL/dh^depth||`` (see :class:`GradientRatio`).

    Example (reference case 8, 30-layer ReLU MLP)::

        >>> f"{predicted_gradient_ratio('relu', 1 / 3, 0.0, 30).norm_ratio:.2g}"
        '5.2e-12'
    """
    depth = _check_depth(depth)
    k = chi1(act, sw2, sb2)
    n = depth - 1
    log10 = 0.5 * n * math.log10(k) if k > 0 else (-math.inf if n > 0 else 0.0)
    with np.errstate(over="ignore", under="ignore"):
        sq = float(np.float64(k) ** n)
        nr = float(np.float64(math.sqrt(k)) ** n)
    return GradientRatio(
        depth=depth,
        chi1=k,
        layer_gain=math.sqrt(k),
        norm_ratio=nr,
        sq_norm_ratio=sq,
        log10_norm_ratio=log10,
    )


# --------------------------------------------------------------------------------------------
# RNNs: Pascanu, Mikolov & Bengio 2013
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PascanuBound:
    """Pascanu et al. 2013 (Sec. 3.1) test of a recurrent matrix ``W_rec`` with activation phi.

    ``dx_t/dx_k = prod W_rec^T diag(phi'(x_{i-1}))`` has norm at most ``eta^(t-k)`` with
    ``eta = lambda1 * gamma``. ``lambda1 < 1/gamma`` is *sufficient* for vanishing long-term
    gradients; ``lambda1 > 1/gamma`` is *necessary* (not sufficient) for exploding ones.

    Fields: ``lambda1`` (largest singular value), ``spectral_radius`` (largest |eigenvalue|,
    the sharper criterion for a linear RNN), ``gamma = sup|phi'|``, ``inv_gamma``,
    ``eta = lambda1 * gamma`` and ``verdict`` in ``{"vanishing-sufficient",
    "exploding-possible", "boundary"}``.
    """

    lambda1: float
    spectral_radius: float
    gamma: float
    inv_gamma: float
    eta: float
    verdict: Literal["vanishing-sufficient", "exploding-possible", "boundary"]


def pascanu_bound(
    W_rec: Any, act: ActivationLike = "tanh", *, rtol: float = CRITICAL_TOL
) -> PascanuBound:
    """Classify a recurrent weight matrix with Pascanu's singular-value conditions.

    ``verdict`` is ``"boundary"`` when ``|lambda1 - 1/gamma| <= rtol / gamma`` (e.g. an orthogonal
    matrix with tanh), otherwise ``"vanishing-sufficient"`` (``lambda1 < 1/gamma``) or
    ``"exploding-possible"`` (``lambda1 > 1/gamma``).

    Example::

        >>> pascanu_bound(0.5 * np.eye(4), "tanh").verdict
        'vanishing-sufficient'
        >>> pascanu_bound(3.0 * np.eye(4), "sigmoid").verdict     # 3 < 1/gamma = 4
        'vanishing-sufficient'
    """
    a = _as_act(act)
    try:
        W = np.asarray(W_rec, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"W_rec must be a square numeric matrix ({exc})") from exc
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise ConfigError(
            f"W_rec must be a square matrix (hidden x hidden, e.g. rnn.weight_hh_l0); "
            f"got shape {W.shape}"
        )
    if not np.all(np.isfinite(W)):
        raise ConfigError("W_rec contains NaN or inf; check the model's weights")
    rtol = _finite(rtol, "rtol", "a relative tolerance")
    lam1 = float(np.linalg.norm(W, 2))
    rho = float(np.max(np.abs(np.linalg.eigvals(W))))
    g = a.gamma
    inv = 1.0 / g
    verdict: Literal["vanishing-sufficient", "exploding-possible", "boundary"]
    if abs(lam1 - inv) <= rtol * inv:
        verdict = "boundary"
    elif lam1 < inv:
        verdict = "vanishing-sufficient"
    else:
        verdict = "exploding-possible"
    return PascanuBound(
        lambda1=lam1, spectral_radius=rho, gamma=g, inv_gamma=inv, eta=lam1 * g, verdict=verdict
    )


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _json_num(x: float, key: str, non_finite: dict[str, str]) -> float | None:
    if math.isfinite(x):
        return float(x)
    non_finite[key] = "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return None


def summary(act: ActivationLike, sw2: float, sb2: float, depth: int) -> dict[str, Any]:
    """Everything the theory predicts for a plain MLP, as a strict-JSON-safe dict.

    Keys: ``activation`` (spec string), ``sigma_w2``, ``sigma_b2``, ``depth``, ``q_star``,
    ``chi1``, ``c_star``, ``layer_gain`` (sqrt chi1), ``xi_q``, ``xi_c``, ``xi_grad``, ``phase``,
    ``norm_ratio`` (``||dL/dh^1|| / ||dL/dh^L||``), ``sq_norm_ratio``, ``log10_norm_ratio``,
    ``critical_sigma_w2`` (at this ``sigma_b2``), ``six_xi_c`` (trainable-depth rule of thumb),
    ``trainable`` (``depth <= 6 xi_c``; ``6 |xi_grad|`` when xi_c is undefined), ``notes``
    (list of strings) and ``non_finite``: non-finite numbers are stored as ``None`` and named
    there with their value (``"inf"``, ``"-inf"`` or ``"nan"``).

    Example::

        >>> d = summary("tanh", 2.0, 0.05, 30)
        >>> d["phase"], round(d["chi1"], 5), d["trainable"]
        ('chaotic', 1.04767, True)
    """
    a = _as_act(act)
    sw2, sb2, depth = _check_sw2(sw2), _check_sb2(sb2), _check_depth(depth)
    ds = _depth_scales(a, sw2, sb2)
    ratio = predicted_gradient_ratio(a, sw2, sb2, depth)
    crit = _critical_sw2(a, sb2)
    k = ds.chi1
    ph = "critical" if abs(k - 1.0) < CRITICAL_TOL else ("ordered" if k < 1.0 else "chaotic")
    six = TRAINABLE_XI_C_FACTOR * ds.xi_c
    if math.isnan(six):
        trainable = depth <= TRAINABLE_XI_C_FACTOR * abs(ds.xi_grad)
    else:
        trainable = depth <= six
    notes: list[str] = []
    if math.isinf(ds.q_star):
        notes.append(
            "q* diverges: the length map grows without bound, so xi_q, xi_c and c* are "
            "undefined; chi1 is its q -> inf limit"
        )
    elif ds.q_star == 0.0:
        notes.append("q* = 0: pre-activations shrink to zero and the net is linear near 0")
    if ph == "ordered":
        notes.append("ordered phase: gradients vanish towards the input layers")
    elif ph == "chaotic":
        notes.append("chaotic phase: gradients explode towards the input layers")
    else:
        notes.append(f"critical (|chi1 - 1| < {CRITICAL_TOL:g}): gradients keep their scale")
    nf: dict[str, str] = {}
    d: dict[str, Any] = {
        "activation": a.spec,
        "sigma_w2": sw2,
        "sigma_b2": sb2,
        "depth": depth,
        "q_star": _json_num(ds.q_star, "q_star", nf),
        "chi1": _json_num(k, "chi1", nf),
        "c_star": _json_num(ds.c_star, "c_star", nf),
        "layer_gain": _json_num(ratio.layer_gain, "layer_gain", nf),
        "xi_q": _json_num(ds.xi_q, "xi_q", nf),
        "xi_c": _json_num(ds.xi_c, "xi_c", nf),
        "xi_grad": _json_num(ds.xi_grad, "xi_grad", nf),
        "phase": ph,
        "norm_ratio": _json_num(ratio.norm_ratio, "norm_ratio", nf),
        "sq_norm_ratio": _json_num(ratio.sq_norm_ratio, "sq_norm_ratio", nf),
        "log10_norm_ratio": _json_num(ratio.log10_norm_ratio, "log10_norm_ratio", nf),
        "critical_sigma_w2": _json_num(crit, "critical_sigma_w2", nf),
        "six_xi_c": _json_num(six, "six_xi_c", nf),
        "trainable": bool(trainable),
        "notes": notes,
    }
    d["non_finite"] = nf
    return d


def _fmt(d: Mapping[str, Any], key: str, spec: str = ".6g") -> str:
    v = d.get(key)
    if v is None:
        return str(d.get("non_finite", {}).get(key, "n/a"))
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def format_summary(d: Mapping[str, Any]) -> str:
    """A plain-text block of :func:`summary` output, for terminals.

    Example::

        >>> print(format_summary(summary("relu", 2.0, 0.0, 10)).splitlines()[0])
        activation         relu   sigma_w2=2  sigma_b2=0  depth=10
    """
    depth = d.get("depth")
    steps = depth - 1 if isinstance(depth, int) else "L-1"
    xg = d.get("xi_grad")
    xg_note = ""
    if isinstance(xg, float):
        xg_note = "  (negative: exploding)" if xg < 0 else "  (positive: vanishing)"
    trainable = "yes" if d.get("trainable") else "no"
    if d.get("six_xi_c") is None and d.get("non_finite", {}).get("six_xi_c") == "nan":
        xg_abs = f"{abs(xg):.4g}" if isinstance(xg, float) else "n/a"
        rule = f"6 |xi_grad| = {xg_abs}; xi_c undefined"
    else:
        rule = f"6 xi_c = {_fmt(d, 'six_xi_c', '.4g')}"
    rows = [
        (
            "activation",
            f"{d.get('activation')}   sigma_w2={_fmt(d, 'sigma_w2', 'g')}  "
            f"sigma_b2={_fmt(d, 'sigma_b2', 'g')}  depth={depth}",
        ),
        ("phase", f"{d.get('phase')}"),
        ("q*", _fmt(d, "q_star")),
        ("chi1", f"{_fmt(d, 'chi1')}   (per-layer factor of ||dL/dh||^2)"),
        ("layer gain", f"{_fmt(d, 'layer_gain')}   (sqrt(chi1), per-layer factor of ||dL/dh||)"),
        ("c*", _fmt(d, "c_star")),
        ("xi_q", f"{_fmt(d, 'xi_q', '.4g')} layers"),
        ("xi_c", f"{_fmt(d, 'xi_c', '.4g')} layers"),
        ("xi_grad", f"{_fmt(d, 'xi_grad', '.4g')} layers{xg_note}"),
        (
            "norm ratio",
            f"{_fmt(d, 'norm_ratio', '.3g')}   (||dL/dh^1|| / ||dL/dh^L||, {steps} layer steps)",
        ),
        ("sq-norm ratio", _fmt(d, "sq_norm_ratio", ".3g")),
        (
            "critical sigma_w2",
            f"{_fmt(d, 'critical_sigma_w2')}   (chi1 = 1 at sigma_b2={_fmt(d, 'sigma_b2', 'g')})",
        ),
        ("trainable", f"{trainable}   (depth {depth} vs {rule})"),
    ]
    width = max(len(k) for k, _ in rows) + 1
    lines = [f"{k:<{width}} {v}" for k, v in rows]
    lines += [f"{'note':<{width}} {n}" for n in d.get("notes", [])]
    return "\n".join(lines)
