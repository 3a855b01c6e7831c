"""The three reference workloads of issue 16, built the same way by every benchmark script.

- ``mlp``: 20 x (Linear 512 -> 512 + Tanh) and a Linear 512 -> 10 head, batch 256;
- ``cnn``: 3 conv layers of 64, 96 and 96 channels (3x3, ReLU, 2x2 max-pool after each) and
  2 fully connected layers (1536 -> 256 -> 10), 32x32 RGB input, batch 64;
- ``lstm``: one LSTM of hidden size 256 over T = 100 steps of 32 features, batch 32, and a
  Linear head on the last hidden state.

Each builder returns ``(model, x, y)``; the loss is cross-entropy over 10 classes and the
optimizer plain SGD. Seeded: the same call builds the same tensors.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(20):
        layers += [nn.Linear(512, 512), nn.Tanh()]
    layers.append(nn.Linear(512, 10))
    return nn.Sequential(*layers), torch.randn(256, 512), torch.randint(0, 10, (256,))


def cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 96, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(96, 96, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(96 * 4 * 4, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )
    return model, torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))


class LSTMClassifier(nn.Module):
    """LSTM(32 -> 256) over the sequence, Linear(256 -> 10) on the last hidden state."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(32, 256, batch_first=True)
        self.head = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def lstm() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return LSTMClassifier(), torch.randn(32, 100, 32), torch.randint(0, 10, (32,))


WORKLOADS = {"mlp": mlp, "cnn": cnn, "lstm": lstm}
