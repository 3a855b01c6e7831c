"""Field case 09: AMP fp16 with GradScaler: the first steps overflow and are skipped (normal).

Source: https://github.com/traveller59/second.pytorch/issues/253 ("Gradient overflow. Skipping
step, loss scaler 0 reducing loss scale to 256.0" during fp16 mixed-precision training: is it
normal?). See also the GradScaler explanation in https://github.com/espnet/espnet/issues/3237
(the scaler starts at 2**16 and halves its scale whenever a scaled gradient overflows; occasional
skipped steps are expected, persistent NaN is not).

Situation (own words): a healthy 4-layer ReLU MLP (He init) regresses an unscaled target of
magnitude ~50 under torch.autocast(float16) with a torch.amp.GradScaler (init scale 2**16). The
scaled output gradient (2 * error / batch * 65536) exceeds the fp16 maximum 65504 at the first
steps, so the backward pass produces inf, the scaler skips those optimizer steps and halves its
scale until the scaled gradients fit; afterwards training proceeds normally. Nothing is wrong
with the model: the infs are the scaler's overflow probe.
Run on CPU (torch.autocast('cpu', dtype=torch.float16) and GradScaler('cpu')) through the
Python API, because the CLI has no AMP option: Monitor(model, optimizer=opt, scaler=scaler).

Expected findings:
  must not: nonfinite-gradient at error severity (at most a note that GradScaler skipped k
            steps), exploding-gradient, vanishing-gradient, dead-relu, saturating-activation,
            gradient-spikes caused by the scaled (not unscaled) gradients
  expected: no warnings or errors (a healthy run)

Command:
  python ../shared/field/09_amp_gradscaler_skipped_steps.py   (prints the findings as JSON)
"""

import json
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

torch.set_num_threads(1)


def build_model():
    m = nn.Sequential(
        nn.Linear(16, 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 1),
    )
    for mod in m:
        if isinstance(mod, nn.Linear):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            nn.init.zeros_(mod.bias)
    return m


def build_data():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 1, generator=g)
    batches = []
    for _ in range(10):
        x = torch.randn(32, 16, generator=g)
        y = 50.0 + 10.0 * (x @ w) / 4  # unscaled target around 50
        batches.append((x, y))
    return batches


def run(steps: int = 30, every: int = 1):
    import gradmedic

    torch.manual_seed(0)
    model = build_model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    data = build_data()
    trace = Path(tempfile.mkdtemp()) / "trace.sqlite"
    losses, scales = [], []
    with gradmedic.Monitor(model, optimizer=opt, scaler=scaler, trace=trace, every=every) as mon:
        for step in range(steps):
            x, y = data[step % len(data)]
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = nn.functional.mse_loss(model(x), y)
            scaler.scale(loss).backward()
            mon.observe(loss)
            scales.append(scaler.get_scale())
            scaler.step(opt)
            scaler.update()
            losses.append(loss.item())
    result = gradmedic.diagnose(trace)
    return result, losses, scales, trace


if __name__ == "__main__":
    result, losses, scales, trace = run()
    out = result.to_dict()
    out["losses"] = losses
    out["scales"] = scales
    out["trace"] = str(trace)
    json.dump(out, sys.stdout, indent=1, default=str)
    print()
