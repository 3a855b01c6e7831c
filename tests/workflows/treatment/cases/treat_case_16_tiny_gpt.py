"""Field case 16: tiny GPT-style language model: healthy at a sane learning rate, unstable at a
high one (loss spikes / NaN).

Source: https://github.com/karpathy/nanoGPT/issues/136 ("Loss becomes nan after training for
~2000 iterations"; the fix confirmed by the reporter: reduce the learning rate) and
https://github.com/karpathy/nanoGPT/issues/167.

Situation (own words): a 2-layer pre-LayerNorm causal Transformer (token + position embedding,
nn.TransformerEncoderLayer with norm_first=True, GELU, causal mask, weight-tied-free linear
head), next-character cross-entropy on a synthetic Markov "text" of 40 symbols, block size 32,
Adam. Two runs of the same model and data:
  (a) lr 3e-4: ordinary, healthy training (the control: no warnings/errors expected);
  (b) lr 1.0 (far too high for Adam on a Transformer; exaggerated so that the symptom shows
      within 30 CPU steps): the loss climbs from 3.9 (ln 40 = 3.7 is uniform guessing) to
      100-260 within 20 steps and the total gradient norm grows from 0.8 to 30-80; the run
      diverges (the reported symptom: a diverging/NaN loss cured by lowering the learning rate).

Expected findings:
  (a) must not: any warning or error (vanishing/exploding/dead/saturating/nonfinite/spikes)
  (b) must:     some warning/error about the divergence: gradient-spikes, nonfinite-gradient
                or exploding-gradient, with a fix that lowers the step size (lower-lr / clip)
      must not: vanishing-gradient, rnn-*, unstable-loss-pairing

Command:
  (a) gradmedic diagnose --model ../shared/field/16_tiny_gpt_learning_rate.py:build_model \
        --data ../shared/field/16_tiny_gpt_learning_rate.py:build_data \
        --loss ../shared/field/16_tiny_gpt_learning_rate.py:build_loss \
        --optimizer adam --lr 3e-4 --steps 30 --json
  (b) same with --lr 1.0
"""

import torch
from torch import nn

torch.set_num_threads(1)

VOCAB, BLOCK, D = 40, 32, 64


class TinyGPT(nn.Module):
    def __init__(self, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        self.pos = nn.Embedding(BLOCK, D)
        layer = nn.TransformerEncoderLayer(
            D, heads, 4 * D, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(D)
        self.head = nn.Linear(D, VOCAB)
        self.register_buffer(
            "causal", torch.triu(torch.full((BLOCK, BLOCK), float("-inf")), diagonal=1)
        )

    def forward(self, idx):
        t = idx.shape[1]
        h = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        h = self.blocks(h, mask=self.causal[:t, :t], is_causal=True)
        return self.head(self.ln_f(h))


class NextTokenLoss(nn.Module):
    def forward(self, logits, target):
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def build_model():
    return TinyGPT()


def build_loss():
    return NextTokenLoss()


def build_data(n_batches: int = 10, batch: int = 16):
    g = torch.Generator().manual_seed(7)
    trans = torch.softmax(torch.randn(VOCAB, VOCAB, generator=g) * 3, 1)
    batches = []
    for _ in range(n_batches):
        seq = torch.zeros(batch, BLOCK + 1, dtype=torch.long)
        seq[:, 0] = torch.randint(0, VOCAB, (batch,), generator=g)
        for t in range(BLOCK):
            seq[:, t + 1] = torch.multinomial(trans[seq[:, t]], 1, generator=g).squeeze(1)
        batches.append((seq[:, :-1], seq[:, 1:]))
    return batches


if __name__ == "__main__":
    import math

    for lr in (3e-4, 1.0):
        torch.manual_seed(0)
        m = build_model()
        opt = torch.optim.Adam(m.parameters(), lr=lr)
        lossf = build_loss()
        losses, norms = [], []
        for x, y in build_data() * 3:
            opt.zero_grad()
            loss = lossf(m(x), y)
            loss.backward()
            norms.append(math.sqrt(sum(float((p.grad**2).sum()) for p in m.parameters())))
            opt.step()
            losses.append(loss.item())
        print("lr", lr, "loss", [round(v, 2) for v in losses[::3]])
        print("      grad norm", [f"{v:.2g}" for v in norms[::3]])
