"""The table of activation kinds: one :class:`ActivationKind` per PyTorch activation.

See :mod:`gradmedic.nn.activations` for the lookups over it (kind of a module, its parameters,
its spec and theory spec, construction from a spec string). Adding an activation is one entry
in :data:`KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from gradmedic.nn.derivatives import (
    SELU_ALPHA,
    SELU_LAMBDA,
    Derivative,
    DerivFn,
    dcelu,
    delu,
    dgelu,
    dhardswish,
    dleaky,
    dmish,
    dshrink,
    dsigmoid,
    dsilu,
    dsoftsign,
    dtanh,
    mask_between,
    step_between,
)

__all__ = ["KINDS", "ActivationKind"]


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
    return Derivative("prelu", dleaky(w), max(1.0, top))


def _softplus_derivative(p: Mapping[str, Any], m: nn.Module | None) -> Derivative:
    b = float(p["beta"])
    return Derivative("softplus", lambda x: torch.sigmoid(b * x), 1.0)


def _shrink_derivative(name: str) -> Callable[[Mapping[str, Any], nn.Module | None], Derivative]:
    """Soft- and hardshrink: slope 1 where ``|x| > lambd``, else 0 (a 0/1 slope, counted)."""

    def build(p: Mapping[str, Any], m: nn.Module | None) -> Derivative:
        lam = float(p["lambd"])
        return Derivative(name, dshrink(lam), 1.0, lambda x: x.abs() > lam)

    return build


#: Every activation kind, by canonical name (the zoo, theory and CLI syntax). Order matters
#: for :func:`kind_of`: a subclass (ReLU6 of Hardtanh) comes before its base.
KINDS: dict[str, ActivationKind] = {
    k.name: k
    for k in (
        _k(
            "sigmoid",
            nn.Sigmoid,
            _const("sigmoid", dsigmoid, 0.25),
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
            _const("tanh", dtanh, 1.0),
            theory_params=(),
            tails="both",
            functions=(torch.tanh, F.tanh),
            methods=("tanh", "tanh_"),
            swap_target=True,
        ),
        _k(
            "relu6",
            nn.ReLU6,
            _const("relu6", step_between(0.0, 6.0), 1.0, mask_between(0.0, 6.0)),
            theory_params=None,
            tails="both",
            nonnegative=True,
            functions=(F.relu6,),
        ),
        _k(
            "relu",
            nn.ReLU,
            _const("relu", step_between(0.0, None), 1.0, mask_between(0.0, None)),
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
                dleaky(float(p["negative_slope"])),
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
                "rrelu", dleaky((float(p["lower"]) + float(p["upper"])) / 2), 1.0
            ),
            params=(("lower", 1.0 / 8), ("upper", 1.0 / 3)),
            tails="none",
        ),
        _k(
            "celu",
            nn.CELU,
            lambda p, m: Derivative("celu", dcelu(float(p["alpha"])), 1.0),
            params=(("alpha", 1.0),),
            tails="negative",
            functions=(F.celu,),
        ),
        _k(
            "elu",
            nn.ELU,
            lambda p, m: Derivative("elu", delu(float(p["alpha"])), max(1.0, float(p["alpha"]))),
            params=(("alpha", 1.0),),
            theory_params=("alpha",),
            tails="negative",
            functions=(F.elu,),
            swap_target=True,
        ),
        _k(
            "selu",
            nn.SELU,
            _const("selu", delu(SELU_ALPHA, SELU_LAMBDA), SELU_LAMBDA * max(1.0, SELU_ALPHA)),
            theory_params=(),
            tails="negative",
            functions=(torch.selu, F.selu),
            swap_target=True,
        ),
        _k(
            "gelu",
            nn.GELU,
            _const("gelu", dgelu, 1.128904),
            params=(("approximate", "none"),),
            theory_params=(),
            tails="negative",
            functions=(F.gelu,),
            swap_target=True,
        ),
        _k(
            "silu",
            nn.SiLU,
            _const("silu", dsilu, 1.099839),
            theory_params=(),
            tails="negative",
            functions=(F.silu,),
            swap_target=True,
            aliases=("swish",),
        ),
        _k(
            "softsign",
            nn.Softsign,
            _const("softsign", dsoftsign, 1.0),
            theory_params=(),
            tails="both",
            functions=(F.softsign,),
        ),
        _k(
            "hardtanh",
            nn.Hardtanh,
            lambda p, m: Derivative(
                "hardtanh",
                step_between(float(p["min_val"]), float(p["max_val"])),
                1.0,
                mask_between(float(p["min_val"]), float(p["max_val"])),
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
            _const("hardsigmoid", lambda x: step_between(-3.0, 3.0)(x) / 6.0, 1.0 / 6.0),
            tails="both",
            nonnegative=True,
            functions=(F.hardsigmoid,),
        ),
        _k(
            "hardswish",
            nn.Hardswish,
            _const("hardswish", dhardswish, 1.5),
            theory_params=(),
            tails="negative",
            functions=(F.hardswish,),
        ),
        _k(
            "mish",
            nn.Mish,
            _const("mish", dmish, 1.088498),
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
            _shrink_derivative("softshrink"),
            params=(("lambd", 0.5),),
            tails="none",
        ),
        _k(
            "hardshrink",
            nn.Hardshrink,
            _shrink_derivative("hardshrink"),
            params=(("lambd", 0.5),),
            tails="none",
        ),
        _k(
            "threshold",
            nn.Threshold,
            lambda p, m: Derivative(
                "threshold",
                step_between(float(p["threshold"]), None),
                1.0,
                mask_between(float(p["threshold"]), None),
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
