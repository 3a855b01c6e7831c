"""Transformer logit scales on recorded steps: attention logits and the output normaliser.

Wortsman et al. (2023, "Small-scale proxies for large-scale Transformer training
instabilities", §3.1-3.2) trace two instabilities of Transformer training at high learning
rates to logit scales: *attention logit growth* (the logits ``z_ij = q_i·k_j/√d_head`` grow
until the softmax collapses to one-hot, their Figure 3; Dehghani et al. 2023 saw it at 8B) and
*output logit divergence* (the softmax normaliser ``log Z = logsumexp_c y_c`` of the output
logits drifts far from 0, their §3.2, which z-loss keeps near 0).

Recorded (``Quantity`` members):

* ``ATTN_LOGIT_MAX`` per attention module (logit): ``max |q·k|/√d_head`` over heads and all
  query/key pairs of the first samples of the batch (at most ``SAMPLE_MAX`` query-key-head
  products per module). Masks are not applied (a causally masked pair counts too): it is the
  scale the weights produce, the quantity that grows.
* ``OUTPUT_LOGZ_MAX`` / ``OUTPUT_LOGZ_MEAN`` on the model (logit): max and mean over output
  rows (each position's logit vector along the last dimension) of ``log Z``, on at most
  ``STATS_MAX`` entries of the model's first output tensor when it has ≥ 2 dimensions and a
  last dimension ≥ 2 (classifiers and language models).

Supported attention modules: ``nn.MultiheadAttention`` (``q = x_q W_q^T + b_q`` and
``k = x_k W_k^T + b_k`` from ``in_proj_weight`` / ``in_proj_bias``, or ``q_proj_weight`` /
``k_proj_weight`` when ``kdim != embed_dim``; from the positional ``query, key`` inputs, so
``nn.TransformerEncoderLayer`` and ``nn.TransformerDecoderLayer`` are covered), and user
modules with ``q_proj`` and ``k_proj`` ``nn.Linear`` children and a ``num_heads`` (or
``n_heads``) attribute, whose projection outputs (B, T, E) are read as they are computed.
Everything runs under ``no_grad`` on detached tensors: training is unchanged.

Example::

    >>> mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    >>> x = torch.randn(3, 5, 8)
    >>> float(mha_logit_max(mha, x, x)) > 0
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradmedic.monitor.hooks import Hooks
from gradmedic.monitor.probes.base import STATS_MAX, Probe
from gradmedic.trace import Quantity, Row

__all__ = ["SAMPLE_MAX", "AttentionLogitsProbe", "logz", "mha_logit_max", "qk_logit_max"]

#: At most this many query-key-head logits per attention module and call (whole samples).
SAMPLE_MAX = 1 << 20


def _heads(module: nn.Module) -> int | None:
    h = getattr(module, "num_heads", None) or getattr(module, "n_heads", None)
    return int(h) if h else None


def qk_logit_max(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """``max |q·k|/√d_head`` (float64 scalar) of batch-first projections ``q`` (B, L, E) and
    ``k`` (B, S, E) split into ``heads`` heads, on the first samples (``SAMPLE_MAX``)."""
    with torch.no_grad():
        q, k = q.detach(), k.detach()
        if q.dim() == 2:
            q, k = q.unsqueeze(0), k.unsqueeze(0)
        b, n_q, e = q.shape
        n_k = k.shape[1]
        keep = max(1, min(b, SAMPLE_MAX // max(1, n_q * n_k * heads)))
        dh = e // heads
        qh = q[:keep].reshape(keep, n_q, heads, dh).transpose(1, 2).float()
        kh = k[:keep].reshape(keep, n_k, heads, dh).transpose(1, 2).float()
        logits = qh @ kh.transpose(-1, -2) / math.sqrt(dh)
        return logits.abs().amax().double()


def mha_logit_max(
    mha: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor
) -> torch.Tensor:
    """``max |q·k|/√d_head`` of ``nn.MultiheadAttention`` on its inputs (float64 scalar)."""
    e = mha.embed_dim
    with torch.no_grad():
        if not mha.batch_first and query.dim() == 3:
            query, key = query.transpose(0, 1), key.transpose(0, 1)
        if mha.in_proj_weight is not None:
            wq, wk = mha.in_proj_weight[:e], mha.in_proj_weight[e : 2 * e]
        else:
            wq, wk = mha.q_proj_weight, mha.k_proj_weight
        b = mha.in_proj_bias
        bq, bk = (None, None) if b is None else (b[:e], b[e : 2 * e])
        keep = max(
            1, min(query.shape[0], SAMPLE_MAX // max(1, query.shape[-2] ** 2 * mha.num_heads))
        )
        q = nn.functional.linear(query[:keep].detach(), wq.detach(), bq)
        k = nn.functional.linear(key[:keep].detach(), wk.detach(), bk)
        return qk_logit_max(q, k, mha.num_heads)


def logz(out: torch.Tensor) -> torch.Tensor | None:
    """``log Z = logsumexp`` along the last dimension of at most ``STATS_MAX`` entries of
    ``out`` (float64, one value per row), or None for an output that has no logit rows."""
    if out.dim() < 2 or out.shape[-1] < 2:
        return None
    with torch.no_grad():
        rows = out.detach().reshape(-1, out.shape[-1])
        rows = rows[: max(1, STATS_MAX // out.shape[-1])]
        return torch.logsumexp(rows.double(), dim=-1)


class AttentionLogitsProbe(Probe):
    """Attention logit scale per attention module, and the output ``log Z`` of the model."""

    def __init__(self) -> None:
        self._mha: set[str] = set()
        self._proj: dict[str, tuple[str, str, int]] = {}  # child name -> (parent, q|k, heads)
        self._max: dict[str, torch.Tensor] = {}
        self._qk: dict[str, dict[str, torch.Tensor]] = {}
        self._logz: list[torch.Tensor] = []
        self._names: list[str] = []

    def bind(self, model: nn.Module, selected: list[tuple[str, nn.Module]], hooks: Hooks) -> None:
        self._mha = {n for n, m in selected if isinstance(m, nn.MultiheadAttention)}
        self._proj = {}
        for name, mod in model.named_modules():
            h = _heads(mod)
            q, k = getattr(mod, "q_proj", None), getattr(mod, "k_proj", None)
            if h and isinstance(q, nn.Linear) and isinstance(k, nn.Linear):
                pre = f"{name}." if name else ""
                self._proj[f"{pre}q_proj"] = (name, "q", h)
                self._proj[f"{pre}k_proj"] = (name, "k", h)

    def plan(self, step: int, recording: bool) -> bool:
        self.on = recording
        return self.on

    def pre_forward(self, name: str, module: nn.Module, args: tuple) -> None:
        if name in self._mha and len(args) >= 2 and isinstance(args[0], torch.Tensor):
            self._keep(name, mha_logit_max(module, args[0], args[1]))  # type: ignore[arg-type]

    def forward(self, name: str, module: nn.Module, outs: list[torch.Tensor]) -> None:
        entry = self._proj.get(name)
        if entry is None or not outs:
            return
        parent, which, heads = entry
        got = self._qk.setdefault(parent, {})
        got[which] = outs[0].detach()
        if "q" in got and "k" in got:
            q, k = got.pop("q"), got.pop("k")
            if q.shape[-1] % heads == 0 and q.shape[-1] == k.shape[-1]:
                self._keep(parent, qk_logit_max(q, k, heads))

    def _keep(self, name: str, value: torch.Tensor) -> None:
        old = self._max.get(name)
        self._max[name] = value if old is None else torch.maximum(old, value)

    def needs_modules(self) -> bool:
        return bool(self._mha or self._proj)  # log Z comes from the root's hook

    def model_output(self, outs: list[torch.Tensor]) -> None:
        """The model's output tensors at the end of a forward (called by the Monitor)."""
        if self.on and outs:
            z = logz(outs[0])
            if z is not None:
                self._logz.append(z)

    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        self._names = list(self._max)
        out = [torch.stack([self._max[n] for n in self._names])] if self._names else []
        if self._logz:
            z = torch.cat(self._logz)
            out.append(torch.stack([z.max(), z.mean()]))
        return out

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        for name, v in zip(self._names, values, strict=False):
            out.append((step, name, "", Quantity.ATTN_LOGIT_MAX.value, None, v))
        if self._logz:
            zmax, zmean = values[len(self._names) :][:2]
            out.append((step, "", "", Quantity.OUTPUT_LOGZ_MAX.value, None, zmax))
            out.append((step, "", "", Quantity.OUTPUT_LOGZ_MEAN.value, None, zmean))

    def reset(self) -> None:
        self._max, self._qk, self._logz, self._names = {}, {}, [], []
