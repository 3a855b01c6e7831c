"""The built-in Transformer: a small pre-norm encoder (Vaswani et al. 2017; pre-norm after
Xiong et al. 2020, whose gradients at init are well-behaved without a warm-up).

Example::

    >>> from gradmedic.zoo import build_model, load_data
    >>> net = build_model("transformer:d_model=16,heads=2", load_data("digits").info)
    >>> net.tokens, net.layout
    (8, 'flat')
"""

from __future__ import annotations

import torch
from torch import nn

from gradmedic._callspec import Options
from gradmedic.errors import ConfigError
from gradmedic.zoo.data import DataInfo
from gradmedic.zoo.shapes import flat_size

__all__ = ["TRANSFORMER_OPTIONS", "TransformerModel", "build_transformer"]

#: Options ``transformer:`` accepts.
TRANSFORMER_OPTIONS = ("act", "d_model", "dropout", "ff", "heads", "layers", "tokens")


class TransformerModel(nn.Module):
    """Small pre-norm Transformer encoder (``norm_first=True``, Xiong et al. 2020).

    Inputs become tokens: (T, F) sequences as they are; flat vectors of length L as
    ``tokens`` tokens of L/tokens features (digits: 8 rows of 8 pixels); images (C, H, W) as
    H row tokens of C·W features; 1-D (C, L) as L tokens of C features. A Linear embedding and
    a learned positional embedding feed the encoder; the head reads the mean-pooled tokens, or
    every token for seq-classification (output (B, T, C)).

    Raises ConfigError when flat inputs do not split into ``tokens`` equal tokens.
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
            size = flat_size(info)
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


def build_transformer(o: Options, info: DataInfo) -> nn.Module:
    """The :class:`TransformerModel` for ``transformer:`` options ``o`` on data ``info``.

    Raises ConfigError when ``d_model`` is not divisible by ``heads`` or for bad options.
    """
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
