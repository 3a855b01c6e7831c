"""Static facts about a module, stored in the trace so that it can be diagnosed without the
model: init scale of weight layers (``sw2 = fan_in Var(W)``, ``sb2 = Var(b)``; Poole et al.
2016's parametrisation), sizes, the recurrent weight's spectral radius and largest singular
value (Pascanu et al. 2013), the LSTM forget-gate bias, and for activations their parameters
(``act_params``), theory's spec for them (``theory``, None where theory has no model) and which
side of the slope vanishes (``tails``: both = saturating, negative = ReLU family).

Example::

    >>> from torch import nn
    >>> module_facts(nn.Softplus(beta=2.0))["theory"]
    'softplus(beta=2)'
    >>> module_facts(nn.Linear(4, 3))["fan_in"]
    4
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradmedic.nn.activations import kind_of, params_of, theory_spec_from

__all__ = ["RNN_TYPES", "module_facts"]

#: The fused recurrent modules (their cells are measured through time).
RNN_TYPES = (nn.RNN, nn.LSTM, nn.GRU)


def module_facts(m: nn.Module) -> dict[str, Any]:
    """Static facts about a module for trace-only diagnosis (init scale, sizes, rnn radius)."""
    info: dict[str, Any] = {}
    w = getattr(m, "weight", None)
    if (
        isinstance(w, torch.Tensor)
        and w.dim() >= 2
        and isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))
    ):
        fan_in = w[0].numel()
        wd = w.detach().float()
        info.update(fan_in=fan_in, fan_out=w.shape[0], sw2=float(wd.var() * fan_in))
        b = getattr(m, "bias", None)
        if isinstance(b, torch.Tensor) and b.numel() > 1:
            info["sb2"] = float(b.detach().float().var())
            info["b_mean"] = float(b.detach().float().mean())
        elif isinstance(b, torch.Tensor):
            info["sb2"] = 0.0
            info["b_mean"] = float(b.detach().float().mean())
        else:
            info["sb2"] = 0.0
    if isinstance(m, RNN_TYPES):
        info.update(
            mode=m.mode,
            hidden_size=m.hidden_size,
            num_layers=m.num_layers,
            batch_first=m.batch_first,
            bidirectional=m.bidirectional,
            nonlinearity=getattr(m, "nonlinearity", None),
        )
        gates = {"LSTM": 4, "GRU": 3}.get(m.mode, 1)
        whh = m.weight_hh_l0.detach().float()
        h = m.hidden_size
        if gates == 1 and bool(torch.isfinite(whh).all()):
            info["whh_sigma_max"] = float(torch.linalg.matrix_norm(whh, ord=2))
            info["whh_radius"] = float(torch.linalg.eigvals(whh).abs().max())
        if m.mode == "LSTM" and m.bias:
            fb = m.bias_ih_l0.detach()[h : 2 * h] + m.bias_hh_l0.detach()[h : 2 * h]
            info["forget_bias_mean"] = float(fb.float().mean())
    kind = kind_of(m)
    if kind is not None:
        params = params_of(m)
        info.update({k: v for k, v in params.items() if isinstance(v, (int, float, str))})
        info["act_params"] = {k: v for k, v in params.items() if isinstance(v, (int, float, str))}
        info["theory"] = theory_spec_from(kind.name, params)
        info["tails"] = kind.tails
        if hasattr(m, "inplace"):
            info["inplace"] = bool(m.inplace)
    return info
