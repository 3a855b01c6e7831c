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

Functional layers, recorded by the Monitor under pseudo-module names, get the same facts from
:func:`weight_use_facts` (the parameter's init scale at its first use, ``fan_in`` being the
dimension the operation contracts) and :func:`functional_activation_facts`::

    >>> w = torch.ones(3, 5) * torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])
    >>> f = weight_use_facts(w, "matmul", fan_in=5, fan_out=3)
    >>> f["type"], f["fan_in"], round(f["sw2"], 4)
    ('functional.matmul', 5, 5.1429)
    >>> functional_activation_facts("sigmoid", {})["theory"]
    'sigmoid'
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradmedic.nn.activations import KINDS, kind_of, params_of, theory_spec_from
from gradmedic.nn.taxonomy import FUNCTIONAL_TYPE_PREFIX

__all__ = [
    "RNN_TYPES",
    "SELF_COMPUTING_TYPES",
    "functional_activation_facts",
    "module_facts",
    "weight_use_facts",
]

#: The fused recurrent modules (their cells are measured through time).
RNN_TYPES = (nn.RNN, nn.LSTM, nn.GRU)
#: Modules with children that compute without calling them as modules: the Monitor measures
#: them like leaves (``MultiheadAttention`` reads ``out_proj.weight`` in its functional core).
SELF_COMPUTING_TYPES: tuple[type[nn.Module], ...] = (nn.MultiheadAttention,)


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
        # Var(W) needs two entries; a single weight (a 1x1 layer) is read as a draw from a
        # zero-mean init, whose variance its square estimates
        var = wd.var() if wd.numel() > 1 else wd.square().mean()
        info.update(fan_in=fan_in, fan_out=w.shape[0], sw2=float(var * fan_in))
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
    if isinstance(m, nn.MultiheadAttention):
        info.update(embed_dim=m.embed_dim, num_heads=m.num_heads, batch_first=m.batch_first)
    kind = kind_of(m)
    if kind is not None:
        info.update(_activation_facts(kind.name, params_of(m)))
        if hasattr(m, "inplace"):
            info["inplace"] = bool(m.inplace)
    return info


def _activation_facts(name: str, params: dict[str, Any]) -> dict[str, Any]:
    plain = {k: v for k, v in params.items() if isinstance(v, (int, float, str))}
    return {
        **plain,
        "act_params": dict(plain),
        "theory": theory_spec_from(name, params),
        "tails": KINDS[name].tails,
    }


def weight_use_facts(
    w: torch.Tensor, op: str, *, fan_in: int, fan_out: int, param: str = ""
) -> dict[str, Any]:
    """Facts of a functional weight use (``x @ W.T``, ``F.linear(x, W)``, ``F.conv2d``): the
    pseudo-module's ``type`` (``functional.<op>``), ``fan_in`` (entries summed per output),
    ``fan_out``, ``sw2 = fan_in Var(W)`` (float32 variance of the parameter ``w``, unbiased
    as for modules), ``sb2 = 0`` until a bias added to its output is seen, and ``param``
    (the parameter's qualified name). ``sw2`` is NaN for a single-entry or non-finite ``w``."""
    wd = w.detach().float()
    var = float(wd.var()) if wd.numel() > 1 else float("nan")
    return {
        "type": f"{FUNCTIONAL_TYPE_PREFIX}{op}",
        "functional": True,
        "op": op,
        "param": param,
        "fan_in": int(fan_in),
        "fan_out": int(fan_out),
        "sw2": var * fan_in,
        "sb2": 0.0,
    }


def functional_activation_facts(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Facts of a functional activation call (``torch.sigmoid(z)``, ``F.leaky_relu(z, 0.2)``)
    of registry kind ``name`` with call parameters ``params``: as for an activation module
    (``act_params``, ``theory``, ``tails``) plus ``type`` ``functional.<name>``."""
    return {
        "type": f"{FUNCTIONAL_TYPE_PREFIX}{name}",
        "functional": True,
        "op": name,
        **_activation_facts(name, params),
    }
