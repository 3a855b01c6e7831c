"""The held-out models of test_diagnosis_unseen.py, written the way practitioners write them
(not through gradmedic.zoo): conv/BN stacks, residual nets, a post-norm transformer, token
LSTMs, functional activations, tied weights, frozen trunks, and the data sets they train on."""

from __future__ import annotations

import itertools
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from diagnosis_util import data
from gradmedic.zoo import DataInfo, Dataset

warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")


class VGGish(nn.Module):
    """conv-BN-ReLU(inplace) x4 with max pooling, then an MLP head with dropout."""

    def __init__(self, c: int = 8, classes: int = 10, dropout: float = 0.3) -> None:
        super().__init__()

        def block(i: int, o: int) -> list[nn.Module]:
            return [
                nn.Conv2d(i, o, 3, padding=1, bias=False),
                nn.BatchNorm2d(o),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *block(1, c), *block(c, c), nn.MaxPool2d(2), *block(c, 2 * c), *block(2 * c, 2 * c)
        )
        self.classifier = nn.Sequential(
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * c * 4, 32),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(32, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: one ReLU module used twice, an in-place skip addition."""

    def __init__(self, c: int, norm: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=not norm)
        self.bn1 = nn.BatchNorm2d(c) if norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=not norm)
        self.bn2 = nn.BatchNorm2d(c) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, blocks: int, c: int = 8, norm: bool = True, he: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c) if norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.layers = nn.Sequential(*[BasicBlock(c, norm) for _ in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, 10)
        if he:  # He et al. 2015 on both convs of every block, zero biases
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.relu(self.bn(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class PostNormTransformer(nn.Module):
    """Rows of the 8x8 digit as 8 tokens; post-norm encoder (norm_first=False)."""

    def __init__(self, d: int = 16, layers: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(torch.zeros(1, 8, d))
        layer = nn.TransformerEncoderLayer(
            d, 2, dim_feedforward=32, dropout=0.0, batch_first=True, norm_first=False
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.view(-1, 8, 8)) + self.pos
        return self.head(self.encoder(h).mean(1))


class TokenLSTM(nn.Module):
    """Embedding of integer tokens -> LSTM -> last hidden state -> classes."""

    def __init__(self, vocab: int = 20, emb: int = 16, hidden: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.emb(tokens))
        return self.fc(out[:, -1])


def token_data(n: int = 256, T: int = 12, vocab: int = 20) -> Dataset:
    """Parity of the sum of the last three tokens (int64 inputs, shape (n, T))."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (n, T), generator=g)
    y = (x[:, -3:].sum(1) % 2).long()
    return Dataset(DataInfo("tokens", (T,), "classification", 2, None, "ce"), x, y)


class SeqRNN(nn.Module):
    """Per-step classifier over one-hot symbols (the copy task's layout)."""

    def __init__(self, cell: type[nn.Module], hidden: int = 32) -> None:
        super().__init__()
        self.rnn = cell(10, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(x)[0])


def mlp(
    sizes: list[int],
    act: type[nn.Module],
    *,
    dropout: float = 0.0,
    init: str | None = None,
) -> nn.Sequential:
    """Linear/act[/Dropout] stack; init None = PyTorch default (sw2 = 1/3)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(a, b)
        if init == "he":
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)
        elif init == "xavier":
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(act())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class FunctionalSigmoid(nn.Module):
    """20 Linear layers; sigmoid applied with torch.sigmoid in forward (no activation module)."""

    def __init__(self, depth: int = 20, width: int = 32) -> None:
        super().__init__()
        self.inp = nn.Linear(64, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.out = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.inp(x))
        for lin in self.hidden:
            h = torch.sigmoid(lin(h))
        return self.out(h)


class TiedAutoencoder(nn.Module):
    """Decoder reuses the encoder's weights transposed (F.linear with W.t())."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Linear(64, 32)
        self.enc2 = nn.Linear(32, 16)
        self.dec2_bias = nn.Parameter(torch.zeros(32))
        self.dec1_bias = nn.Parameter(torch.zeros(64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.enc2(torch.tanh(self.enc1(x))))
        h = torch.tanh(F.linear(h, self.enc2.weight.t(), self.dec2_bias))
        return F.linear(h, self.enc1.weight.t(), self.dec1_bias)


class LogSoftmaxNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def seeded(factory, seed: int = 0):
    torch.manual_seed(seed)
    return factory()


def frozen_sick_trunk() -> nn.Sequential:
    """A 12-layer Xavier-ReLU trunk (sw2 = 1 < 2: it would vanish by sqrt(1/2) per layer), frozen
    with requires_grad=False, under a trainable He-initialised 3-layer head."""
    trunk = mlp([64] + [32] * 12, nn.ReLU, init="xavier")
    trunk = nn.Sequential(*trunk, nn.ReLU())
    for p in trunk.parameters():
        p.requires_grad_(False)
    return nn.Sequential(trunk, mlp([32, 32, 32, 10], nn.ReLU, init="he"))


def big_targets() -> Dataset:
    """Regression on prices: y = 1000 x.w/8 + 5000, so dL/dy ~ 1e4 at init."""
    d = data("digits")
    w = torch.randn(64, 1, generator=torch.Generator().manual_seed(0))
    y = 1000 * (d.x @ w) / 8 + 5000
    return Dataset(DataInfo("prices", (64,), "regression", 1, None, "mse"), d.x, y)


def autoencoding() -> Dataset:
    d = data("digits")
    return Dataset(DataInfo("ae", (64,), "regression", 64, None, "mse"), d.x, d.x)


class CustomHardswish(nn.Module):
    """A user's own activation module: gradmedic has no derivative model for it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.hardswish(x)


def blank_border_images(n: int = 64) -> Dataset:
    """8x8 images whose content is the central 2x2 patch; everything else is 0 in every sample."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, 8, 8)
    x[:, :, 3:5, 3:5] = torch.randn(n, 1, 2, 2, generator=g)
    y = (x[:, 0, 3, 3] > 0).long()
    return Dataset(DataInfo("blank-border", (1, 8, 8), "classification", 2, None, "ce"), x, y)


def small_cnn(bias: float | None) -> nn.Sequential:
    layers = [
        nn.Conv2d(1, 8, 3, padding=1, bias=bias is not None),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=bias is not None),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 64, 2),
    ]
    if bias is not None:
        for m in layers:
            if isinstance(m, nn.Conv2d):
                nn.init.constant_(m.bias, bias)
    return nn.Sequential(*layers)
