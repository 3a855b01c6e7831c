"""Re-initialisation remedies: Xavier, Kaiming, orthogonal, LSUV, critical, Fixup-style zero.

Every scheme acts on the Linear and Conv layers of a model (``weight`` and ``bias``), using
the activation that *follows* each layer (see
:func:`gradmedic.remedies.base.following_activations`) where the scheme needs one:

- ``xavier`` / ``xavier_normal`` (Glorot & Bengio 2010, eq. 16): ``Var W = 2 / (fan_in +
  fan_out)``, uniform ``U[-a, a]`` with ``a = sqrt(6 / (fan_in + fan_out))`` or normal; gain 1.
- ``kaiming`` (He et al. 2015): ``W ~ N(0, gain^2 / fan)`` with ``fan = fan_in`` (forward,
  eq. 10) or ``fan_out`` (backward, eq. 14) and the gain of the following activation
  (ReLU ``sqrt 2``, leaky ReLU ``sqrt(2 / (1 + a^2))``, tanh ``5/3``, sigmoid/linear 1).
- ``orthogonal`` (Saxe et al. 2014): a random orthogonal matrix times the activation's gain.
- ``lsuv`` (Mishkin & Matas 2016; :func:`gradmedic.remedies.lsuv.lsuv_`): orthogonal
  pre-init, then for each layer in forward order ``W <- W / std(layer output)`` on a batch
  until ``|std - 1| < tol`` (0.1) or ``max_iter`` (10) rescales; needs a batch ``x``.
- ``critical`` (Poole et al. 2016; Schoenholz et al. 2017): ``W ~ N(0, sw2 / fan_in)``,
  ``b ~ N(0, sb2)`` with ``sw2`` on the order/chaos line ``chi1(sw2, sb2) = 1`` of the
  following activation, from :func:`gradmedic.theory.critical_sigma_w2` (ReLU: 2, tanh at
  ``sb2 = 0``: 1).

Biases are set to zero except by ``critical`` with ``sb2 > 0``.

Example::

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    >>> new, rep = reinit(net, "kaiming")
    >>> rep.changes[0]
    '0.weight: reinit kaiming(fan_in, gain=1.414)'
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gradmedic.errors import ConfigError, DataError, unknown_name
from gradmedic.nn.activations import spec_of, theory_spec
from gradmedic.nn.init_gain import activation_gain
from gradmedic.remedies.base import (
    RemedyReport,
    following_activations,
    maybe_copy,
    require_weighted_layers,
    weighted_layers,
)
from gradmedic.remedies.lsuv import lsuv_
from gradmedic.remedies.registry import remedy

__all__ = [
    "SCHEMES",
    "find_residual_branches",
    "reinit",
    "reinit_",
    "zero_init_residual",
    "zero_init_residual_",
]

#: Re-initialisation schemes accepted by :func:`reinit`.
SCHEMES: tuple[str, ...] = ("xavier", "xavier_normal", "kaiming", "orthogonal", "lsuv", "critical")


def _fans(w: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(w.shape[2:]) if w.dim() > 2 else 1
    return int(w.shape[1] * receptive), int(w.shape[0] * receptive)


def _gain(act: nn.Module | None) -> float:
    spec = spec_of(act)
    return 1.0 if spec is None else activation_gain(spec)


def _act_label(act: nn.Module | None) -> str:
    spec = spec_of(act)
    return spec if spec is not None else type(act).__name__.lower()


def _check_scheme(scheme: str) -> str:
    s = str(scheme).lower()
    if s == "he":
        s = "kaiming"
    if s not in SCHEMES:
        raise unknown_name("init scheme", s, SCHEMES)
    return s


def reinit_(
    model: nn.Module,
    scheme: str = "kaiming",
    *,
    x: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    mode: str = "fan_in",
    sb2: float = 0.0,
    tol: float = 0.1,
    max_iter: int = 10,
    seed: int | None = None,
) -> RemedyReport:
    """Re-initialise every Linear/Conv layer of ``model`` in place (see the module docstring).

    Args:
        scheme: ``xavier`` | ``xavier_normal`` | ``kaiming`` | ``orthogonal`` | ``lsuv`` |
            ``critical``.
        x: a batch of inputs, needed by ``lsuv``.
        mode: ``fan_in`` or ``fan_out`` (``kaiming`` only).
        sb2: the bias variance for ``critical``.
        tol, max_iter: LSUV's tolerance on ``|std - 1|`` and rescale budget per layer.
        seed: seed torch's generator first, for reproducible draws.

    Returns: a :class:`RemedyReport` with one line per parameter changed.
    """
    scheme = _check_scheme(scheme)
    spec = f"reinit(scheme={scheme})"
    if mode not in ("fan_in", "fan_out"):
        raise ConfigError(f"mode={mode!r} is invalid for reinit; use fan_in or fan_out")
    if isinstance(sb2, bool) or not isinstance(sb2, (int, float)) or sb2 < 0:
        raise ConfigError(f"sb2 must be a non-negative number, got {sb2!r}; e.g. sb2=0.05")
    if scheme == "lsuv":
        if x is None:
            raise DataError(
                "reinit(scheme=lsuv) needs a batch of data: pass x=<inputs> (or data_batch= to "
                "apply()); LSUV scales each layer by the std of its output on that batch"
            )
        details = lsuv_(model, x, tol=tol, max_iter=max_iter, seed=seed)
        rep = RemedyReport(spec=spec, details={"lsuv": details})
        for name, d in details.items():
            rep.changes.append(
                f"{name}.weight: lsuv orthogonal then x{d['scale']:.4g} "
                f"({d['tries']} rescale(s), output std {d['std']:.3f})"
            )
        return rep
    layers = require_weighted_layers(model, spec)
    follows = following_activations(model)
    if seed is not None:
        torch.manual_seed(seed)
    rep = RemedyReport(spec=spec)
    with torch.no_grad():
        for name, layer in layers:
            w = layer.weight
            b = getattr(layer, "bias", None)
            act = follows.get(name)
            fan_in, fan_out = _fans(w)
            if scheme == "xavier":
                nn.init.xavier_uniform_(w)
                text = f"xavier_uniform(bound={math.sqrt(6.0 / (fan_in + fan_out)):.4g})"
            elif scheme == "xavier_normal":
                nn.init.xavier_normal_(w)
                text = f"xavier_normal(std={math.sqrt(2.0 / (fan_in + fan_out)):.4g})"
            elif scheme == "kaiming":
                gain = _gain(act)
                fan = fan_in if mode == "fan_in" else fan_out
                w.normal_(0.0, gain / math.sqrt(fan))
                text = f"kaiming({mode}, gain={gain:.3f})"
            elif scheme == "orthogonal":
                gain = _gain(act)
                nn.init.orthogonal_(w, gain=gain)
                text = f"orthogonal(gain={gain:.3f})"
            else:  # critical
                sw2 = _critical_sw2(act, float(sb2))
                w.normal_(0.0, math.sqrt(sw2 / fan_in))
                text = f"critical({_act_label(act)}, sw2={sw2:.4g}, sb2={float(sb2):g})"
            rep.changes.append(f"{name}.weight: reinit {text}")
            if b is not None:
                if scheme == "critical" and sb2 > 0:
                    b.normal_(0.0, math.sqrt(float(sb2)))
                    rep.changes.append(f"{name}.bias: N(0, {float(sb2):g})")
                else:
                    b.zero_()
                    rep.changes.append(f"{name}.bias: zeros")
    return rep


def _critical_sw2(act: nn.Module | None, sb2: float) -> float:
    from gradmedic import theory

    spec = "linear" if act is None else theory_spec(act)
    if spec is None:
        raise ConfigError(
            f"reinit(scheme=critical) has no mean-field theory for {type(act).__name__}; "
            "use scheme=kaiming or lsuv instead"
        )
    if spec == "linear":
        return 1.0
    sw2 = float(theory.critical_sigma_w2(spec, sb2))
    if not math.isfinite(sw2):
        raise ConfigError(
            f"{spec} has no critical line at sb2={sb2:g} (chi1 < 1 for every sw2); "
            "try another sb2 or scheme=kaiming"
        )
    return sw2


def reinit(
    model: nn.Module,
    scheme: str = "kaiming",
    *,
    x: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, RemedyReport]:
    """Non-destructive :func:`reinit_`: returns ``(re-initialised copy, report)``."""
    new = maybe_copy(model, inplace=False)
    return new, reinit_(new, scheme, x=x, **kwargs)


def find_residual_branches(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules computing ``x + branch(x)``: gradmedic's :class:`~gradmedic.zoo.ResidualBlock`
    and :class:`~gradmedic.remedies.structure.Residual`, or any module with a ``branch``
    submodule."""
    out = []
    for name, mod in model.named_modules():
        branch = getattr(mod, "branch", None)
        if isinstance(branch, nn.Module) and weighted_layers(branch):
            out.append((name, mod))
    return out


