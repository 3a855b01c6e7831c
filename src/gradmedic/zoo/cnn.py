"""The built-in CNNs: a plain deep CNN (``cnn``, ``plaincnn``) and a small Inception network
with auxiliary classifiers (``inception:aux=true``; Szegedy et al. 2015).

A deep plain CNN loses its gradient on the way to the first layers; GoogLeNet's auxiliary
classifiers inject a gradient in the middle of the network. Both work in 2-D (images
(C, H, W): ``digits:image=true``) or 1-D (channel-first (C, L): ``mnist1d:channels=true``).

Example::

    >>> from gradmedic.zoo import build_model, load_data
    >>> net = build_model("inception:aux=true", load_data("digits:image=true").info)
    >>> net.aux_at
    (1, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from gradmedic._callspec import Options
from gradmedic.errors import ConfigError
from gradmedic.nn.activations import make_activation
from gradmedic.zoo.data import DataInfo
from gradmedic.zoo.inits import init_layers, weighted_layers
from gradmedic.zoo.shapes import conv_dims

__all__ = [
    "CNN_OPTIONS",
    "INCEPTION_OPTIONS",
    "InceptionModule",
    "InceptionNet",
    "build_inception",
    "build_plain_cnn",
]

#: Options ``cnn:`` and ``plaincnn:`` accept.
CNN_OPTIONS = ("act", "channels", "depth", "init", "norm")
#: Options ``inception:`` accepts.
INCEPTION_OPTIONS = ("act", "aux", "aux_at", "aux_weight", "blocks", "channels", "init", "stem")


def _conv_cls(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv1d


def build_plain_cnn(o: Options, info: DataInfo, name: str, default_depth: int) -> nn.Module:
    """A plain CNN: ``depth`` 3-wide convolutions (+ BatchNorm with ``norm=batch``) with the
    activation, global average pooling and a Linear head. ``name`` is the spec name used in
    errors (``cnn`` defaults to depth 4, ``plaincnn`` to 12).

    Raises DataError when ``info``'s samples are not images or channel-first 1-D signals.
    """
    dims = conv_dims(name, info)
    depth = o.get_int("depth", default_depth, minimum=1)
    channels = o.get_int("channels", 16, minimum=1)
    act = o.get_str("act", "relu")
    make_activation(act)
    init = o.get_str("init", "default")
    norm = o.get_choice("norm", "none", ("none", "batch"))
    conv = _conv_cls(dims)
    bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)
    layers: list[nn.Module] = []
    c_in = info.input_shape[0]
    for _ in range(depth):
        layers.append(conv(c_in, channels, 3, padding=1))
        if norm == "batch":
            layers.append(bn(channels))
        layers.append(make_activation(act))
        c_in = channels
    layers += [pool, nn.Flatten(), nn.Linear(channels, info.num_outputs)]
    model = nn.Sequential(*layers)
    init_layers(weighted_layers(model), init, act)
    return model


class InceptionModule(nn.Module):
    """Inception module (Szegedy et al. 2015): parallel 1x1, 1x1→3x3, 1x1→5x5 and
    3x3 max-pool→1x1 branches, each conv followed by the activation, concatenated on channels
    (output channels = 4 × ``channels``). Works in 2-D (C, H, W) or 1-D (C, L)."""

    def __init__(self, c_in: int, channels: int, act: str, dims: int = 2) -> None:
        super().__init__()
        conv = _conv_cls(dims)
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool1d
        c = channels
        self.b1 = nn.Sequential(conv(c_in, c, 1), make_activation(act))
        self.b3 = nn.Sequential(
            conv(c_in, c, 1), make_activation(act), conv(c, c, 3, padding=1), make_activation(act)
        )
        self.b5 = nn.Sequential(
            conv(c_in, c, 1), make_activation(act), conv(c, c, 5, padding=2), make_activation(act)
        )
        self.bp = nn.Sequential(
            pool(3, stride=1, padding=1), conv(c_in, c, 1), make_activation(act)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class InceptionNet(nn.Module):
    """Small Inception-style CNN: stem conv, ``blocks`` Inception modules, global average
    pooling and a Linear head.

    With auxiliary classifiers (GoogLeNet's remedy for weak gradients reaching early layers),
    ``aux_heads`` holds one head per chosen block (avg-pool → 1x1 conv → act → Linear). The
    forward pass always returns the main logits; in training mode it also stores the aux logits
    of that pass in ``self.aux_outputs`` (a list, empty in eval mode or without aux heads).
    The training objective is ``loss(main) + aux_loss_weight * sum(loss(aux))``, which
    :meth:`aux_loss` computes for the second term.
    """

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        *,
        dims: int = 2,
        blocks: int = 3,
        channels: int = 8,
        stem: int = 16,
        act: str = "relu",
        aux_at: Iterable[int] = (),
        aux_loss_weight: float = 0.3,
    ) -> None:
        super().__init__()
        conv = _conv_cls(dims)
        pool: Callable[[int], nn.Module] = (
            nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool1d
        )
        self.stem = nn.Sequential(conv(in_channels, stem, 3, padding=1), make_activation(act))
        width = 4 * channels
        self.blocks = nn.ModuleList(
            InceptionModule(stem if i == 0 else width, channels, act, dims) for i in range(blocks)
        )
        self.head = nn.Sequential(pool(1), nn.Flatten(), nn.Linear(width, num_outputs))
        self.aux_at: tuple[int, ...] = tuple(sorted(set(aux_at)))
        side = 2 if dims == 2 else 4  # 4 pooled positions either way
        self.aux_heads = nn.ModuleList(
            nn.Sequential(
                pool(side),
                conv(width, 16, 1),
                make_activation(act),
                nn.Flatten(),
                nn.Linear(16 * 4, num_outputs),
            )
            for _ in self.aux_at
        )
        self.aux_enabled = bool(self.aux_at)
        self.aux_loss_weight = float(aux_loss_weight)
        self.aux_outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        aux: list[torch.Tensor] = []
        want_aux = self.training and self.aux_enabled
        for i, block in enumerate(self.blocks, start=1):
            x = block(x)
            if want_aux and i in self.aux_at:
                aux.append(self.aux_heads[self.aux_at.index(i)](x))
        self.aux_outputs = aux
        return self.head(x)

    def aux_loss(
        self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """``aux_loss_weight * sum(loss_fn(aux, target))`` over the last forward's aux outputs
        (a zero tensor when there are none)."""
        if not self.aux_outputs:
            return torch.zeros(())
        total = torch.stack([loss_fn(a, target) for a in self.aux_outputs]).sum()
        return self.aux_loss_weight * total


def _parse_aux_at(o: Options, blocks: int) -> tuple[int, ...]:
    raw = o.raw("aux_at")
    if raw is None:
        return tuple(range(1, blocks)) if blocks > 1 else (1,)
    parts = [raw] if isinstance(raw, int) else str(raw).replace("/", "+").split("+")
    out = []
    for p in parts:
        try:
            k = int(p)
        except (TypeError, ValueError):
            k = 0
        if isinstance(p, bool) or not 1 <= k <= blocks:
            raise ConfigError(
                f"option aux_at={raw!r} for model 'inception' is invalid: give block numbers "
                f"1..{blocks} joined by '+'; e.g. inception:aux=true,aux_at=1+2"
            )
        out.append(k)
    return tuple(out)


def build_inception(o: Options, info: DataInfo) -> nn.Module:
    """The :class:`InceptionNet` for ``inception:`` options ``o`` on data ``info``; with
    ``aux=true`` an auxiliary head after each block but the last (or at ``aux_at=1+2``).

    Raises ConfigError for ``aux_at`` without ``aux=true`` or outside 1..blocks, and DataError
    when the samples are not images or channel-first 1-D signals.
    """
    dims = conv_dims("inception", info)
    blocks = o.get_int("blocks", 3, minimum=1)
    channels = o.get_int("channels", 8, minimum=1)
    stem = o.get_int("stem", 16, minimum=1)
    act = o.get_str("act", "relu")
    make_activation(act)
    init = o.get_str("init", "default")
    aux = o.get_bool("aux", False)
    aux_at = _parse_aux_at(o, blocks) if aux else ()
    if not aux and "aux_at" in o:
        raise ConfigError(
            "model 'inception': aux_at needs aux=true; e.g. inception:aux=true,aux_at=2"
        )
    weight = o.get_float("aux_weight", 0.3, minimum=0.0)
    model = InceptionNet(
        info.input_shape[0],
        info.num_outputs,
        dims=dims,
        blocks=blocks,
        channels=channels,
        stem=stem,
        act=act,
        aux_at=aux_at,
        aux_loss_weight=weight,
    )
    init_layers(weighted_layers(model), init, act)
    return model
