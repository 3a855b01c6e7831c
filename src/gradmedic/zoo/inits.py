"""Weight initialisations of the built-in models, named in the spec syntax (``init=xavier``).

``init_layers(layers, "kaiming", act="relu")`` re-initialises Linear/Conv layers in place;
:func:`gradmedic.nn.init_gain.activation_gain` gives the gain the ``kaiming`` and
``orthogonal`` schemes scale by. The schemes and their sources:

- ``xavier`` / ``xavier_normal``: Glorot & Bengio 2010;
- ``kaiming`` / ``he``: He et al. 2015;
- ``lecun``: LeCun et al. 1998;
- ``orthogonal``: Saxe et al. 2014;
- ``normal(sw2=..., sb2=...)``: the mean-field parametrisation of Poole et al. 2016 /
  Schoenholz et al. 2017.

Example::

    >>> from torch import nn
    >>> lin = nn.Linear(100, 100)
    >>> init_layers([lin], "normal(sw2=2.0)")
    >>> round(float(lin.weight.var() * 100), 1)  # doctest: +SKIP
    2.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gradmedic._callspec import parse_call
from gradmedic.errors import ConfigError, unknown_name
from gradmedic.nn.init_gain import activation_gain

__all__ = ["INITS", "init_layers", "weighted_layers"]

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

    Raises UnknownNameError for an unknown scheme and ConfigError for bad arguments.
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


def weighted_layers(module: nn.Module) -> list[nn.Module]:
    """The Linear, Conv1d and Conv2d modules of ``module`` (what :func:`init_layers` takes)."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d)
    return [m for m in module.modules() if isinstance(m, kinds)]