def zero_init_residual_(model: nn.Module, *, layers: Iterable[str] | None = None) -> RemedyReport:
    """Zero the last Linear/Conv of each residual branch, in place (Fixup / SkipInit style,
    Zhang et al. 2019): every block starts as the identity, ``x + branch(x) = x`` up to the
    branch's output activation, so the stream and its gradient pass unchanged at init.

    Raises ConfigError when the model has no residual branch.
    """
    blocks = find_residual_branches(model)
    if not blocks:
        raise ConfigError(
            f"remedy 'zero-init-residual' does not apply to {type(model).__name__}: it has no "
            "residual block (a module with a .branch); add one with add-residual first"
        )
    rep = RemedyReport(spec="zero-init-residual")
    with torch.no_grad():
        for name, block in blocks:
            lname, last = weighted_layers(block.branch)[-1]
            full = f"{name}.branch.{lname}" if name else f"branch.{lname}"
            last.weight.zero_()
            rep.changes.append(f"{full}.weight: zeros (residual branch starts as identity)")
            if getattr(last, "bias", None) is not None:
                last.bias.zero_()
                rep.changes.append(f"{full}.bias: zeros")
    return rep


def zero_init_residual(model: nn.Module) -> tuple[nn.Module, RemedyReport]:
    """Non-destructive :func:`zero_init_residual_`: returns ``(copy, report)``."""
    new = maybe_copy(model, inplace=False)
    return new, zero_init_residual_(new)


