"""Experiment 7, inception-aux (article 2.2; Szegedy et al. 2015, Sec. 5).

GoogLeNet's auxiliary classifiers sit on intermediate Inception modules, "to increase the
gradient signal that gets propagated back"; the objective is ``L_main + 0.3 sum L_aux`` and the
heads are dropped at inference. Inception modules themselves run 1x1, 3x3, 5x5 convolutions and
pooling in parallel, so the path from the loss to the stem is shorter than in a plain stack of
the same number of convolutions.

Three models on digits as 8x8 images, PyTorch's default init: a plain 12-layer CNN, an
Inception-style CNN (4 modules), and the same with auxiliary heads after modules 1-3 (weight
0.3). The Monitor records the gradient norm of the first convolution (the stem) at every
recorded step; the loss curves are those of the main head.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from gradmedic.lab.common import flat_measures, linear_names, loss_panel, monitored_run
from gradmedic.lab.registry import (
    ExperimentResult,
    LabContext,
    experiment,
    fmt,
    new_figure,
)
from gradmedic.zoo import build_model, load_data

AUX_GAIN = 2.0
PLAIN_FACTOR = 0.1


def judge_inception(stem_plain: float, stem_inception: float, stem_aux: float) -> tuple[bool, str]:
    """Pass when, at init, auxiliary heads raise the stem's gradient norm by >= 2x and the
    plain deep CNN's first-layer gradient is <= 0.1x the Inception net's."""
    aux_gain = stem_aux / stem_inception if stem_inception > 0 else float("nan")
    plain_rel = stem_plain / stem_inception if stem_inception > 0 else float("nan")
    ok = aux_gain >= AUX_GAIN and plain_rel <= PLAIN_FACTOR
    crit = (
        f"at init, auxiliary heads (weight 0.3) raise the stem's gradient norm >= {AUX_GAIN:g}x "
        f"(measured {fmt(aux_gain)}x) and the plain deep CNN's first-layer gradient norm is "
        f"<= {PLAIN_FACTOR:g}x the Inception net's (measured {fmt(plain_rel)}x)"
    )
    return bool(ok), crit


@experiment(
    "inception-aux",
    title="Plain deep CNN vs Inception CNN with and without auxiliary classifiers",
    claim=(
        "Inception modules (parallel multi-scale convolutions) and auxiliary classifiers "
        "mid-network help the gradient signal reach the early layers."
    ),
    source="article 2.2; Szegedy et al. 2015",
)
def run_inception(ctx: LabContext) -> ExperimentResult:
    """plain CNN, Inception, Inception + aux, 100 (quick) / 400 (full) Adam steps.

    Run time with one torch thread on the 2-core lab machine (shared, load ~1.5-2): quick 8 s,
    full 45 s (estimated by timing a tenth of the steps).
    """
    steps = ctx.pick(3, 100, 400)
    blocks = ctx.pick(2, 4, 4)
    depth = ctx.pick(4, 12, 12)
    every = ctx.pick(1, 10, 10)
    data = load_data("digits:image=true", n=ctx.pick(256, None, None))
    specs = {
        "plain-cnn": f"plaincnn:depth={depth}",
        "inception": f"inception:blocks={blocks}",
        "inception+aux": f"inception:blocks={blocks},aux=true,aux_weight=0.3",
    }
    rows: list[dict[str, Any]] = []
    stems: dict[str, Any] = {}
    curves: dict[str, list[float]] = {}
    for label, spec in specs.items():
        ctx.progress(f"inception-aux: {label}, {steps} Adam steps")
        model = build_model(spec, data.info, seed=ctx.seed)
        stem = linear_names(model, (nn.Conv2d,))[0]
        run = monitored_run(
            model,
            data,
            steps=steps,
            lr=1e-3,
            optimizer="adam",
            seed=ctx.seed,
            record=every,
            monitor={"signal": False, "nonfinite": False},
        )
        g = run.trace.quantity("grad_norm")
        g = g[g["module"] == stem].set_index("step")["value"]
        stems[label] = g
        curves[label] = run.losses
        rows.append(
            {
                "model": label,
                "spec": spec,
                "stem_module": stem,
                "stem_grad_norm_init": float(g.iloc[0]),
                "stem_grad_norm_mean": float(g.mean()),
                "initial_loss": run.losses[0],
                "final_main_loss": run.final_loss,
            }
        )
    by = {r["model"]: r for r in rows}
    passed, crit = judge_inception(
        by["plain-cnn"]["stem_grad_norm_init"],
        by["inception"]["stem_grad_norm_init"],
        by["inception+aux"]["stem_grad_norm_init"],
    )
    fig, (a1, a2) = new_figure(1, 2, figsize=(11, 3.8))
    for label in specs:
        g = stems[label]
        a1.semilogy(g.index, np.maximum(g.to_numpy(dtype=float), 1e-30), "o-", ms=2, label=label)
    a1.set_title("gradient norm of the first convolution")
    a1.set_xlabel("step")
    a1.legend(fontsize=7)
    loss_panel(a2, curves, "main-head training loss (10-step mean)", baseline=None)
    measured: dict[str, Any] = flat_measures(
        rows,
        "model",
        {"stem_grad_init": "stem_grad_norm_init", "final_main_loss": "final_main_loss"},
    )
    measured["aux_gain_at_init"] = (
        by["inception+aux"]["stem_grad_norm_init"] / by["inception"]["stem_grad_norm_init"]
    )
    note = (
        f"digits as 1x8x8 images; PyTorch default init; Adam lr 1e-3, batch 64, {steps} steps. "
        f"Plain CNN: {depth} conv3x3-ReLU layers; Inception: stem + {blocks} modules (1x1, "
        "1x1-3x3, 1x1-5x5, pool-1x1); aux heads after modules 1.."
        f"{blocks - 1}, loss weight 0.3 (GoogLeNet). The loss curves compare main heads only; "
        "Szegedy et al. 2016 (Inception-v3) found side heads do not speed early convergence, "
        "so no criterion is set on them."
    )
    return ctx.finish(passed, crit, measured=measured, fig=fig, table=rows, note=note)
