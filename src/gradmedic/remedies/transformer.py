"""Transformer remedies for logit instabilities: ``qk-layernorm`` and ``z-loss``.

Both come from Wortsman et al. (2023, "Small-scale proxies for large-scale Transformer
training instabilities"), who show at small scale that they widen the range of learning rates
a Transformer trains at:

* **QK-layernorm** (§3.1; Dehghani et al. 2023, ViT-22B): LayerNorm on the queries and keys,
  per head over the head dimension, before the dot product:
  ``z_ij = LN(q_i)·LN(k_j)/√d_head``, so ``|z_ij| ≤ √d_head·γ_q·γ_k`` cannot grow with the
  weights. :class:`QKNormAttention` replaces an ``nn.MultiheadAttention`` with the same weights
  (it holds the original as ``attn``) plus the two LayerNorms (weight 1, bias 0). It changes
  the function: the output is not the original's.
* **z-loss** (§3.2, after PaLM, Chowdhery et al. 2022): ``L += c·mean(log² Z)`` with
  ``log Z = logsumexp`` of the output logits and ``c = 1e-4``: it keeps log Z near 0, so the
  output logits cannot drift. :class:`ZLossModel` wraps the model without changing its output
  and speaks the auxiliary-loss protocol of :func:`gradmedic.workflows.train.train`
  (``aux_enabled``, ``aux_loss(loss_fn, y)``), which adds :func:`z_loss` to every training
  loss. Wrapping renames parameters (``0.weight`` becomes ``model.0.weight``).

Example::

    >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
    >>> net, rep = qk_layernorm(nn.Sequential(mha))
    >>> type(net[0]).__name__, net[0].attn.in_proj_weight is mha.in_proj_weight
    ('QKNormAttention', False)
    >>> round(float(z_loss(torch.zeros(1, 4))), 10)   # 1e-4 * log(4)^2
    0.0001921812
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.remedies.base import RemedyReport
from gradmedic.remedies.registry import remedy

__all__ = ["QKNormAttention", "ZLossModel", "qk_layernorm", "qk_layernorm_", "z_loss"]

#: The z-loss coefficient of Wortsman et al. 2023 and PaLM.
Z_LOSS_COEFFICIENT = 1e-4


def z_loss(logits: torch.Tensor, coefficient: float = Z_LOSS_COEFFICIENT) -> torch.Tensor:
    """``coefficient · mean over rows of (logsumexp of the last dimension)²`` (Wortsman et al.
    2023 §3.2), in the logits' dtype; a scalar."""
    return coefficient * torch.logsumexp(logits, dim=-1).square().mean()


class QKNormAttention(nn.Module):
    """``nn.MultiheadAttention`` with LayerNorm on q and k per head (see the module docstring).

    Same call signature and return as ``nn.MultiheadAttention.forward`` (``attn_mask`` and
    ``key_padding_mask`` boolean (True = masked) or additive float, ``is_causal``); the
    attention weights are returned when ``need_weights``. Dropout on the weights as the original.
    ``_qkv_same_embed_dim`` is False so Transformer layers never take their fused fast path
    (which would bypass the norms)."""

    _qkv_same_embed_dim = False

    def __init__(self, attn: nn.MultiheadAttention) -> None:
        super().__init__()
        if attn.in_proj_weight is None or attn.bias_k is not None:
            raise ValueError("QKNormAttention needs an nn.MultiheadAttention with in_proj_weight")
        self.attn = attn
        self.embed_dim, self.num_heads = attn.embed_dim, attn.num_heads
        self.batch_first = attn.batch_first
        self.head_dim = attn.embed_dim // attn.num_heads
        self.q_norm = nn.LayerNorm(self.head_dim)
        self.k_norm = nn.LayerNorm(self.head_dim)

    # what torch's Transformer layers read from their self_attn (their fast-path checks)
    @property
    def in_proj_weight(self) -> torch.Tensor:
        return self.attn.in_proj_weight

    @property
    def in_proj_bias(self) -> torch.Tensor | None:
        return self.attn.in_proj_bias

    @property
    def out_proj(self) -> nn.Module:
        return self.attn.out_proj

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, h, dh = self.attn, self.num_heads, self.head_dim
        if not self.batch_first and query.dim() == 3:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        wq, wk, wv = a.in_proj_weight.chunk(3)
        bq = bk = bv = None
        if a.in_proj_bias is not None:
            bq, bk, bv = a.in_proj_bias.chunk(3)
        nf = nn.functional

        def split(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
            y = nf.linear(x, w, b)
            return y.reshape(*y.shape[:-1], h, dh).transpose(-2, -3)  # (B, H, T, dh)

        q = self.q_norm(split(query, wq, bq))
        k = self.k_norm(split(key, wk, bk))
        v = split(value, wv, bv)
        logits = q @ k.transpose(-1, -2) / math.sqrt(dh)
        n_q, n_k = logits.shape[-2], logits.shape[-1]
        if attn_mask is None and is_causal:
            attn_mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).triu(1)
        if attn_mask is not None:
            m = attn_mask if attn_mask.dim() == 2 else attn_mask.reshape(-1, h, n_q, n_k)
            logits = _masked(logits, m)
        if key_padding_mask is not None:
            logits = _masked(logits, key_padding_mask[:, None, None, :])
        w = torch.softmax(logits, dim=-1)
        w = nf.dropout(w, a.dropout, self.training)
        out = (w @ v).transpose(-2, -3).reshape(*query.shape[:-1], self.embed_dim)
        out = a.out_proj(out)
        if not self.batch_first and out.dim() == 3:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, (w.mean(dim=-3) if average_attn_weights else w)


