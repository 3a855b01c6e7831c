"""A loss given by name keeps its static checks: train() records the loss spec in the trace,
and diagnose(trace, model=...) resolves a named loss (or the recorded one) to the module it
names, so Softmax into CrossEntropyLoss is found however the loss was given."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gradmedic.workflows.batches import BatchSource
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig, train

PAIRING = "unstable-loss-pairing"


class Probs(nn.Module):
    """Not an nn.Sequential: the Softmax is only visible from the output's values."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 4)

    def forward(self, x):
        return torch.softmax(self.lin(x), dim=1)


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 6, generator=g)
    return BatchSource(factory=lambda: [(x, torch.randint(0, 4, (16,), generator=g))])


def _sequential():
    return nn.Sequential(nn.Linear(6, 4), nn.Softmax(dim=1))


@pytest.mark.parametrize("loss", ["ce", None, nn.CrossEntropyLoss(), F.cross_entropy])
def test_the_trace_diagnosis_keeps_the_static_check(loss):
    model = _sequential()
    run = train(model, _data(), TrainConfig(steps=2), loss=loss)
    assert run.trace.meta["loss_spec"] == ("ce" if isinstance(loss, str) or loss is None else None)
    found = diagnose(run.trace, model=model, loss=loss)
    assert PAIRING in found.slugs()


def test_a_model_that_is_not_sequential_is_read_on_a_sample():
    model = Probs()
    run = train(model, _data(), TrainConfig(steps=2), loss="ce")
    assert PAIRING not in diagnose(run.trace, model=model, loss="ce").slugs()  # no sample
    x = next(_data().batches(16, 0))[0]
    assert PAIRING in diagnose(run.trace, model=model, loss="ce", sample=x).slugs()


def test_a_named_loss_without_data_keeps_the_static_check():
    assert diagnose(model=_sequential(), loss="ce").slugs() == [PAIRING]
    assert diagnose(model=_sequential(), loss="mse").slugs() == []


def test_treat_with_a_named_loss_prescribes_fix_loss():
    from gradmedic.workflows.treatment import treat

    res = treat(Probs(), _data(), loss="ce", config=TrainConfig(steps=3))
    assert PAIRING in res.diagnosis.slugs()  # read on treat's first batch


def test_a_loss_spec_that_cannot_be_built_skips_the_check_instead_of_failing():
    model = _sequential()
    run = train(model, _data(), TrainConfig(steps=1), loss="ce")
    run.trace.meta["loss_spec"] = "no-such-loss"
    assert PAIRING not in diagnose(run.trace, model=model).slugs()
