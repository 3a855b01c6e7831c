"""The built-in MLP (``mlp:depth=30,act=sigmoid,init=xavier``) and its residual block.

Deep sigmoid/tanh MLPs show vanishing gradients (Glorot & Bengio 2010); ``bias_init`` makes
dead ReLUs; ``init=normal(sw2=...,sb2=...)`` places the net in the mean-field phase diagram
(Poole et al. 2016; Schoenholz et al. 2017); ``norm=batch|layer`` and ``residual=true`` are the
cures (Ioffe & Szegedy 2015; Ba et al. 2016; He et al. 2016). The flat MLP is an
``nn.Sequential`` whose layer names (``"0"``, ``"1"``, ...) are its forward order.

Example::

    >>> from gradmedic.zoo import build_model, load_data
    >>> net = build_model("mlp:depth=3,width=8", load_data("digits").info)
    >>> [type(m).__name__ for m in net]
    ['Linear', 'ReLU', 'Linear', 'ReLU', 'Linear']
"""

from __future__ import annotations

import torch
from torch import nn

from gradmedic._callspec import Options
from gradmedic.errors import ConfigError
from gradmedic.nn.activations import make_activation
from gradmedic.zoo.data import DataInfo
from gradmedic.zoo.inits import init_layers
from gradmedic.zoo.shapes import flat_size, need_per_sample

__all__ = ["MLP_OPTIONS", "ResidualBlock", "build_mlp"]

#: Options ``mlp:`` accepts.
MLP_OPTIONS = (
    "act",
    "bias",
    "bias_init",
    "depth",
    "final_act",
    "init",
    "norm",
    "residual",
    "width",
)


class ResidualBlock(nn.Module):
    """``x + branch(x)`` with ``branch = [norm] Linear act Linear`` (pre-norm, He et al. 2016)."""

    def __init__(self, width: int, act: str, norm: str = "none", bias: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if norm != "none":
            layers.append(_norm1d(norm, width))
        layers += [
            nn.Linear(width, width, bias=bias),
            make_activation(act),
            nn.Linear(width, width, bias=bias),
        ]
        self.branch = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def _norm1d(norm: str, width: int) -> nn.Module:
    return nn.BatchNorm1d(width) if norm == "batch" else nn.LayerNorm(width)


_FINAL = {
    "sigmoid": lambda: nn.Sigmoid(),
    "softmax": lambda: nn.Softmax(dim=-1),
    "log_softmax": lambda: nn.LogSoftmax(dim=-1),
}


def build_mlp(o: Options, info: DataInfo) -> nn.Module:
    """The MLP for ``mlp:`` options ``o`` (see :data:`MLP_OPTIONS`) on data ``info``.

    Raises ConfigError for bad options (``bias_init`` without bias, ``residual`` below depth
    4, an unknown activation) and DataError for seq-classification data.
    """
    need_per_sample("mlp", info)
    depth = o.get_int("depth", 10, minimum=1)
    width = o.get_int("width", 128, minimum=1)
    act = o.get_str("act", "relu")
    make_activation(act)  # validate early
    init = o.get_str("init", "default")
    bias = o.get_bool("bias", True)
    bias_init = o.get_float("bias_init", None, allow_none=True)
    norm = o.get_choice("norm", "none", ("none", "batch", "layer"))
    residual = o.get_bool("residual", False)
    final = o.get_choice("final_act", "none", ("none", "sigmoid", "softmax", "log_softmax"))
    if bias_init is not None and not bias:
        raise ConfigError("mlp: bias_init needs bias=true; drop bias_init or set bias=true")
    if residual and depth < 4:
        raise ConfigError(
            f"mlp: residual=true needs depth >= 4 (input, two per block, output), got "
            f"depth={depth}; e.g. mlp:depth=10,residual=true"
        )
    n_in, n_out = flat_size(info), info.num_outputs
    layers: list[nn.Module] = []
    if len(info.input_shape) > 1:
        layers.append(nn.Flatten())
    if residual:
        layers.append(nn.Linear(n_in, width, bias=bias))
        layers += [ResidualBlock(width, act, norm, bias) for _ in range((depth - 2) // 2)]
        layers.append(nn.Linear(width, n_out, bias=bias))
    else:
        dims = [n_in] + [width] * (depth - 1) + [n_out]
        for i in range(depth):
            layers.append(nn.Linear(dims[i], dims[i + 1], bias=bias))
            if i < depth - 1:
                if norm != "none":
                    layers.append(_norm1d(norm, width))
                layers.append(make_activation(act))
    if final != "none":
        layers.append(_FINAL[final]())
    model = nn.Sequential(*layers)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    init_layers(linears, init, act)
    if bias_init is not None:
        with torch.no_grad():
            for lin in linears[:-1]:
                lin.bias.fill_(bias_init)
    return model
