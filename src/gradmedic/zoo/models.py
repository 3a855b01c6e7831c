"""Built-in models for gradient experiments, built from spec strings.

``build_model("mlp:depth=30,act=sigmoid,init=xavier", info)`` returns a plain ``nn.Module``
whose layer names are stable and readable (``"0"``, ``"1"``, ... for the flat MLP), so a
gradient report can point at a layer by name. The model zoo covers the classic gradient
pathologies:

- deep sigmoid/tanh MLPs (vanishing, Glorot & Bengio 2010), dead ReLUs via ``bias_init``,
  bad initialisation via ``init=normal(sw2=...,sb2=...)`` (the mean-field phase diagram of
  Poole et al. 2016 / Schoenholz et al. 2017), normalisation and residual connections as cures
  (Ioffe & Szegedy 2015; Ba et al. 2016; He et al. 2016);
- plain deep CNNs versus Inception networks with auxiliary classifiers (Szegedy et al. 2015);
- vanilla RNN / LSTM / GRU on long-range tasks (Bengio et al. 1994; Hochreiter & Schmidhuber
  1997; Pascanu et al. 2013), with knobs for the recurrent spectral radius, orthogonal or
  identity recurrent init (Saxe et al. 2014; Le et al. 2015) and the LSTM forget-gate bias
  (Gers et al. 2000; Jozefowicz et al. 2015);
- a small pre-norm Transformer encoder (Vaswani et al. 2017; Xiong et al. 2020).

``load_model`` also accepts ``path/to/file.py:factory`` for the user's own model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from gradmedic._callspec import Options, accepts_keyword, is_factory_ref, load_factory, parse_call
from gradmedic._callspec import parse_spec as _parse_spec
from gradmedic.errors import ConfigError, DataError, GradmedicError, ModelError, unknown_name
from gradmedic.zoo.data import DataInfo

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MODELS",
    "InceptionModule",
    "InceptionNet",
    "ResidualBlock",
    "SequenceModel",
    "TransformerModel",
    "activation_gain",
    "build_model",
    "init_layers",
    "load_model",
    "make_activation",
]

# ---------------------------------------------------------------------------------------------
# activations

# name -> (constructor, parameter names in positional order)
_ACT_TABLE: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...]]] = {
    "relu": (nn.ReLU, ()),
    "leaky_relu": (nn.LeakyReLU, ("negative_slope",)),
    "elu": (nn.ELU, ("alpha",)),
    "selu": (nn.SELU, ()),
    "gelu": (nn.GELU, ("approximate",)),
    "silu": (nn.SiLU, ()),
    "sigmoid": (nn.Sigmoid, ()),
    "tanh": (nn.Tanh, ()),
    "softsign": (nn.Softsign, ()),
    "hardtanh": (nn.Hardtanh, ("min_val", "max_val")),
    "relu6": (nn.ReLU6, ()),
    "linear": (nn.Identity, ()),
}

#: Activation names accepted by :func:`make_activation` (parameters in parentheses).
ACTIVATIONS: tuple[str, ...] = tuple(_ACT_TABLE)


def _act_args(spec: str) -> tuple[str, dict[str, Any]]:
    name, args, kwargs = parse_call(spec, what="activation")
    if name not in _ACT_TABLE:
        raise unknown_name("activation", name, ACTIVATIONS)
    _, params = _ACT_TABLE[name]
    usage = f"{name}({', '.join(params)})" if params else name
    if len(args) > len(params):
        raise ConfigError(
            f"activation '{spec}' takes at most {len(params)} argument(s); write it as {usage}"
        )
    bound = dict(zip(params, args, strict=False))
    for key, value in kwargs.items():
        if key not in params or key in bound:
            raise ConfigError(
                f"activation '{spec}' has no parameter '{key}' (or it is given twice); "
                f"write it as {usage}"
            )
        bound[key] = value
    for key, value in bound.items():
        if key == "approximate":
            if value not in ("none", "tanh"):
                raise ConfigError(f"activation '{spec}': approximate must be none or tanh")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"activation '{spec}': {key} must be a number, got {value!r}; e.g. {name}(0.2)"
            )
    return name, bound


def make_activation(name: str) -> nn.Module:
    """Build an activation module from a name such as ``relu``, ``leaky_relu(0.2)``,
    ``elu(alpha=0.5)`` or ``hardtanh(-2, 2)``; ``linear`` gives ``nn.Identity``."""
    key, bound = _act_args(name)
    ctor, _ = _ACT_TABLE[key]
    return ctor(**bound)


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(121)


def activation_gain(name: str) -> float:
    """The init gain for an activation: PyTorch's ``calculate_gain`` where it has one
    (relu √2, tanh 5/3, leaky_relu √(2/(1+a²)), selu 3/4, sigmoid and linear 1), otherwise the
    second-moment gain ``1/sqrt(E[phi(z)^2])`` for ``z ~ N(0, 1)`` (He et al. 2015's argument,
    which gives √2 for ReLU), computed by Gauss-Hermite quadrature."""
    key, bound = _act_args(name)
    if key == "linear":
        return 1.0
    if key in ("relu", "tanh", "sigmoid", "selu"):
        return float(nn.init.calculate_gain(key))
    if key == "leaky_relu":
        return float(nn.init.calculate_gain("leaky_relu", bound.get("negative_slope", 0.01)))
    act = make_activation(name)
    with torch.no_grad():
        phi = act(torch.from_numpy(_GH_X)).numpy()
    second = float(np.sum(_GH_W * phi**2) / np.sqrt(2 * np.pi))
    return 1.0 / math.sqrt(second) if second > 0 else 1.0


# ---------------------------------------------------------------------------------------------
# initialisation

#: Weight initialisations accepted by ``init=`` (``he`` is an alias of ``kaiming``).
INITS: tuple[str, ...] = (
    "default",
    "kaiming",
    "he",
    "lecun",
    "normal",
    "orthogonal",
    "xavier",
    "xavier_normal",
)


def _fan_in(w: torch.Tensor) -> int:
    return int(w.shape[1] * math.prod(w.shape[2:]))


def _parse_init(init: str) -> tuple[str, float, float]:
    name, args, kwargs = parse_call(init, what="init")
    if name not in INITS:
        raise unknown_name("init", name, INITS)
    if name != "normal":
        if args or kwargs:
            raise ConfigError(
                f"init '{init}' takes no arguments; only normal(sw2=..., sb2=...) does"
            )
        return name, 0.0, 0.0
    params = ("sw2", "sb2")
    if len(args) > 2 or any(k not in params for k in kwargs):
        raise ConfigError(
            f"cannot read init '{init}'; write it as normal(sw2=2.0, sb2=0.0): weights "
            "N(0, sw2/fan_in), biases N(0, sb2)"
        )
    vals: dict[str, Any] = {"sw2": 1.0, "sb2": 0.0}
    vals.update(dict(zip(params, args, strict=False)))
    vals.update(kwargs)
    for key, value in vals.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(
                f"init '{init}': {key} must be a non-negative number; e.g. normal(sw2=2.0, sb2=0.0)"
            )
    return name, float(vals["sw2"]), float(vals["sb2"])


def init_layers(layers: Iterable[nn.Module], init: str, act: str = "relu") -> None:
    """Re-initialise the ``weight`` (and ``bias``) of each Linear/Conv layer in ``layers``.

    - ``default``: keep PyTorch's own init.
    - ``xavier`` / ``xavier_normal``: Glorot & Bengio 2010, gain 1, biases 0.
    - ``kaiming`` / ``he``: W ~ N(0, gain²/fan_in) with the activation's gain (He et al. 2015;
      ReLU: 2/fan_in), biases 0.
    - ``lecun``: W ~ N(0, 1/fan_in) (LeCun et al. 1998), biases 0.
    - ``orthogonal``: orthogonal matrix times the activation's gain (Saxe et al. 2014), biases 0.
    - ``normal(sw2=..., sb2=...)``: W ~ N(0, sw2/fan_in), b ~ N(0, sb2), the mean-field
      parametrisation of Poole et al. 2016 (defaults sw2=1, sb2=0).
    """
    name, sw2, sb2 = _parse_init(init)
    if name == "default":
        return
    gain = activation_gain(act)
    with torch.no_grad():
        for layer in layers:
            w = layer.weight
            b = getattr(layer, "bias", None)
            fan_in = _fan_in(w)
            if name == "xavier":
                nn.init.xavier_uniform_(w)
            elif name == "xavier_normal":
                nn.init.xavier_normal_(w)
            elif name in ("kaiming", "he"):
                w.normal_(0.0, gain / math.sqrt(fan_in))
            elif name == "lecun":
                w.normal_(0.0, 1.0 / math.sqrt(fan_in))
            elif name == "orthogonal":
                nn.init.orthogonal_(w, gain=gain)
            else:  # normal(sw2, sb2)
                w.normal_(0.0, math.sqrt(sw2 / fan_in))
            if b is not None:
                if name == "normal" and sb2 > 0:
                    b.normal_(0.0, math.sqrt(sb2))
                else:
                    b.zero_()


def _weighted(module: nn.Module) -> list[nn.Module]:
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d)
    return [m for m in module.modules() if isinstance(m, kinds)]


# ---------------------------------------------------------------------------------------------
# shape checks


_SEQ_MODELS = "--model lstm, gru, rnn or transformer"


def _flat_size(info: DataInfo) -> int:
    return int(math.prod(info.input_shape))


def _need_per_sample(model: str, info: DataInfo) -> None:
    if info.task == "seq-classification":
        raise DataError(
            f"model '{model}' gives one output per sample, but data set '{info.name}' needs one "
            f"per time step; use {_SEQ_MODELS}"
        )


def _conv_dims(model: str, info: DataInfo) -> int:
    shape = info.input_shape
    if info.is_sequence:
        raise DataError(
            f"model '{model}' needs image (C, H, W) or channel-first 1-D (C, L) inputs, but data "
            f"set '{info.name}' is a sequence of shape {shape}; use {_SEQ_MODELS}"
        )
    if len(shape) == 3:
        return 2
    if len(shape) == 2:
        return 1
    fix = {
        "digits": "--data digits:image=true",
        "digits-binary": "--data digits-binary:image=true",
        "mnist1d": "--data mnist1d:channels=true",
    }.get(info.name, "--data digits:image=true or --data mnist1d:channels=true")
    raise DataError(
        f"model '{model}' needs image (C, H, W) or channel-first 1-D (C, L) inputs, but data set "
        f"'{info.name}' gives flat samples of shape {shape}; use {fix}"
    )


# ---------------------------------------------------------------------------------------------
# MLP


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


def _mlp(o: Options, info: DataInfo) -> nn.Module:
    _need_per_sample("mlp", info)
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
    n_in, n_out = _flat_size(info), info.num_outputs
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


# ---------------------------------------------------------------------------------------------
# CNNs


def _conv_cls(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv1d


def _plain_cnn(o: Options, info: DataInfo, name: str, default_depth: int) -> nn.Module:
    dims = _conv_dims(name, info)
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
    init_layers(_weighted(model), init, act)
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


def _inception(o: Options, info: DataInfo) -> nn.Module:
    dims = _conv_dims("inception", info)
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
    init_layers(_weighted(model), init, act)
    return model


# ---------------------------------------------------------------------------------------------
# recurrent models


class SequenceModel(nn.Module):
    """A recurrent layer over (B, T, F) inputs (``batch_first``) and a Linear ``head``.

    The head reads the last time step (one output per sequence: regression, classification)
    or, with ``per_step=True``, every time step (output (B, T, C) for seq-classification).
    """

    def __init__(self, rnn: nn.RNNBase, head: nn.Linear, *, per_step: bool = False) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = head
        self.per_step = per_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out if self.per_step else out[:, -1])


def _gate_chunks(w: torch.Tensor, hidden: int) -> list[torch.Tensor]:
    return [w[i * hidden : (i + 1) * hidden] for i in range(w.shape[0] // hidden)]


def _spectral_radius(w: torch.Tensor) -> float:
    return float(torch.linalg.eigvals(w.detach().double()).abs().max())


def _recurrent(o: Options, info: DataInfo, kind: str) -> nn.Module:
    if not info.is_sequence:
        raise DataError(
            f"model '{kind}' needs sequence inputs of shape (T, F), but data set '{info.name}' "
            f"gives samples of shape {info.input_shape}; use --data adding-200 or --data copy-100"
        )
    hidden = o.get_int("hidden", 64, minimum=1)
    layers = o.get_int("layers", 1, minimum=1)
    init = o.get_choice("init", "default", ("default", "orthogonal", "identity"))
    radius = o.get_float("radius", None, minimum=0.0, allow_none=True)
    n_in = info.input_shape[1]
    if kind == "rnn":
        act = o.get_choice("act", "tanh", ("tanh", "relu"))
        rnn: nn.RNNBase = nn.RNN(n_in, hidden, layers, nonlinearity=act, batch_first=True)
    elif kind == "lstm":
        rnn = nn.LSTM(n_in, hidden, layers, batch_first=True)
    else:
        rnn = nn.GRU(n_in, hidden, layers, batch_first=True)
    per_step = info.task == "seq-classification"
    model = SequenceModel(rnn, nn.Linear(hidden, info.num_outputs), per_step=per_step)
    with torch.no_grad():
        for layer in range(layers):
            w_hh = getattr(rnn, f"weight_hh_l{layer}")
            if init != "default":
                for chunk in _gate_chunks(w_hh, hidden):
                    if init == "orthogonal":
                        nn.init.orthogonal_(chunk)
                    else:
                        chunk.copy_(torch.eye(hidden))
                getattr(rnn, f"bias_ih_l{layer}").zero_()
                getattr(rnn, f"bias_hh_l{layer}").zero_()
            if radius is not None:
                for chunk in _gate_chunks(w_hh, hidden):
                    rho = _spectral_radius(chunk)
                    if rho > 0:
                        chunk.mul_(radius / rho)
        if kind == "lstm":
            forget = o.get_float("forget_bias", None, allow_none=True)
            if forget is not None:
                for layer in range(layers):
                    getattr(rnn, f"bias_ih_l{layer}")[hidden : 2 * hidden] = forget
                    getattr(rnn, f"bias_hh_l{layer}")[hidden : 2 * hidden] = 0.0
    return model


# ---------------------------------------------------------------------------------------------
# Transformer


class TransformerModel(nn.Module):
    """Small pre-norm Transformer encoder (``norm_first=True``, Xiong et al. 2020).

    Inputs become tokens: (T, F) sequences as they are; flat vectors of length L as
    ``tokens`` tokens of L/tokens features (digits: 8 rows of 8 pixels); images (C, H, W) as
    H row tokens of C·W features; 1-D (C, L) as L tokens of C features. A Linear embedding and
    a learned positional embedding feed the encoder; the head reads the mean-pooled tokens, or
    every token for seq-classification (output (B, T, C)).
    """

    def __init__(
        self,
        info: DataInfo,
        *,
        d_model: int = 32,
        layers: int = 2,
        heads: int = 4,
        ff: int = 64,
        dropout: float = 0.0,
        act: str = "relu",
        tokens: int = 8,
    ) -> None:
        super().__init__()
        shape = info.input_shape
        if info.is_sequence:
            self.layout, n_tok, feat = "seq", shape[0], shape[1]
        elif len(shape) == 3:
            self.layout, n_tok, feat = "image", shape[1], shape[0] * shape[2]
        elif len(shape) == 2:
            self.layout, n_tok, feat = "channels", shape[1], shape[0]
        else:
            size = _flat_size(info)
            if size % tokens:
                raise ConfigError(
                    f"transformer: {size} input features do not split into tokens={tokens} "
                    f"equal tokens; choose a divisor of {size}, e.g. transformer:tokens="
                    f"{next(t for t in (8, 4, 2, 1) if size % t == 0)}"
                )
            self.layout, n_tok, feat = "flat", tokens, size // tokens
        self.tokens = n_tok
        self.embed = nn.Linear(feat, d_model)
        self.pos = nn.Parameter(torch.randn(1, n_tok, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            dim_feedforward=ff,
            dropout=dropout,
            activation=act,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.per_step = info.task == "seq-classification"
        self.head = nn.Linear(d_model, info.num_outputs)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if self.layout == "image":
            return x.permute(0, 2, 1, 3).reshape(b, self.tokens, -1)
        if self.layout == "channels":
            return x.transpose(1, 2)
        if self.layout == "flat":
            return x.reshape(b, self.tokens, -1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(self._tokens(x)) + self.pos)
        return self.head(h if self.per_step else h.mean(dim=1))


def _transformer(o: Options, info: DataInfo) -> nn.Module:
    d_model = o.get_int("d_model", 32, minimum=1)
    heads = o.get_int("heads", 4, minimum=1)
    if d_model % heads:
        raise ConfigError(
            f"transformer: d_model={d_model} is not divisible by heads={heads}; "
            "e.g. transformer:d_model=32,heads=4"
        )
    return TransformerModel(
        info,
        d_model=d_model,
        layers=o.get_int("layers", 2, minimum=1),
        heads=heads,
        ff=o.get_int("ff", 64, minimum=1),
        dropout=o.get_float("dropout", 0.0, minimum=0.0),
        act=o.get_choice("act", "relu", ("relu", "gelu")),
        tokens=o.get_int("tokens", 8, minimum=1),
    )


# ---------------------------------------------------------------------------------------------
# registry and entry points

_RNN_OPTS = ("hidden", "init", "layers", "radius")
_BUILDERS: dict[str, tuple[Callable[[Options, DataInfo], nn.Module], tuple[str, ...]]] = {
    "mlp": (
        _mlp,
        ("act", "bias", "bias_init", "depth", "final_act", "init", "norm", "residual", "width"),
    ),
    "cnn": (
        lambda o, i: _plain_cnn(o, i, "cnn", 4),
        ("act", "channels", "depth", "init", "norm"),
    ),
    "plaincnn": (
        lambda o, i: _plain_cnn(o, i, "plaincnn", 12),
        ("act", "channels", "depth", "init", "norm"),
    ),
    "inception": (
        _inception,
        ("act", "aux", "aux_at", "aux_weight", "blocks", "channels", "init", "stem"),
    ),
    "rnn": (lambda o, i: _recurrent(o, i, "rnn"), (*_RNN_OPTS, "act")),
    "lstm": (lambda o, i: _recurrent(o, i, "lstm"), (*_RNN_OPTS, "forget_bias")),
    "gru": (lambda o, i: _recurrent(o, i, "gru"), _RNN_OPTS),
    "transformer": (
        _transformer,
        ("act", "d_model", "dropout", "ff", "heads", "layers", "tokens"),
    ),
}

#: Built-in model names.
MODELS: tuple[str, ...] = tuple(sorted(_BUILDERS))


def build_model(spec: str, info: DataInfo, *, seed: int = 0) -> nn.Module:
    """Build a built-in model from ``name:key=value,...`` for data described by ``info``.

    ``torch.manual_seed(seed)`` is called first, so the same spec and seed give the same
    weights. A ``path/to/file.py:factory`` reference is passed on to :func:`load_model`.
    Unknown names and options raise ConfigError; a model that does not fit the data's shape
    raises DataError naming a data spec that fits.
    """
    if is_factory_ref(spec):
        return load_model(spec, info, seed=seed)
    name, raw = _parse_spec(spec, kind="model")
    if name not in _BUILDERS:
        raise unknown_name("model", name, MODELS)
    builder, valid = _BUILDERS[name]
    opts = Options("model", name, raw, valid=valid)
    torch.manual_seed(seed)
    return builder(opts, info)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def load_model(ref_or_spec: str, info: DataInfo, seed: int = 0) -> nn.Module:
    """Build a built-in model spec or call a ``path/to/file.py:factory``.

    The factory is called with no arguments, or with ``info=`` (the :class:`DataInfo`) when it
    accepts that keyword, after ``torch.manual_seed(seed)``. It must return an ``nn.Module``
    with at least one trainable parameter.
    """
    if is_factory_ref(ref_or_spec):
        factory = load_factory(ref_or_spec)
        torch.manual_seed(seed)
        try:
            model = factory(info=info) if accepts_keyword(factory, "info") else factory()
        except GradmedicError:
            raise
        except Exception as exc:
            raise ModelError(
                f"factory '{ref_or_spec}' raised {_first_line(exc)}; fix the factory (it is "
                "called with no arguments, or with info=DataInfo(...) if it takes 'info')"
            ) from exc
        if not isinstance(model, nn.Module):
            raise ModelError(
                f"factory '{ref_or_spec}' returned {type(model).__name__}, expected "
                "torch.nn.Module; make it return the model instance"
            )
    else:
        model = build_model(ref_or_spec, info, seed=seed)
    if not any(p.requires_grad for p in model.parameters()):
        raise ModelError(
            f"model '{ref_or_spec}' has no trainable parameters; gradmedic needs a model with "
            "trainable parameters (requires_grad=True) to measure gradients"
        )
    return model
