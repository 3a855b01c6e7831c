"""Exact gradients through time for nn.RNN / nn.LSTM / nn.GRU by unrolling the cell.

The fused recurrent modules hide their per-step hidden states from autograd: the output
sequence's gradient holds only the *direct* part of ``dL/dh_t`` (zero for every ``t < T`` when
the loss reads the last step). The total gradient that reaches step ``t`` through the
recurrence, ``dL/dh_t = sum_{k >= t} dL_direct/dh_k * prod_{i=t+1..k} dh_i/dh_{i-1}``
(Pascanu, Mikolov & Bengio 2013, eq. 3-5), is recovered here by re-running the cell equations
step by step with the weights of that forward pass and back-propagating the module's captured
output gradients through the unrolled graph. Because ``L`` depends on the module only through
its outputs, this is exact (up to float rounding), not an approximation.

Supported: unidirectional, any number of layers, batch_first or not, batched or unbatched,
no projection (``proj_size=0``); dropout between layers must be 0 (or the module in eval mode).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["RNN_TYPES", "unrolled_hidden_grads"]

from gradmedic.nn.modelinfo import RNN_TYPES


def _cell(mode: str, nonlin: str, x: torch.Tensor, h: Any, w: dict[str, torch.Tensor], k: int):
    w_ih, w_hh = w[f"weight_ih_l{k}"], w[f"weight_hh_l{k}"]
    b_ih, b_hh = w.get(f"bias_ih_l{k}"), w.get(f"bias_hh_l{k}")
    gi = x @ w_ih.T + (b_ih if b_ih is not None else 0)
    if mode == "LSTM":
        hp, cp = h
        gates = gi + hp @ w_hh.T + (b_hh if b_hh is not None else 0)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * cp + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    gh = h @ w_hh.T + (b_hh if b_hh is not None else 0)
    if mode == "GRU":
        ir, iz, in_ = gi.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return (1 - z) * n + z * h, None
    pre = gi + gh
    return (torch.tanh(pre) if nonlin == "tanh" else torch.relu(pre)), None


def unrolled_hidden_grads(
    cap: dict[str, Any],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer profiles ``||dL/dh_t||`` (a (T,) tensor each) from a captured forward pass,
    and the same profiles for the error of the last step alone (``||dL_T/dh_t||``).

    ``cap`` holds the module, its input ``x``, initial state ``hx``, a snapshot of its
    ``weights`` and ``grads``: a dict from output index (0 = output sequence, 1 = h_n,
    2 = c_n for LSTM) to the gradient the loss sent to that output.
    """
    m: nn.Module = cap["module"]
    if getattr(m, "proj_size", 0):
        return [], []
    mode, nl = m.mode, getattr(m, "nonlinearity", "tanh")
    x = cap["x"].float()
    unbatched = x.dim() == 2
    if unbatched:
        x = x.unsqueeze(1)  # (T, 1, F)
    elif m.batch_first:
        x = x.transpose(0, 1)  # (T, B, F)
    T, B, H, L = x.shape[0], x.shape[1], m.hidden_size, m.num_layers
    w = {k: v.float() for k, v in cap["weights"].items()}
    hx = cap.get("hx")
    if mode == "LSTM":
        h0, c0 = hx if hx is not None else (None, None)
    else:
        h0, c0 = hx, None

    def init(s: torch.Tensor | None) -> torch.Tensor:
        if s is None:
            return torch.zeros(L, B, H, device=x.device)
        s = s.float()
        return s.unsqueeze(1) if unbatched else s

    h0, c0 = init(h0), init(c0) if mode == "LSTM" else None
    with torch.enable_grad():
        h_init = h0.detach().clone().requires_grad_(True)
        c_init = c0.detach().clone().requires_grad_(True) if c0 is not None else None
        layer_in = x
        states: list[list[torch.Tensor]] = []
        last_h, last_c = [], []
        for k in range(L):
            h = h_init[k]
            c = c_init[k] if c_init is not None else None
            hs: list[torch.Tensor] = []
            for t in range(T):
                h, c = _cell(mode, nl, layer_in[t], (h, c) if mode == "LSTM" else h, w, k)
                hs.append(h)
            states.append(hs)
            last_h.append(h)
            last_c.append(c)
            layer_in = torch.stack(hs)
        out_seq = layer_in  # (T, B, H)
        grads = cap.get("grads", {})
        outputs, grad_outs = [], []

        def add(tensor: torch.Tensor, g: torch.Tensor | None, reshape) -> None:
            if g is not None:
                outputs.append(tensor)
                grad_outs.append(reshape(g.float()))

        def seq_shape(g: torch.Tensor) -> torch.Tensor:
            if unbatched:
                return g.unsqueeze(1)
            return g.transpose(0, 1) if m.batch_first else g

        def state_shape(g: torch.Tensor) -> torch.Tensor:
            return g.unsqueeze(1) if unbatched else g

        add(out_seq, grads.get(0), seq_shape)
        add(torch.stack(last_h), grads.get(1), state_shape)
        if mode == "LSTM":
            add(torch.stack(last_c), grads.get(2), state_shape)
        if not outputs:
            return [], []
        flat = [h for hs in states for h in hs]
        gs = torch.autograd.grad(outputs, flat, grad_outs, allow_unused=True, retain_graph=True)
        # The same, from the last step's error only: with a loss on every step (copy task,
        # tagging) each h_t gets its own direct gradient and the full profile stays level; what
        # survives from step T back to step t is the memory horizon.
        last_outs = list(grad_outs)
        if grads.get(0) is not None:
            masked = torch.zeros_like(last_outs[0])
            masked[-1] = last_outs[0][-1]
            last_outs[0] = masked
        gs_last = torch.autograd.grad(outputs, flat, last_outs, allow_unused=True)
    return _per_layer_norms(gs, L, T, x.device), _per_layer_norms(gs_last, L, T, x.device)


def _per_layer_norms(gs: Any, L: int, T: int, device: torch.device) -> list[torch.Tensor]:
    zero = torch.zeros((), dtype=torch.float64, device=device)
    return [
        torch.stack(
            [
                torch.linalg.vector_norm(g, dtype=torch.float64) if g is not None else zero
                for g in gs[k * T : (k + 1) * T]
            ]
        )
        for k in range(L)
    ]
