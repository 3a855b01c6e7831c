"""Gradients through time for nn.RNN / nn.LSTM / nn.GRU.

The fused recurrent modules hide their per-step hidden states from autograd: the output
sequence's gradient holds only the *direct* part of ``dL/dh_t`` (zero for every ``t < T`` when
the loss reads the last step). Two profiles over the time steps ``t`` (``Quantity`` members,
loss / activation):

* ``INPUT_GRAD_T`` ``||dL/dx_t||`` from the gradient at the module's private view of its input
  sequence (cheap; on the ``rnn_time`` schedule; divided by the AMP scale). When that input
  needs no gradient of its own (raw features fed to the RNN, not an embedding), asking for
  it costs an extra product over the sequence, and the profile comes on the first and then
  every 10th step of the schedule (``base.LEAF_INPUT_EVERY``);
* ``HIDDEN_GRAD_T`` the total ``dL/dh_t = sum_{k >= t} dL_direct/dh_k * prod_{i=t+1..k}
  dh_i/dh_{i-1}`` (Pascanu, Mikolov & Bengio 2013, eq. 3-5) per layer (``parameter`` =
  ``layer<k>``), and ``HIDDEN_GRAD_T_LAST`` the same for the last step's error alone (on the
  ``rnn_hidden`` schedule). They are recovered by re-running the cell equations step by step
  with the weights of that forward pass and back-propagating the module's captured output
  gradients through the unrolled graph. Because ``L`` depends on the module only through its
  outputs, this is exact (up to float rounding), not an approximation.

Unrolling supports unidirectional modules, any number of layers, batch_first or not, batched or
unbatched, no projection (``proj_size=0``); dropout between layers must be 0 (or the module in
eval mode). Bidirectional and packed sequences get the input profile only.

Example::

    >>> from gradmedic import Monitor
    >>> rnn = torch.nn.RNN(2, 3, batch_first=True)
    >>> with Monitor(rnn, every=1, rnn_hidden=True) as mon:
    ...     rnn(torch.ones(1, 4, 2))[0][:, -1].sum().backward(); mon.step()
    >>> f = mon.frame(); len(f[f.quantity == "input_grad_t"]), len(f[f.quantity == "hidden_grad_t"])
    (4, 4)
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any

import torch
from torch import nn

from gradmedic.monitor.hooks import Hooks
from gradmedic.monitor.probes.base import LeafPace, Probe, scaled
from gradmedic.monitor.schedule import Schedule
from gradmedic.nn.modelinfo import RNN_TYPES
from gradmedic.trace import Quantity, Row

__all__ = ["RnnProbe", "unrolled_hidden_grads"]

_INPUT_T = Quantity.INPUT_GRAD_T.value
_HIDDEN_T = Quantity.HIDDEN_GRAD_T.value
_HIDDEN_T_LAST = Quantity.HIDDEN_GRAD_T_LAST.value


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


class RnnProbe(LeafPace, Probe):
    """Time profiles of the hooked RNN modules: ``input_grad_t`` on ``time``'s steps and the
    unrolled ``hidden_grad_t`` / ``hidden_grad_t_last`` on ``hidden``'s steps."""

    def __init__(self, time: Schedule, hidden: Schedule) -> None:
        self.time, self.hidden = time, hidden
        self.time_on = self.hidden_on = False
        self._rnns: set[str] = set()
        self._hooks: Hooks | None = None
        self._profiles: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._captures: dict[str, dict[str, Any]] = {}
        self._labels: list[tuple[str, str, str, int]] = []

    def bind(self, model: nn.Module, selected: list[tuple[str, nn.Module]], hooks: Hooks) -> None:
        self._rnns = {n for n, m in selected if isinstance(m, RNN_TYPES)}
        self._hooks = hooks

    def plan(self, step: int, recording: bool) -> bool:
        self.time_on = bool(self._rnns) and recording and self.time(step)
        self.hidden_on = bool(self._rnns) and recording and self.hidden(step)
        self.on = self.time_on or self.hidden_on
        self.pace(step, self.time_on)
        return self.on

    def wants_input(self, name: str) -> bool:
        return self.time_on and name in self._rnns

    def input_grad(self, name: str, module: nn.Module, index: int, g: torch.Tensor) -> None:
        if index != 0 or g.dim() < 2:  # the profile comes from the input sequence, not h0
            return
        gd = g.detach().double()
        if g.dim() == 2:  # unbatched (T, F)
            per_t = gd.square().sum(dim=1)
        elif getattr(module, "batch_first", False):
            per_t = gd.square().sum(dim=(0, 2))
        else:
            per_t = gd.square().sum(dim=(1, 2))
        self._profiles[name].append(per_t)

    def pre_forward(self, name: str, module: nn.Module, args: tuple) -> None:
        if not self.hidden_on or name not in self._rnns:
            return
        if getattr(module, "bidirectional", False) or not args:
            return
        x = args[0]
        if not isinstance(x, torch.Tensor):  # PackedSequence: not supported for unrolling
            return
        hx = args[1] if len(args) > 1 else None

        def copy(t: Any) -> Any:
            return t.detach().clone() if isinstance(t, torch.Tensor) else t

        self._captures[name] = {
            "module": module,
            "x": x.detach(),
            "hx": tuple(copy(h) for h in hx) if isinstance(hx, tuple) else copy(hx),
            "weights": {k: v.detach().clone() for k, v in module.named_parameters()},
        }

    def forward(self, name: str, module: nn.Module, outs: list[torch.Tensor]) -> None:
        cap = self._captures.get(name)
        if cap is None:
            return
        grads = cap.setdefault("grads", {})
        for i, t in enumerate(outs):
            if t.requires_grad:
                self._hooks.tensor(t, functools.partial(_keep_grad, grads, i))

    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        out, self._labels = [], []
        for name, profiles in self._profiles.items():
            if len({p.shape for p in profiles}) == 1:
                prof = torch.stack(profiles).sum(dim=0).sqrt()
                self._labels += [(name, "", _INPUT_T, t) for t in range(prof.numel())]
                out.append(scaled(prof, scale))
        for name, cap in self._captures.items():
            if cap.get("grads") and not (cap["module"].training and cap["module"].dropout):
                full, last = unrolled_hidden_grads(cap)
                for qty, profiles in ((_HIDDEN_T, full), (_HIDDEN_T_LAST, last)):
                    for layer, prof in enumerate(profiles):
                        self._labels += [(name, f"layer{layer}", qty, t) for t in range(len(prof))]
                        out.append(prof)
        return out

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        out.extend((step, *lab, v) for lab, v in zip(self._labels, values, strict=True))

    def reset(self) -> None:
        self._profiles = defaultdict(list)
        self._captures = {}
        self._labels = []


def _keep_grad(grads: dict[int, torch.Tensor], index: int, g: torch.Tensor) -> None:
    grads[index] = g.detach()
