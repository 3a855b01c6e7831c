"""Field case 08: vanilla RNN on a long temporal-order task: fails where an LSTM works.

Source: NYU Deep Learning lab notes, https://github.com/Atcold/NYU-DLSP20/pull/109
(docs/en/week06/06-3.md, "Sequence Classification": with longer sequences the vanilla RNN fails
while the LSTM keeps working).

Situation (own words): sequences of 100 one-hot symbols (8-symbol alphabet); two marker symbols
(X or Y) are placed in the first 30 steps and the class (XX, XY, YX, YY) is their order. A
single-layer tanh nn.RNN (hidden 64, PyTorch default init) reads the sequence and a linear head
classifies from the last hidden state; the loss sees only the last step. The default recurrent
weights have spectral radius ~0.6 < 1, so the gradient reaching the marker positions is
multiplied by ~0.6 per step over 70+ steps: it vanishes (~1e-15) and the RNN cannot learn the
task (loss stays at ln 4).

Expected findings:
  must:     rnn-long-range-vanishing (warning or error; vanilla RNN, profile ratio << 1e-6)
  must not: rnn-exploding, nonfinite-gradient, exploding-gradient, dead-relu,
            unstable-loss-pairing, gradient-spikes

Command:
  gradmedic diagnose --model ../shared/field/08_rnn_temporal_order_long.py:build_model \
      --data ../shared/field/08_rnn_temporal_order_long.py:build_data --loss ce --steps 20 --json
  gradmedic treat (same) --steps 30 --json
"""

import torch
from torch import nn

torch.set_num_threads(1)

T = 100
SYMBOLS = 8  # 0 = X, 1 = Y, 2..7 = distractors


class RNNClassifier(nn.Module):
    def __init__(self, hidden: int = 64, classes: int = 4):
        super().__init__()
        self.rnn = nn.RNN(SYMBOLS, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.head(h[:, -1])


def build_model():
    return RNNClassifier()


def build_data(n_batches: int = 8, batch: int = 32):
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(n_batches):
        seq = torch.randint(2, SYMBOLS, (batch, T), generator=g)
        first = torch.randint(0, 2, (batch,), generator=g)
        second = torch.randint(0, 2, (batch,), generator=g)
        p1 = torch.randint(5, 15, (batch,), generator=g)
        p2 = torch.randint(20, 30, (batch,), generator=g)
        idx = torch.arange(batch)
        seq[idx, p1] = first
        seq[idx, p2] = second
        x = nn.functional.one_hot(seq, SYMBOLS).float()
        y = first * 2 + second
        batches.append((x, y))
    return batches


if __name__ == "__main__":
    torch.manual_seed(0)
    m = build_model()
    x, y = build_data()[0]
    x = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(m(x), y)
    loss.backward()
    gt = x.grad.norm(dim=(0, 2))
    print(
        "||dL/dx_t|| at t=0, 10, 30, 90, 99:", [f"{gt[t].item():.2e}" for t in (0, 10, 30, 90, 99)]
    )
    w = m.rnn.weight_hh_l0.detach()
    print("spectral radius W_hh:", torch.linalg.eigvals(w).abs().max().item())
