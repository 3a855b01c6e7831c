"""Models and losses that produce a NaN/Inf by a known mechanism, written the way users write
them (not through gradmedic.zoo), for tests/diagnosis/test_nonfinite_unseen.py."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gradmedic.zoo import DataInfo, Dataset


def std1_stack(kind: str, depth: int) -> nn.Sequential:
    """``depth`` layers initialised with N(0, 1) weights and zero biases (an init that ignores
    the fan-in): ``conv`` is 3x3 Conv2d(64, 64) (sigma_w^2 = 576, x24 per layer), ``relu`` is
    Linear(256, 256) + ReLU (sigma_w^2 = 256, sqrt(256 / 2) = x11.3 per layer); a Linear head."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        if kind == "conv":
            layers.append(nn.Conv2d(64, 64, 3, padding=1))
        else:
            layers += [nn.Linear(256, 256), nn.ReLU()]
    head = [nn.Flatten(), nn.Linear(64 * 4 * 4, 10)] if kind == "conv" else [nn.Linear(256, 10)]
    net = nn.Sequential(*layers, *head)
    for m in layers:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 1.0)
            nn.init.zeros_(m.bias)
    return net


def std1_data(kind: str) -> Dataset:
    """Standardised inputs for :func:`std1_stack`: (64, 4, 4) feature maps or 256 features."""
    g = torch.Generator().manual_seed(0)
    shape = (64, 4, 4) if kind == "conv" else (256,)
    x = torch.randn(32, *shape, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    return Dataset(DataInfo(f"std1-{kind}", shape, "classification", 10, None, "ce"), x, y)


class SqrtBlock(nn.Module):
    """A user block that computes between its children: sqrt of a Linear output (NaN for every
    negative entry at the first forward pass, with finite weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.sqrt(self.lin(x)))


def unit_direction_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the unit-norm output direction: divides by ||out||, 0/0 for a zero row."""
    return F.cross_entropy(out / out.norm(dim=1, keepdim=True), y)
