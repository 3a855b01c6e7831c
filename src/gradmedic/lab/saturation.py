"""Experiment **saturation-over-training** (article 1.2; Glorot & Bengio 2010, Sec. 3.1, Fig. 2).

A 4-hidden-layer sigmoid MLP (width 256, init U[-1/sqrt(n), 1/sqrt(n)], zero biases, SGD batch
10): "very quickly at the beginning, all the sigmoid activation values of the last hidden layer
are pushed to their lower saturation value of 0" while the lower layers stay above 0.5; tanh
(symmetric around 0) does not do this. The verdict comes from :func:`judge_saturation`.

Example::

    >>> judge_saturation(0.12, 0.50, 0.01, 0.0)[0]
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from gradmedic.lab.common import (
    loss_panel,
    monitored_run,
)
from gradmedic.lab.registry import (
    ExperimentResult,
    LabContext,
    experiment,
    fmt,
    new_figure,
)
from gradmedic.zoo import build_model, load_data

SAT_TOP_MAX = 0.2
SAT_LOWER_MIN = 0.45
TANH_MEAN_MAX = 0.1
TANH_SAT_MAX = 0.05


def judge_saturation(
    sig_top_final: float,
    sig_lower_final_min: float,
    tanh_top_abs_mean: float,
    tanh_top_saturated: float,
) -> tuple[bool, str]:
    """Pass when the sigmoid net's top hidden layer's mean activation ends below 0.2 (from
    ~0.5) while every lower layer stays above 0.45, and the tanh net's top layer neither
    drifts (|mean| < 0.1) nor saturates (saturated fraction < 0.05)."""
    ok = (
        sig_top_final < SAT_TOP_MAX
        and sig_lower_final_min > SAT_LOWER_MIN
        and tanh_top_abs_mean < TANH_MEAN_MAX
        and tanh_top_saturated < TANH_SAT_MAX
    )
    crit = (
        f"sigmoid: top hidden layer mean activation < {SAT_TOP_MAX} at the end (measured "
        f"{fmt(sig_top_final)}) while every lower hidden layer stays > {SAT_LOWER_MIN} "
        f"(lowest {fmt(sig_lower_final_min)}); tanh: top layer |mean| < {TANH_MEAN_MAX} "
        f"(measured {fmt(tanh_top_abs_mean)}) and saturated fraction < {TANH_SAT_MAX} "
        f"(measured {fmt(tanh_top_saturated)})"
    )
    return bool(ok), crit


@experiment(
    "saturation-over-training",
    title="Sigmoid top-layer saturation during training (Glorot & Bengio 2010, Fig. 2)",
    claim=(
        "In a deep sigmoid net the last hidden layer is quickly pushed to its lower saturation "
        "value 0 while lower layers stay above 0.5; tanh does not saturate this way."
    ),
    source="article 1.2; Glorot & Bengio 2010, Sec. 3.1, Fig. 2",
)
def run_saturation(ctx: LabContext) -> ExperimentResult:
    """two 4-hidden-layer MLPs, 1000 (quick) / 5000 (full) SGD steps of batch 10.

    Run time with one torch thread on the 2-core lab machine (shared, load ~1.5-2): quick 4 s,
    full 25 s (estimated by timing a tenth of the steps).
    """
    steps = ctx.pick(30, 1000, 5000)
    every = ctx.pick(10, 50, 100)
    data = load_data("digits")
    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    for act in ("sigmoid", "tanh"):
        ctx.progress(f"saturation-over-training: {act}, {steps} SGD steps, batch 10")
        model = build_model(f"mlp:depth=5,width=256,act={act}", data.info, seed=ctx.seed)
        with torch.no_grad():  # Glorot & Bengio: U[-1/sqrt(n), 1/sqrt(n)] weights, zero biases
            for m in model.modules():
                if isinstance(m, nn.Linear):
                    m.bias.zero_()
        acts = [n for n, m in model.named_modules() if isinstance(m, (nn.Sigmoid, nn.Tanh))]
        run = monitored_run(
            model,
            data,
            steps=steps,
            lr=0.1,
            batch_size=10,
            seed=ctx.seed,
            record=every,
            monitor={"signal": False, "weights": False, "nonfinite": False},
        )
        mean = run.trace.pivot("act_mean")[acts]
        sat = run.trace.pivot("saturated_frac")[acts]
        curves[act] = (mean, sat, run.losses)
        for step in mean.index:
            for k, name in enumerate(acts, start=1):
                rows.append(
                    {
                        "activation": act,
                        "step": int(step),
                        "layer": k,
                        "act_mean": float(mean.loc[step, name]),
                        "saturated_frac": float(sat.loc[step, name]),
                    }
                )
    s_mean, s_sat, s_loss = curves["sigmoid"]
    t_mean, t_sat, t_loss = curves["tanh"]
    last = s_mean.index[-1]
    sig_top = float(s_mean.iloc[-1, -1])
    sig_lower = float(s_mean.iloc[-1, :-1].min())
    tanh_top = abs(float(t_mean.iloc[-1, -1]))
    tanh_sat = float(t_sat.iloc[-1, -1])
    passed, crit = judge_saturation(sig_top, sig_lower, tanh_top, tanh_sat)
    fig, axes = new_figure(1, 3, figsize=(13, 3.8))
    for k, col in enumerate(s_mean.columns, start=1):
        axes[0].plot(s_mean.index, s_mean[col], label=f"layer {k}")
        axes[1].plot(t_mean.index, t_mean[col], label=f"layer {k}")
    axes[0].set_title("sigmoid: mean activation per hidden layer")
    axes[1].set_title("tanh: mean activation per hidden layer")
    for ax in axes[:2]:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    loss_panel(
        axes[2],
        {"sigmoid": s_loss, "tanh": t_loss},
        "training loss (20-step mean); dotted: ln 10",
        k=20,
    )
    measured = {
        "sigmoid_top_mean_init": float(s_mean.iloc[0, -1]),
        "sigmoid_top_mean_final": sig_top,
        "sigmoid_lower_mean_final_min": sig_lower,
        "sigmoid_top_saturated_frac_final": float(s_sat.iloc[-1, -1]),
        "sigmoid_final_loss": float(np.mean(s_loss[-max(1, steps // 10) :])),
        "tanh_top_abs_mean_final": tanh_top,
        "tanh_top_saturated_frac_final": tanh_sat,
        "tanh_final_loss": float(np.mean(t_loss[-max(1, steps // 10) :])),
        "last_step": int(last),
    }
    note = (
        "4 hidden layers of 256, PyTorch's default weights (= Glorot's 'standard' "
        "U[-1/sqrt(n), 1/sqrt(n)]), zero biases, SGD lr 0.1, batch 10, digits. The Monitor's "
        "saturated_frac counts units with phi' < 1% of its maximum (sigmoid output < 0.0025 "
        "or > 0.9975); the sigmoid top layer's mean falls towards 0 well before its units "
        f"reach that strict threshold (saturated fraction "
        f"{fmt(measured['sigmoid_top_saturated_frac_final'])} at the end)."
    )
    return ctx.finish(passed, crit, measured=measured, fig=fig, table=rows, note=note)
