"""Static checks: the pairing of the model's output with the loss (diagnosis/static.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic.diagnosis import output_kind, static_checks


class _Log(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


_BY_HAND = "output-logits(loss=CrossEntropyLoss)"


@pytest.mark.parametrize(
    ("tail", "loss", "severity", "fix"),
    [
        (nn.Sigmoid(), nn.BCELoss(), "warning", "fix-loss(to=bce-logits)"),
        (nn.Sigmoid(), nn.BCEWithLogitsLoss(), "warning", "fix-loss(to=bce-logits)"),
        (nn.Softmax(dim=-1), nn.CrossEntropyLoss(), "warning", "fix-loss(to=ce)"),
        # no final Sigmoid/Softmax module for fix-loss to fuse: the user returns the logits
        (nn.LogSoftmax(dim=-1), nn.CrossEntropyLoss(), "info", _BY_HAND),
        (nn.Softmax(dim=-1), nn.NLLLoss(), "warning", "fix-loss(to=ce)"),
        ([nn.Softmax(dim=-1), _Log()], nn.NLLLoss(), "warning", _BY_HAND),
        (None, nn.NLLLoss(), "warning", _BY_HAND),
    ],
)
def test_static_loss_pairings(tail, loss, severity, fix):
    tails = tail if isinstance(tail, list) else ([tail] if tail is not None else [])
    model = nn.Sequential(nn.Linear(4, 3), *tails)
    found = static_checks(model, loss)
    assert [f.slug for f in found] == ["unstable-loss-pairing"]
    assert found[0].severity == severity
    assert [str(p) for p in found[0].prescriptions] == [fix]
    assert found[0].prescriptions[0].manual is (fix == _BY_HAND)


@pytest.mark.parametrize(
    ("tail", "loss"),
    [
        (nn.LogSoftmax(dim=-1), nn.NLLLoss()),
        (None, nn.CrossEntropyLoss()),
        (None, nn.BCEWithLogitsLoss()),
        (nn.Sigmoid(), nn.MSELoss()),
    ],
)
def test_static_healthy_pairings(tail, loss):
    model = nn.Sequential(nn.Linear(4, 3), *([tail] if tail is not None else []))
    assert static_checks(model, loss) == []


def test_static_check_reads_a_functional_softmax_from_the_output():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.softmax(self.fc(x), dim=-1)

    found = static_checks(Net(), nn.CrossEntropyLoss(), sample=torch.randn(8, 4))
    assert [f.severity for f in found] == ["warning"]
    assert static_checks(Net(), nn.CrossEntropyLoss()) == []  # no sample: cannot tell


def test_output_kind_by_value_and_by_last_module():
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    assert output_kind(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=-1)), x) == "probs-softmax"
    assert output_kind(nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=-1)), x) == "logprobs"
    assert output_kind(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=-1), _Log())) == (
        "log-of-probs"
    )
    assert output_kind(nn.Sequential(nn.Linear(4, 1), nn.Sigmoid())) == "probs"
    assert output_kind(nn.Linear(4, 3)) == "unknown"  # not a Sequential, no sample
