"""qk-layernorm and z-loss: structure, references computed by hand, and training runs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.remedies import apply
from gradmedic.remedies.transformer import QKNormAttention, ZLossModel, z_loss
from gradmedic.workflows.train import TrainConfig, train
from gradmedic.zoo import build_model, load_data


def _layer(batch_first: bool = True) -> nn.TransformerEncoderLayer:
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=batch_first)


def _ref_qknorm(mha: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Slow reference: per head, LayerNorm (no affine) on q and k, masked softmax, out_proj."""
    e, h = mha.embed_dim, mha.num_heads
    dh = e // h
    w, b = mha.in_proj_weight, mha.in_proj_bias
    q, k, v = (x @ w[i * e : (i + 1) * e].T + b[i * e : (i + 1) * e] for i in range(3))
    heads = []
    for j in range(h):
        sl = slice(j * dh, (j + 1) * dh)
        qn = nn.functional.layer_norm(q[..., sl], (dh,))
        kn = nn.functional.layer_norm(k[..., sl], (dh,))
        s = (qn @ kn.transpose(-1, -2) / math.sqrt(dh)).masked_fill(mask, -math.inf)
        heads.append(torch.softmax(s, -1) @ v[..., sl])
    return mha.out_proj(torch.cat(heads, -1))


def test_qk_layernorm_structure_weights_and_reference():
    layer = _layer()
    new, rep = apply(layer, "qk-layernorm")
    assert isinstance(new.self_attn, QKNormAttention) and isinstance(
        layer.self_attn, nn.MultiheadAttention
    )
    assert torch.equal(new.self_attn.attn.in_proj_weight, layer.self_attn.in_proj_weight)
    assert new.self_attn.attn.in_proj_weight is not layer.self_attn.in_proj_weight  # a copy
    assert rep.changes == [
        "self_attn: MultiheadAttention -> QKNormAttention (LayerNorm(4) on q and k per head)"
    ]
    x = torch.randn(3, 5, 8)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    out, _ = new.self_attn(x, x, x, attn_mask=causal, need_weights=False)
    ref = _ref_qknorm(layer.self_attn, x, causal)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # the function changes (that is the point): the original differs
    orig, _ = layer.self_attn(x, x, x, attn_mask=causal, need_weights=False)
    assert not torch.allclose(orig, out, atol=1e-3)
    # through the encoder layer, eval mode too (no fused fast path bypassing the norms)
    new.eval()
    with torch.no_grad():
        y = new(x, src_mask=causal, is_causal=True)
    h = layer.norm1(x + _ref_qknorm(layer.self_attn, x, causal))  # post-norm layer
    torch.testing.assert_close(y, layer.norm2(h + layer._ff_block(h)), rtol=1e-5, atol=1e-5)


def test_qk_layernorm_bounds_the_logits_of_huge_weights():
    layer = _layer()
    with torch.no_grad():
        layer.self_attn.in_proj_weight.mul_(100.0)
    new, _ = apply(layer, "qk-layernorm")
    x = torch.randn(2, 6, 8)
    w = new.self_attn(x, x, x, need_weights=True, average_attn_weights=False)[1]
    # |LN(q).LN(k)|/sqrt(4) <= sqrt(4): every weight >= e^-4 / (6 e^2) > 0
    assert w.min().item() > math.exp(-4) / (6 * math.exp(2)) * 0.99
    w0 = layer.self_attn(x, x, x, need_weights=True, average_attn_weights=False)[1]
    assert w0.min().item() < 1e-12  # the original is one-hot


def test_qk_layernorm_not_batch_first_and_key_padding():
    layer = _layer(batch_first=False)
    new, _ = apply(layer, "qk-layernorm")
    x = torch.randn(5, 2, 8)  # (T, B, E)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True
    out, w = new.self_attn(x, x, x, key_padding_mask=pad)
    assert out.shape == (5, 2, 8) and w.shape == (2, 5, 5)
    assert torch.all(w[1, :, 3:] == 0) and torch.all(w[0, :, 3:] > 0)


def test_qk_layernorm_does_not_apply_without_attention():
    with pytest.raises(ConfigError, match=r"no nn\.MultiheadAttention"):
        apply(nn.Sequential(nn.Linear(2, 2)), "qk-layernorm")


def test_z_loss_value_equals_reference():
    torch.manual_seed(0)
    logits = torch.randn(4, 7, 11) * 3
    lse = torch.log(torch.exp(logits.double()).sum(-1))
    assert math.isclose(z_loss(logits).item(), 1e-4 * lse.square().mean().item(), rel_tol=1e-6)
    assert math.isclose(z_loss(logits, 0.5).item(), 0.5 * lse.square().mean().item(), rel_tol=1e-6)


def test_z_loss_remedy_keeps_output_and_adds_the_term():
    digits = load_data("digits")
    model = build_model("transformer:d_model=16,heads=2,layers=1", digits.info, seed=0)
    new, rep = apply(model, "z-loss(coefficient=0.01)")
    assert isinstance(new, ZLossModel) and rep.spec == "z-loss(coefficient=0.01)"
    x = torch.as_tensor(digits.x[:8]).float()
    torch.testing.assert_close(new(x), model(x))
    out = new(x)
    assert math.isclose(
        new.aux_loss(None, None).item(),
        0.01 * torch.logsumexp(out, -1).square().mean().item(),
        rel_tol=1e-6,
    )
    with pytest.raises(ConfigError):
        apply(model, "z-loss(coefficient=0)")


def test_both_remedies_train():
    digits = load_data("digits")
    model = build_model("transformer:d_model=16,heads=2,layers=1", digits.info, seed=0)
    new, _ = apply(model, "qk-layernorm+z-loss")
    assert isinstance(new, ZLossModel) and isinstance(
        new.model.encoder.layers[0].self_attn, QKNormAttention
    )
    res = train(new, digits, TrainConfig(steps=20, lr=3e-3, optimizer="adam", seed=0))
    assert all(math.isfinite(v) for v in res.losses) and res.losses[-1] < res.losses[0]
