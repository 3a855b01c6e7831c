"""The attention-logit and output log Z probe against references computed by hand."""

from __future__ import annotations

import math

import torch
from torch import nn

from gradmedic import Monitor
from gradmedic.monitor.probes.attention_logits import qk_logit_max


def _ref_mha(mha: nn.MultiheadAttention, x: torch.Tensor) -> float:
    """max |q·k|/sqrt(d) by loops over heads from in_proj_weight (batch first)."""
    e, h = mha.embed_dim, mha.num_heads
    dh = e // h
    w, b = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
    q = x @ w[:e].T + b[:e]
    k = x @ w[e : 2 * e].T + b[e : 2 * e]
    best = 0.0
    for n in range(x.shape[0]):
        for j in range(h):
            qs, ks = q[n, :, j * dh : (j + 1) * dh], k[n, :, j * dh : (j + 1) * dh]
            for a in range(x.shape[1]):
                for c in range(x.shape[1]):
                    best = max(best, abs(float(qs[a] @ ks[c])) / math.sqrt(dh))
    return best


class UserAttn(nn.Module):
    """A user attention block exposing q_proj / k_proj and num_heads."""

    def __init__(self, d: int = 8, heads: int = 2):
        super().__init__()
        self.num_heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.num_heads
        q = self.q_proj(x).view(b, t, h, d // h).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h, d // h).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, d // h).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), -1) @ v
        return a.transpose(1, 2).reshape(b, t, d)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(4, 8)
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.user = UserAttn()
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        h = self.emb(x)
        h = h + self.mha(h, h, h, need_weights=False)[0]
        h = h + self.user(h)
        return self.head(h)


def _one_step(model, x):
    with Monitor(model, every=1, signal=False, weights=False, activations=False) as mon:
        model(x).sum().backward()
        mon.step()
    return mon.frame()


def test_probe_matches_hand_computed_references():
    torch.manual_seed(0)
    model, x = Net(), torch.randn(3, 6, 4)
    with torch.no_grad():
        model.mha.in_proj_weight.mul_(4.0)  # logits well away from 0
        h = model.emb(x)
        ref_mha = _ref_mha(model.mha, h)
        h2 = h + model.mha(h, h, h)[0]
        ref_user = qk_logit_max(model.user.q_proj(h2), model.user.k_proj(h2), 2).item()
        lse = torch.logsumexp(model(x).double(), -1)
    f = _one_step(model, x)
    att = f[f.quantity == "attn_logit_max"].set_index("module")["value"]
    assert ref_mha > 1.0
    assert math.isclose(att["mha"], ref_mha, rel_tol=1e-5)
    assert math.isclose(att["user"], ref_user, rel_tol=1e-5)
    z = f[f.module == ""].set_index("quantity")["value"]
    assert math.isclose(z["output_logz_max"], lse.max().item(), rel_tol=1e-9)
    assert math.isclose(z["output_logz_mean"], lse.mean().item(), rel_tol=1e-9)


def test_user_qk_reference_by_loops():
    torch.manual_seed(1)
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    ref = max(
        abs(float(q[n, a, 2 * j : 2 * j + 2] @ k[n, c, 2 * j : 2 * j + 2])) / math.sqrt(2)
        for n in range(2)
        for j in range(2)
        for a in range(3)
        for c in range(5)
    )
    assert math.isclose(qk_logit_max(q, k, 2).item(), ref, rel_tol=1e-6)


def test_not_batch_first_and_unrecorded_steps():
    torch.manual_seed(2)
    mha = nn.MultiheadAttention(8, 4)  # (L, B, E)
    x = torch.randn(5, 2, 8)
    ref = _ref_mha(mha, x.transpose(0, 1))

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x)[0]

    model = Wrap()
    with Monitor(model, every=2, signal=False, weights=False) as mon:
        for _ in range(3):
            model(x).sum().backward()
            mon.step()
    f = mon.frame()
    att = f[f.quantity == "attn_logit_max"]
    assert sorted(att.step) == [0, 2]
    assert math.isclose(att.value.iloc[0], ref, rel_tol=1e-5)


def _train(monitored: bool):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    mon = Monitor(model, optimizer=opt, every=2).attach() if monitored else None
    losses = []
    for _ in range(4):
        x, y = torch.randn(4, 6, 4, generator=gen), torch.randint(0, 5, (4, 6), generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x).reshape(-1, 5), y.reshape(-1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if mon is not None:
        mon.detach()
        assert (mon.frame().quantity == "attn_logit_max").sum() == 4  # 2 modules x 2 steps
    return losses, [p.detach().clone() for p in model.parameters()]


def test_probe_leaves_training_bit_identical():
    plain, plain_p = _train(False)
    mon, mon_p = _train(True)
    assert plain == mon
    assert all(torch.equal(a, b) for a, b in zip(plain_p, mon_p, strict=True))
