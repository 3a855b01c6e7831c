"""Module kinds, by type name and static facts, so that a trace can be read without torch.

Categories: ``weight`` (Linear/Conv: a module whose static facts hold ``sw2``), ``recurrent``
(RNN/LSTM/GRU), ``activation`` (a kind in :mod:`gradmedic.nn.activations`), ``norm``,
``attention`` (``nn.MultiheadAttention``), ``structural`` (pooling, reshaping, padding,
dropout) and ``other`` (modules gradmedic has no model of: an activation it does not know, a
custom parameter-free layer, an embedding).

Functional layers (a bare parameter used by ``x @ W.T``, a ``torch.sigmoid`` call in
``forward``) are recorded by the Monitor under pseudo-module names (``<root>.W@matmul``,
``block@sigmoid``; see ``gradmedic.monitor.functional``) whose type starts with
:data:`FUNCTIONAL_TYPE_PREFIX`; their facts hold ``sw2`` (a weight use: category ``weight``)
or the activation kind (category ``activation``), so every rule reads them like modules.

Example::

    >>> module_category({"type": "functional.matmul", "sw2": 100.0, "functional": True})
    'weight'
    >>> module_category({"type": "MultiheadAttention"}), is_functional({"type": "Linear"})
    ('attention', False)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ATTENTION_TYPE_NAMES",
    "FUNCTIONAL_TYPE_PREFIX",
    "NORM_TYPES",
    "RNN_TYPE_NAMES",
    "STRUCTURAL_TYPES",
    "is_functional",
    "module_category",
]

#: Type names of the Monitor's functional pseudo-modules start with this (``functional.matmul``).
FUNCTIONAL_TYPE_PREFIX = "functional."
#: Modules with children that compute on their own, without calling those children as modules
#: (``MultiheadAttention`` uses ``out_proj.weight`` inside ``F.multi_head_attention_forward``).
ATTENTION_TYPE_NAMES = frozenset({"MultiheadAttention"})

NORM_TYPES = frozenset(
    {
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "LayerNorm",
        "GroupNorm",
        "InstanceNorm1d",
        "InstanceNorm2d",
        "InstanceNorm3d",
        "RMSNorm",
        "LocalResponseNorm",
    }
)
RNN_TYPE_NAMES = frozenset({"RNN", "LSTM", "GRU"})
#: Parameter-free modules that move, pool, pad or mask entries but apply no nonlinearity: their
#: backward gain reflects how many entries the signal is spread over (an 8x8 average pool
#: divides ``||dL/dx||`` by 8 while every weight upstream still receives the summed gradient),
#: not how well the layers before them learn, so the depth rules take it out of the judged ratio.
STRUCTURAL_TYPES = frozenset(
    {
        "Flatten",
        "Unflatten",
        "Identity",
        "Dropout",
        "Dropout1d",
        "Dropout2d",
        "Dropout3d",
        "AlphaDropout",
        "FeatureAlphaDropout",
        "MaxPool1d",
        "MaxPool2d",
        "MaxPool3d",
        "AvgPool1d",
        "AvgPool2d",
        "AvgPool3d",
        "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d",
        "AdaptiveMaxPool1d",
        "AdaptiveMaxPool2d",
        "AdaptiveMaxPool3d",
        "LPPool1d",
        "LPPool2d",
        "FractionalMaxPool2d",
        "Upsample",
        "UpsamplingNearest2d",
        "UpsamplingBilinear2d",
        "PixelShuffle",
        "PixelUnshuffle",
        "ChannelShuffle",
        "ZeroPad1d",
        "ZeroPad2d",
        "ZeroPad3d",
        "ConstantPad1d",
        "ConstantPad2d",
        "ConstantPad3d",
        "ReflectionPad1d",
        "ReflectionPad2d",
        "ReflectionPad3d",
        "ReplicationPad1d",
        "ReplicationPad2d",
        "ReplicationPad3d",
        "CircularPad1d",
        "CircularPad2d",
        "CircularPad3d",
    }
)


def is_functional(info: dict[str, Any]) -> bool:
    """True for a functional pseudo-module of the Monitor (a weight use or an activation call
    in ``forward``, not an ``nn.Module``)."""
    return bool(info.get("functional")) or str(info.get("type", "")).startswith(
        FUNCTIONAL_TYPE_PREFIX
    )


def module_category(info: dict[str, Any]) -> str:
    """``weight`` (Linear/Conv, or a functional weight use), ``recurrent``, ``activation``
    (also a functional call of a known activation), ``norm``, ``attention``, ``structural``
    (pooling, reshaping, padding, dropout: :data:`STRUCTURAL_TYPES`) or ``other`` (modules
    gradmedic has no model of: an activation it does not know, a custom parameter-free layer,
    an embedding)."""
    t = info.get("type", "")
    if t in RNN_TYPE_NAMES:
        return "recurrent"
    if t in ATTENTION_TYPE_NAMES:
        return "attention"
    if "sw2" in info:
        return "weight"
    if info.get("activation"):
        return "activation"
    if t in NORM_TYPES:
        return "norm"
    if t in STRUCTURAL_TYPES:
        return "structural"
    return "other"
