"""The numpy activation type: ``phi`` with ``phi'`` and ``phi''``, its kinks and ``sup |phi'|``.

:class:`Activation` is what every theory function works with. The built-in table (``"tanh"``,
``"leaky_relu(0.2)"``, ...) lives in :mod:`gradmedic.theory.registry`;
:meth:`Activation.from_callable` wraps a user function, with central-difference derivatives
when none are given. Pascanu et al. 2013 (Sec. 3.1) call ``sup_x |phi'(x)|`` ``gamma``
(:attr:`Activation.gamma`).

Example::

    >>> act = Activation.from_callable(np.tanh, name="my_tanh")
    >>> round(float(act.dphi(0.5)), 8), round(act.gamma, 6)
    (0.78644773, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from gradmedic.errors import ConfigError

__all__ = ["Activation", "DerivativeExtrema"]

Array = np.ndarray
Fn = Callable[[Array], Array]


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

        >>> from gradmedic.theory import get_activation
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

            >>> from gradmedic.theory import get_activation
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

            >>> from gradmedic.theory import chi1
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