# ---------------------------------------------------------------------------------------------
# registration


def _has_weighted_layers(model: nn.Module) -> str | None:
    return None if weighted_layers(model) else "it has no nn.Linear or nn.Conv layer"


def _has_residual_branches(model: nn.Module) -> str | None:
    return None if find_residual_branches(model) else "it has no residual block (a .branch)"


@remedy("reinit", order=50, applies=_has_weighted_layers)
def _reinit_remedy(
    model: nn.Module,
    /,
    scheme: str = "kaiming",
    mode: str = "fan_in",
    sb2: float = 0.0,
    tol: float = 0.1,
    max_iter: int = 10,
    *,
    batch: torch.Tensor | None = None,
) -> tuple[nn.Module, RemedyReport]:
    """re-initialise Linear/Conv weights (xavier, kaiming, orthogonal, lsuv, critical)"""
    rep = reinit_(model, scheme, x=batch, mode=mode, sb2=sb2, tol=tol, max_iter=max_iter)
    return model, rep


@remedy("zero-init-residual", order=60, applies=_has_residual_branches)
def _zero_init_residual_remedy(model: nn.Module, /) -> tuple[nn.Module, RemedyReport]:
    """zero the last layer of each residual branch (Fixup/SkipInit)"""
    return model, zero_init_residual_(model)