def _masked(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return logits.masked_fill(mask, float("-inf"))
    return logits + mask


def qk_layernorm_(model: nn.Module) -> tuple[nn.Module, RemedyReport]:
    """In place: replace every ``nn.MultiheadAttention`` by :class:`QKNormAttention` (same
    weights). Returns the model (a new one when the model itself is an attention module)."""
    rep = RemedyReport(spec="qk-layernorm")
    if isinstance(model, nn.MultiheadAttention):
        rep.changes.append("<root>: MultiheadAttention -> QKNormAttention (LayerNorm on q, k)")
        return QKNormAttention(model), rep
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.MultiheadAttention) and not isinstance(mod, QKNormAttention):
                full = f"{name}.{child_name}" if name else child_name
                try:
                    setattr(mod, child_name, QKNormAttention(child))
                except ValueError as exc:
                    rep.warnings.append(f"{full}: {exc}")
                    continue
                rep.changes.append(
                    f"{full}: MultiheadAttention -> QKNormAttention (LayerNorm({child.head_dim}) "
                    "on q and k per head)"
                )
    return model, rep


def qk_layernorm(model: nn.Module) -> tuple[nn.Module, RemedyReport]:
    """A copy of ``model`` with QK-layernorm (see :func:`qk_layernorm_`); yours is untouched."""
    return qk_layernorm_(copy.deepcopy(model))


class ZLossModel(nn.Module):
    """``model`` unchanged, plus ``aux_loss(loss_fn, y) = z_loss(last output, coefficient)``
    in training mode (the protocol :func:`gradmedic.workflows.train.train` adds).

    Training loop of your own::

        out = model(x)
        loss = loss_fn(out, y) + model.aux_loss(loss_fn, y)
    """

    def __init__(self, model: nn.Module, coefficient: float = Z_LOSS_COEFFICIENT) -> None:
        super().__init__()
        self.model = model
        self.coefficient = float(coefficient)
        self.aux_enabled = True
        self._last: torch.Tensor | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.model(*args, **kwargs)
        self._last = out if self.training and isinstance(out, torch.Tensor) else None
        return out

    def aux_loss(self, loss_fn: Any, y: Any) -> torch.Tensor:
        """The z-loss of the last training forward's output (0 when there was none)."""
        if self._last is None:
            return torch.zeros(())
        return z_loss(self._last, self.coefficient)


def _has_mha(model: nn.Module) -> str | None:
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        return None
    return "the model has no nn.MultiheadAttention"


@remedy("qk-layernorm", order=145, applies=_has_mha)
def _qk_layernorm_remedy(model: nn.Module, /) -> tuple[nn.Module, RemedyReport]:
    """LayerNorm on the queries and keys of every attention module (Wortsman et al. 2023)"""
    return qk_layernorm_(model)


@remedy("z-loss", order=146)
def _z_loss_remedy(
    model: nn.Module, /, coefficient: float = Z_LOSS_COEFFICIENT
) -> tuple[nn.Module, RemedyReport]:
    """add coefficient * log^2 Z of the output logits to the training loss (Wortsman et al. 2023)"""
    if not coefficient > 0:
        raise ConfigError(
            f"z-loss needs coefficient > 0, e.g. z-loss(coefficient=1e-4): {coefficient}"
        )
    rep = RemedyReport(spec=f"z-loss(coefficient={coefficient:g})")
    rep.changes.append(
        f"training: loss += {coefficient:g} * mean(logsumexp(output)^2) through aux_loss "
        "(the model's output is unchanged; parameters renamed model.*)"
    )
    return ZLossModel(model, coefficient), rep
