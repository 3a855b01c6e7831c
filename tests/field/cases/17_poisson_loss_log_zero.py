"""Field case 17: hand-written Poisson loss takes log(0) of a ReLU output -> NaN loss at step 0.

Source: https://github.com/deepchem/deepchem/pull/5125 (fix for deepchem issue #5099:
"PoissonLoss and CategoricalCrossEntropy - log(0) causes -inf / NaN in PyTorch path") and
https://github.com/keras-team/keras/issues/590 ("nan loss with poisson objective function" from
the first epoch; y_pred = 0 makes the log minus infinity).

Situation (own words): a count-regression MLP whose last layer is a ReLU (to keep the predicted
rate non-negative), trained with a hand-written Poisson negative log-likelihood
rate - y * log(rate). Some predicted rates are exactly 0 (ReLU), so log(rate) = -inf; for y = 0
the term is 0 * -inf = NaN. The model's forward pass is finite; the loss value is NaN at the
first batch and the gradient arriving at the model output (d/drate = 1 - y/rate = 0/0) is NaN.
(Measured: in this seed the output ReLU masks those NaN entries, so the weight gradients stay
finite, the first update moves every rate above 0 and later losses are finite; a run whose
rates hit 0 again gets NaN again.) The fix is in the loss (log(rate + eps), softplus output, or
log_input=True), not in the learning rate.

Expected findings:
  must:     nonfinite-gradient at step 0, with the first non-finite value in the loss (no
            module output non-finite), not blamed on an exploding step or on a layer's
            derivative
  must not: exploding-gradient, gradient-spikes, vanishing-gradient, saturating-activation;
            clip-grad-norm / lower-lr as the fix would be wrong

Command:
  gradmedic diagnose --model ../shared/field/17_poisson_loss_log_zero.py:build_model \
      --data ../shared/field/17_poisson_loss_log_zero.py:build_data \
      --loss ../shared/field/17_poisson_loss_log_zero.py:poisson_nll --steps 10 --json
"""

import torch
from torch import nn

torch.set_num_threads(1)


def build_model():
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1), nn.ReLU())


def poisson_nll(rate, target):
    return (rate - target * torch.log(rate)).mean()


def build_data():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(10, 1, generator=g) * 0.3
    batches = []
    for _ in range(6):
        x = torch.randn(64, 10, generator=g)
        lam = torch.exp(x @ w)
        y = torch.poisson(lam, generator=g)
        batches.append((x, y))
    return batches


if __name__ == "__main__":
    torch.manual_seed(0)
    m = build_model()
    x, y = build_data()[0]
    rate = m(x)
    print(
        "rates exactly 0:",
        int((rate == 0).sum()),
        "of",
        rate.numel(),
        "| targets 0:",
        int((y == 0).sum()),
    )
    print(
        "forward finite:", torch.isfinite(rate).all().item(), "| loss:", poisson_nll(rate, y).item()
    )
