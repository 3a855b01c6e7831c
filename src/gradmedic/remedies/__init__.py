"""Remedies for vanishing and exploding gradients, each applied and reported exactly.

Every remedy is non-destructive by default (it returns a new model and leaves yours
untouched), has an in-place variant with a trailing underscore (as in torch), and returns a
:class:`RemedyReport` listing exactly what it changed. By spec, the form diagnoses prescribe::

    from gradmedic.remedies import apply
    new_model, report = apply(model, "swap-activation(to=leaky_relu)+reinit(scheme=kaiming)")
    print(report)            # one line per change

Remedy names (``REMEDIES``): ``swap-activation(to=, slope=, alpha=)``,
``reinit(scheme=xavier|xavier_normal|kaiming|orthogonal|lsuv|critical)``,
``add-norm(kind=batch|layer)``, ``add-residual``, ``zero-init-residual``,
``replace-rnn(to=lstm|gru)``, ``forget-bias(value=1.0)``, ``orthogonal-recurrent``,
``add-aux-heads(weight=0.3)``, ``fix-loss(to=bce-logits|ce)``, ``clip-grad-norm(max_norm=1.0)``,
``clip-grad-value(clip_value=...)``, ``agc(clip_factor=0.01)``, ``autoclip(percentile=10)``,
``lower-lr(factor=0.1)``. :func:`applicable` lists those that apply to a model.

Each remedy is registered with the :func:`remedy` decorator in the module of its family
(:mod:`~gradmedic.remedies.activation`, :mod:`~gradmedic.remedies.init`,
:mod:`~gradmedic.remedies.structure`, :mod:`~gradmedic.remedies.heads`,
:mod:`~gradmedic.remedies.recurrent`,
:mod:`~gradmedic.remedies.loss`, :mod:`~gradmedic.remedies.clipping`); importing this package
registers them all. ``swap-activation(to=)`` accepts
:data:`gradmedic.nn.activations.SWAP_TARGETS`.

Clippers (:mod:`gradmedic.remedies.clipping`) are callables ``clipper(params) -> float`` used
between ``loss.backward()`` and ``optimizer.step()``.
"""

from __future__ import annotations

from gradmedic.remedies import transformer  # noqa: F401  (registers qk-layernorm, z-loss)
from gradmedic.remedies.activation import swap_activation, swap_activation_
from gradmedic.remedies.adaptive_clipping import AdaGC, SkipStep, SpikeClip, ZClip
from gradmedic.remedies.base import RemedyReport
from gradmedic.remedies.clipping import (
    AGC,
    AutoClip,
    ClipGradNorm,
    ClipGradValue,
    Clipper,
    make_clipper,
)
from gradmedic.remedies.heads import AuxiliaryHeads, add_aux_heads
from gradmedic.remedies.init import (
    SCHEMES,
    reinit,
    reinit_,
    zero_init_residual,
    zero_init_residual_,
)
from gradmedic.remedies.loss import fix_loss, fix_loss_
from gradmedic.remedies.lsuv import lsuv_
from gradmedic.remedies.recurrent import (
    orthogonal_recurrent,
    orthogonal_recurrent_,
    replace_rnn,
    replace_rnn_,
    set_forget_bias,
    set_forget_bias_,
)
from gradmedic.remedies.registry import (
    REMEDIES,
    Remedy,
    applicable,
    apply,
    canonical_order,
    parse_remedy,
    remedy,
    split_specs,
)
from gradmedic.remedies.structure import Residual, add_norm, add_residual

__all__ = [
    "AGC",
    "REMEDIES",
    "SCHEMES",
    "AdaGC",
    "AutoClip",
    "AuxiliaryHeads",
    "ClipGradNorm",
    "ClipGradValue",
    "Clipper",
    "Remedy",
    "RemedyReport",
    "Residual",
    "SkipStep",
    "SpikeClip",
    "ZClip",
    "add_aux_heads",
    "add_norm",
    "add_residual",
    "applicable",
    "apply",
    "canonical_order",
    "fix_loss",
    "fix_loss_",
    "lsuv_",
    "make_clipper",
    "orthogonal_recurrent",
    "orthogonal_recurrent_",
    "parse_remedy",
    "reinit",
    "reinit_",
    "remedy",
    "replace_rnn",
    "replace_rnn_",
    "set_forget_bias",
    "set_forget_bias_",
    "split_specs",
    "swap_activation",
    "swap_activation_",
    "zero_init_residual",
    "zero_init_residual_",
]
