"""Field case 11: deep linear stack initialised with N(0, 1) weights: activations overflow to NaN.

Source: PyTorch tutorial notes "梯度消失与爆炸 / Xavier方法与Kaiming方法",
https://blog.csdn.net/qq_24739717/article/details/102896678 (an MLP of many nn.Linear(256, 256,
bias=False) layers initialised with nn.init.normal_(std=1); printing each layer's output std
shows it multiplying by ~sqrt(256) = 16 per layer until "output is nan" around layer 30).

Situation (own words): 40 bias-free Linear(256, 256) layers, no activation, weights drawn from
N(0, 1) (a hand-written init that ignores the fan-in), a linear regression head trained with MSE.
Each layer multiplies the activation scale by sqrt(fan_in * Var(W)) = 16, so after ~32 layers
the float32 range (3.4e38) is exceeded: the forward pass produces inf and then NaN (inf - inf)
at the very first step, before any update. The cause is the weight scale (sigma_w^2 = 256,
critical value 1 for a linear net), not an operation that is undefined.

Expected findings:
  must:     nonfinite-gradient at step 0 (forward, first non-finite output in one of the
            Linear layers around index 31-33), AND the cause named as the initial weight scale:
            poor-init and/or exploding-gradient, or the nonfinite finding's text pointing at the
            init / forward growth
  must not: vanishing-gradient, dead-relu, saturating-activation, rnn-*; a cause text that
            blames "a log or sqrt of a negative, a division by zero" would be wrong

Command:
  gradmedic diagnose --model ../shared/field/11_linear_stack_std1_init_overflow.py:build_model \
      --data ../shared/field/11_linear_stack_std1_init_overflow.py:build_data --loss mse --steps 5 --json
  (crashed in the HTML report; rerun with --no-report for the findings)
  control: same with --model ...:build_model_finite (depth 16, finite forward)
"""

import torch
from torch import nn

torch.set_num_threads(1)


class LinearStack(nn.Module):
    def __init__(self, width: int = 256, depth: int = 40):
        super().__init__()
        self.linears = nn.ModuleList([nn.Linear(width, width, bias=False) for _ in range(depth)])
        self.head = nn.Linear(width, 1)
        for lin in self.linears:
            nn.init.normal_(lin.weight, mean=0.0, std=1.0)

    def forward(self, x):
        for lin in self.linears:
            x = lin(x)
        return self.head(x)


def build_model():
    return LinearStack()


def build_model_finite():
    """Control: the same init at depth 16 stays finite (16^16 ~ 2e19), so the gradient ratio
    can be measured; expected there: exploding-gradient (error) and poor-init."""
    return LinearStack(depth=16)


def build_data():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 256, generator=g), torch.randn(16, 1, generator=g)) for _ in range(4)]


if __name__ == "__main__":
    torch.manual_seed(0)
    m = build_model()
    x, _ = build_data()[0]
    for i, lin in enumerate(m.linears):
        x = lin(x)
        if not torch.isfinite(x).all():
            print(f"first non-finite output at linears.{i} (std before: see previous line)")
            break
        if i % 5 == 0:
            print(i, "output std", x.std().item())
