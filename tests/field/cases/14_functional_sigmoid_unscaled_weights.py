"""Field case 14: y = sigmoid(W x) with W ~ N(0, 1): tiny gradients, "needs lr = 100".

Source: PyTorch forum "Gradient seems to small when training parameters",
https://discuss.pytorch.org/t/gradient-seems-to-small-when-training-parameters/153791 (a model
that is just torch.sigmoid(torch.matmul(W, x)) with W = nn.Parameter(torch.randn(100, 100)),
inputs from np.random.rand (in [0, 1)), targets sigmoid(W_true x), MSELoss, SGD; it only
converges for small n and the learning rate "needs to be pretty high" (100)).

Situation (own words): a single weight matrix held as a bare nn.Parameter (no nn.Linear) and a
functional torch.sigmoid in forward (no nn.Sigmoid module). With unit-variance weights and 100
inputs in [0, 1), the pre-activations have standard deviation ~sqrt(100/3) = 5.8, so about 30%
of the units sit where sigmoid' < 1% of its maximum and the mean derivative is ~0.07 instead
of 0.25; on top of that MSE averages over 100 outputs. The gradient is small because the
sigmoid is pushed into its tails by the weight scale (1/sqrt(fan_in) scaling would give
pre-activation std ~0.6).

Expected findings:
  must:     saturating-activation (any severity) or poor-init pointing at the weight /
            pre-activation scale of the sigmoid; in any case the sigmoid must be noticed
            although it is a functional call
  must not: vanishing-gradient (one layer), exploding-gradient, nonfinite-gradient, dead-relu,
            rnn-*; a crash or "no weighted layer found" silence would be unhelpful

Command:
  gradmedic diagnose --model ../shared/field/14_functional_sigmoid_unscaled_weights.py:build_model \
      --data ../shared/field/14_functional_sigmoid_unscaled_weights.py:build_data --loss mse --steps 20 --json
"""

import torch
from torch import nn

torch.set_num_threads(1)

N = 100


class SigmoidMatrix(nn.Module):
    def __init__(self, n: int = N):
        super().__init__()
        self.W = nn.Parameter(torch.randn(n, n))

    def forward(self, x):  # x: (batch, n)
        return torch.sigmoid(x @ self.W.T)


def build_model():
    return SigmoidMatrix()


def build_data():
    g = torch.Generator().manual_seed(123)  # not 0: gradmedic seeds the model with 0
    w_true = torch.randn(N, N, generator=g)
    batches = []
    for _ in range(10):
        x = torch.rand(50, N, generator=g)
        batches.append((x, torch.sigmoid(x @ w_true.T)))
    return batches


if __name__ == "__main__":
    torch.manual_seed(0)
    m = build_model()
    x, y = build_data()[0]
    z = x @ m.W.T
    d = torch.sigmoid(z) * (1 - torch.sigmoid(z))
    print(
        "pre-activation std",
        z.std().item(),
        "mean sigmoid'",
        d.mean().item(),
        "share with sigmoid' < 0.0025:",
        (d < 0.0025).float().mean().item(),
    )
