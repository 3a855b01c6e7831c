"""Experiment **init** (Glorot & Bengio 2010; He et al. 2015; Schoenholz et al. 2017).

A 30-layer ReLU MLP with PyTorch's default, Xavier, He, orthogonal and LSUV init, and a
30-layer tanh MLP at the ordered, critical and chaotic ``sw2`` (``sb2 = 0.05``): the measured
per-layer squared gain of the backward signal against ``chi1 = sw2 E[phi'(sqrt(q*) z)^2]``
computed from the actual weights, and the training loss. The verdict comes from
:func:`judge_init`.

Example::

    >>> final = dict(default=2.3, xavier=2.3, kaiming=0.3, orthogonal=0.3, lsuv=0.3)
    >>> tanh = dict(ordered=0.4, critical=0.1, chaotic=0.2)
    >>> judge_init({"kaiming": 0.05}, final, tanh)[0]
    True
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from gradmedic import theory
from gradmedic.lab.common import (
    flat_measures,
    loss_panel,
    per_layer_chi,
    profile_panel,
    profiled_run,
)
from gradmedic.lab.registry import (
    ExperimentResult,
    LabContext,
    experiment,
    fmt,
    new_figure,
)
from gradmedic.zoo import load_data

CHI_RTOL = 0.15
TRAINS_BELOW = 1.0
STALLS_ABOVE = 2.0
RELU_INITS = ("default", "xavier", "kaiming", "orthogonal", "lsuv")
TANH_SB2 = 0.05


def _lsuv(model: nn.Module, x: torch.Tensor) -> None:
    from gradmedic.remedies import lsuv_

    lsuv_(model, x, tol=0.1, max_iter=10)


def _sw2_sb2(tr: Any, names: list[str]) -> tuple[float, float]:
    """Median sw2 = fan_in Var(W) and sb2 = Var(b) of the hidden layers, from the trace."""
    mods = tr.modules.set_index("name")
    info = [json.loads(mods.loc[n, "info"]) for n in names[1:-1]]
    return (
        float(np.median([i["sw2"] for i in info])),
        float(np.median([i.get("sb2", 0.0) for i in info])),
    )


def judge_init(
    chi_rel_err: dict[str, float],
    final_loss: dict[str, float],
    tanh_final: dict[str, float],
) -> tuple[bool, str]:
    """Pass when every measured per-layer squared gain is within 15% of chi1, He / orthogonal
    / LSUV train (final loss < 1.0) while default and Xavier stall (> 2.0), and tanh at the
    critical sw2 ends lower than at the ordered and the chaotic sw2."""
    worst = max(chi_rel_err.values())
    good = all(final_loss[k] < TRAINS_BELOW for k in ("kaiming", "orthogonal", "lsuv"))
    bad = all(final_loss[k] > STALLS_ABOVE for k in ("default", "xavier"))
    crit_best = tanh_final["critical"] < min(tanh_final["ordered"], tanh_final["chaotic"])
    ok = worst <= CHI_RTOL and good and bad and crit_best
    crit = (
        f"measured per-layer squared gain within {CHI_RTOL:.0%} of chi1 for every init (worst "
        f"{worst:.1%}); ReLU: He, orthogonal and LSUV reach loss < {TRAINS_BELOW} (measured "
        f"{fmt(final_loss['kaiming'])}, {fmt(final_loss['orthogonal'])}, "
        f"{fmt(final_loss['lsuv'])}) while default and Xavier stay > {STALLS_ABOVE} (measured "
        f"{fmt(final_loss['default'])}, {fmt(final_loss['xavier'])}); tanh: critical sw2 ends "
        f"lowest (ordered {fmt(tanh_final['ordered'])}, critical {fmt(tanh_final['critical'])}, "
        f"chaotic {fmt(tanh_final['chaotic'])})"
    )
    return bool(ok), crit


@experiment(
    "init",
    title="Initialisation: per-layer gain vs chi1 and trainability",
    claim=(
        "Initialisation sets the per-layer gradient factor chi1: He (ReLU) and critical "
        "sw2 (tanh) keep it at 1 and deep nets train; smaller variances vanish and stall."
    ),
    source="Glorot & Bengio 2010; He et al. 2015; Schoenholz et al. 2017",
)
def run_init(ctx: LabContext) -> ExperimentResult:
    """8 MLPs of depth 30, width 128 (quick) / 256 (full), 300 / 800 steps.

    Run time with one torch thread on the 2-core lab machine (shared, load ~1.5-2): quick 16 s,
    full 130 s (estimated by timing a tenth of the steps).
    """
    depth = ctx.pick(6, 30, 30)
    width = ctx.pick(32, 128, 256)
    steps = ctx.pick(5, 300, 800)
    data = load_data("digits")
    crit_sw2 = theory.critical_sigma_w2("tanh", TANH_SB2)
    cases: list[tuple[str, str, str, str]] = [  # (label, group, activation, init spec)
        *[(i, "relu", "relu", i) for i in RELU_INITS],
        ("ordered", "tanh", "tanh", f"normal(sw2=1.0,sb2={TANH_SB2})"),
        ("critical", "tanh", "tanh", f"normal(sw2={crit_sw2:.6f},sb2={TANH_SB2})"),
        ("chaotic", "tanh", "tanh", f"normal(sw2=3.0,sb2={TANH_SB2})"),
    ]
    x_lsuv = data.fixed_batch(256, seed=ctx.seed)[0]
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    profiles: dict[str, list[float]] = {}
    for label, group, act, init in cases:
        ctx.progress(f"init: {group} {label}")
        spec_init = "default" if init == "lsuv" else init
        pr = profiled_run(
            f"mlp:depth={depth},width={width},act={act},init={spec_init}",
            data,
            steps=steps,
            lr=0.005,
            seed=ctx.seed,
            prepare=(lambda m: _lsuv(m, x_lsuv)) if init == "lsuv" else None,
        )
        run, prof = pr.result, pr.profile
        sw2, sb2 = _sw2_sb2(run.trace, pr.layers)
        chi = theory.chi1(act, sw2, sb2)
        measured_chi = per_layer_chi(prof)
        curves[label] = run.losses
        profiles[label] = prof
        rows.append(
            {
                "case": label,
                "activation": act,
                "init": init,
                "sw2": sw2,
                "sb2": sb2,
                "chi1_theory": chi,
                "per_layer_sq_gain_measured": measured_chi,
                "rel_err": abs(measured_chi / chi - 1.0) if chi > 0 else math.inf,
                "first_last_ratio": pr.ratio,
                "predicted_first_last_ratio": theory.predicted_gradient_ratio(
                    act, sw2, sb2, depth
                ).norm_ratio,
                "final_loss": run.final_loss,
            }
        )
    by = {r["case"]: r for r in rows}
    passed, crit = judge_init(
        {r["case"]: r["rel_err"] for r in rows},
        {k: by[k]["final_loss"] for k in RELU_INITS},
        {k: by[k]["final_loss"] for k in ("ordered", "critical", "chaotic")},
    )
    fig, axes = new_figure(1, 3, figsize=(13, 3.8))
    profile_panel(axes[0], profiles, "||dL/dh^l|| / ||dL/dh^L|| at init")
    for k, (group, title) in enumerate(
        (("relu", "ReLU: training loss"), ("tanh", f"tanh sb2={TANH_SB2}: training loss")), 1
    ):
        group_curves = {c: curves[c] for c in curves if by[c]["activation"] == group}
        loss_panel(axes[k], group_curves, title)
    measured: dict[str, Any] = {"tanh_critical_sw2": crit_sw2}
    measured |= flat_measures(
        rows,
        "case",
        {
            "chi1": "chi1_theory",
            "measured_sq_gain": "per_layer_sq_gain_measured",
            "final_loss": "final_loss",
        },
    )
    note = (
        f"{depth}-layer MLPs of width {width} on digits; SGD momentum 0.9, lr 0.005, batch 64, "
        f"{steps} steps. chi1 is computed by gradmedic.theory from the weights as built "
        "(sw2 = fan_in Var(W), sb2 = Var(b), read from the trace); the measured per-layer "
        "squared gain is the geometric mean of (||dL/dh^l|| / ||dL/dh^(l+1)||)^2 over the hidden "
        "layers at step 0. LSUV: orthogonal pre-init, then each layer scaled to unit output std "
        "on a batch of 256 (gradmedic.remedies.lsuv_)."
    )
    return ctx.finish(passed, crit, measured=measured, fig=fig, table=rows, note=note)
