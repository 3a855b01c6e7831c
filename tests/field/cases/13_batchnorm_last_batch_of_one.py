"""Field case 13: BatchNorm1d model, data whose last batch holds a single sample.

Source: https://github.com/karpathy/makemore/issues/22 ("Batchnorm with single batch fails": in
training mode a batch of one sample has no variance; the reporter asks how to handle it) and
https://github.com/pytorch/pytorch/issues/4534 (nn.BatchNorm1d raises "Expected more than 1
value per channel when training" when the last batch of an epoch has size 1).

Situation (own words): an MLP with BatchNorm1d after each hidden Linear; the user's data factory
returns the data set of 129 samples in batches of 64, so every third batch has exactly 1 sample
(64, 64, 1). PyTorch refuses that batch in training mode with a ValueError. This is not a
gradient pathology but a user error that a diagnostic tool meets on real data: the expected
behaviour is a one-line, actionable error (or skipping/flagging the size-1 batch), not a
Python traceback.

Expected:
  no traceback; an error line naming the size-1 batch / BatchNorm (exit status 2), or a
  diagnosis that still runs (e.g. skipping the batch) and reports a healthy model
  (no vanishing/exploding/dead/saturation findings)

Command:
  gradmedic diagnose --model ../shared/field/13_batchnorm_last_batch_of_one.py:build_model \
      --data ../shared/field/13_batchnorm_last_batch_of_one.py:build_data --loss ce --steps 6 --json
"""

import torch
from torch import nn

torch.set_num_threads(1)


def build_model():
    return nn.Sequential(
        nn.Linear(20, 64),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Linear(64, 4),
    )


def build_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(129, 20, generator=g)
    y = (x[:, 0] > 0).long() * 2 + (x[:, 1] > 0).long()
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, 129, 64)]  # sizes 64, 64, 1
