"""Layer-sequential unit-variance init (Mishkin & Matas 2016): ``reinit(scheme=lsuv)``.

Every Linear/Conv weight starts as a random orthogonal matrix (Saxe et al. 2014), then each
layer, in the order a forward pass on a batch reaches it, is rescaled until the standard
deviation of its output on that batch is 1 (within ``tol``): the forward signal keeps unit
scale through any depth and any activation, measured rather than derived.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(*[nn.Linear(32, 32, bias=False) for _ in range(5)])
    >>> out = lsuv_(net, torch.randn(256, 32) * 3)
    >>> all(abs(d["std"] - 1) < 0.1 for d in out.values())
    True
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gradmedic.errors import ConfigError, DataError, ModelError
from gradmedic.remedies.base import require_weighted_layers, weighted_layers

__all__ = ["lsuv_"]


def _as_input(x: Any) -> torch.Tensor:
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        x = x[0]
    if not isinstance(x, torch.Tensor):
        raise DataError(
            "LSUV needs a batch of inputs: pass x=<tensor of shape (batch, ...)>, e.g. "
            "x, _ = data.fixed_batch(256) or data_batch=(x, y) to apply()"
        )
    return x


class _Stop(Exception):
    """Raised by a hook to cut a forward pass short once the wanted output is captured."""


def _forward_order(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """Weighted layers in the order a forward pass on ``x`` first calls them."""
    order: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    handles = []
    for name, layer in weighted_layers(model):

        def hook(mod: nn.Module, inp: Any, out: Any, name: str = name) -> None:
            if id(mod) not in seen:
                seen.add(id(mod))
                order.append((name, mod))

        handles.append(layer.register_forward_hook(hook))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return order


def _output_std(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> float:
    box: list[torch.Tensor] = []

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        box.append(out.detach())
        raise _Stop

    h = layer.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        h.remove()
    if not box:
        raise ModelError(f"LSUV: layer {type(layer).__name__} was not called by the forward pass")
    return float(box[0].double().std())


def lsuv_(
    model: nn.Module,
    x: torch.Tensor,
    *,
    tol: float = 0.1,
    max_iter: int = 10,
    needed_std: float = 1.0,
    seed: int | None = None,
) -> dict[str, dict[str, float]]:
    """Layer-sequential unit-variance init (Mishkin & Matas 2016), in place.

    1. Pre-initialise every Linear/Conv weight with a random orthogonal matrix (Saxe et al.
       2014) and zero its bias.
    2. For each layer in forward order: forward ``x``, measure the std of the layer's output
       (all elements), and while ``|std - needed_std| >= tol`` and fewer than ``max_iter``
       rescales were made, set ``W <- W * needed_std / std``.

    The forward pass is cut short after the layer being calibrated (a hook raises), and runs
    under ``torch.no_grad()`` in eval mode (BatchNorm statistics and dropout are left alone);
    the model's train/eval mode is restored afterwards. Layers the forward pass never reaches
    (e.g. auxiliary heads in eval mode) keep the orthogonal pre-init.

    Returns: ``{layer name: {"std": final output std, "tries": rescales made, "scale": product
    of the rescale factors}}``.

    >>> from torch import nn
    >>> net = nn.Sequential(*[nn.Linear(32, 32, bias=False) for _ in range(5)])
    >>> out = lsuv_(net, torch.randn(256, 32) * 3)
    >>> all(abs(d["std"] - 1) < 0.1 for d in out.values())
    True
    """
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol <= 0:
        raise ConfigError(f"LSUV tol must be a positive number, got {tol!r}; e.g. tol=0.1")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ConfigError(f"LSUV max_iter must be an integer >= 1, got {max_iter!r}")
    x = _as_input(x)
    require_weighted_layers(model, "reinit(scheme=lsuv)")
    if seed is not None:
        torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    result: dict[str, dict[str, float]] = {}
    try:
        with torch.no_grad():
            for _, layer in weighted_layers(model):
                nn.init.orthogonal_(layer.weight)
                if getattr(layer, "bias", None) is not None:
                    layer.bias.zero_()
            for name, layer in _forward_order(model, x):
                scale = 1.0
                tries = 0
                std = _output_std(model, layer, x)
                while abs(std - needed_std) >= tol and tries < max_iter:
                    if not (std > 0 and math.isfinite(std)):
                        break
                    factor = needed_std / std
                    layer.weight.mul_(factor)
                    scale *= factor
                    tries += 1
                    std = _output_std(model, layer, x)
                result[name] = {"std": std, "tries": tries, "scale": scale}
    finally:
        model.train(was_training)
    return result
