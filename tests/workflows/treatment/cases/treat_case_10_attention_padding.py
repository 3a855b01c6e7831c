"""Field case 10: self-attention with a fully padded sequence in the batch -> NaN loss at once.

Source: https://github.com/pytorch/pytorch/issues/40932 ("MultiheadAttention set(-inf) cause
'Nan' in loss computing": when one example in a batch is entirely <pad>, key_padding_mask is all
True for it, every attention score is -inf, softmax gives NaN, and the loss and the parameters
become NaN); related https://github.com/pytorch/pytorch/issues/41508.

Situation (own words): a small text classifier: token embedding (pad id 0) -> one hand-written
Transformer encoder block built on nn.MultiheadAttention (called with key_padding_mask and the
default need_weights=True, as in the report) with a residual connection, LayerNorm and a
feed-forward sublayer -> masked mean pooling -> linear head; cross-entropy loss. Each batch holds
one empty document (all padding). For that row every key is masked, softmax over all -inf is
NaN, the attention module's output holds NaN from the first forward pass (its inputs and weights
are finite), and the NaN spreads into the loss and then into every gradient. Nothing explodes;
lowering the learning rate or clipping cannot help (the fix: drop empty rows or let at least one
key through).

Expected findings:
  must:     nonfinite-gradient at step 0, first forward module = the attention module
            ('block.attn'), born in that module (no "earlier update" story)
  must not: exploding-gradient, gradient-spikes, vanishing-gradient; prescriptions
            clip-grad-norm / lower-lr as the fix would be wrong

Command:
  gradmedic diagnose --model ../shared/field/10_attention_all_padding_nan.py:build_model \
      --data ../shared/field/10_attention_all_padding_nan.py:build_data --loss ce --steps 10 --json
  (crashed in the HTML report; rerun with --no-report for the findings)
"""

import torch
from torch import nn

torch.set_num_threads(1)

VOCAB, PAD, D = 30, 0, 32


class EncoderBlock(nn.Module):
    def __init__(self, d: int = D, heads: int = 4):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        self.norm2 = nn.LayerNorm(d)

    def forward(self, h, pad_mask):
        a, _weights = self.attn(h, h, h, key_padding_mask=pad_mask)
        h = self.norm1(h + a)
        return self.norm2(h + self.ff(h))


class TextClassifier(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D, padding_idx=PAD)
        self.block = EncoderBlock()
        self.head = nn.Linear(D, classes)

    def forward(self, tokens):
        pad = tokens == PAD
        h = self.block(self.embed(tokens), pad)
        keep = (~pad).unsqueeze(-1).float()
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.head(pooled)


def build_model():
    return TextClassifier()


def build_data(n_batches: int = 6, batch: int = 16, length: int = 12):
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(n_batches):
        tokens = torch.randint(1, VOCAB, (batch, length), generator=g)
        lengths = torch.randint(3, length + 1, (batch,), generator=g)
        lengths[0] = 0  # one empty document per batch
        pos = torch.arange(length).unsqueeze(0)
        tokens[pos >= lengths.unsqueeze(1)] = PAD
        y = tokens[:, :3].sum(1) % 3
        batches.append((tokens, y))
    return batches


if __name__ == "__main__":
    torch.manual_seed(0)
    m = build_model()
    x, y = build_data()[0]
    pad = x == PAD
    a, _ = m.block.attn(m.embed(x), m.embed(x), m.embed(x), key_padding_mask=pad)
    print(
        "attention output rows with NaN:",
        torch.isnan(a).any(-1).any(-1).nonzero().flatten().tolist(),
    )
    loss = nn.functional.cross_entropy(m(x), y)
    print("loss:", loss.item())
