"""Experiments 3, 4, 8 and 10: deep feed-forward nets on digits.

**saturation-over-training** (article 1.2; Glorot & Bengio 2010, Sec. 3.1, Fig. 2). A
4-hidden-layer sigmoid MLP (width 256, init U[-1/sqrt(n), 1/sqrt(n)], zero biases, SGD batch
10): "very quickly at the beginning, all the sigmoid activation values of the last hidden layer
are pushed to their lower saturation value of 0" while the lower layers stay above 0.5; tanh
(symmetric around 0) does not do this.

**activations-deep** (article 2.1). Sigmoid, tanh, ReLU, LeakyReLU(0.01), ELU, GELU and SELU
in MLPs of depth 10/20/30 on digits, each with its own He-style init (``kaiming`` with the
activation's gain; SELU LeCun-normal): first/last backward-signal ratio at init, dead-unit
fraction, loss curves.

**init** (Glorot & Bengio 2010; He et al. 2015; Schoenholz et al. 2017). A 30-layer ReLU MLP
with PyTorch's default, Xavier, He, orthogonal and LSUV init, and a 30-layer tanh MLP at the
ordered, critical and chaotic ``sw2`` (``sb2 = 0.05``): the measured per-layer squared gain of
the backward signal against ``chi1 = sw2 E[phi'(sqrt(q*) z)^2]`` computed from the actual
weights, and the training loss.

**normalisation-and-residual**. A 30-layer ReLU MLP at PyTorch's default init (vanishing:
``chi1 = 1/6``) against the same net with BatchNorm, LayerNorm, residual blocks, and residual
blocks whose last layer starts at zero (Fixup / SkipInit style): backward-signal profile at init
and training loss.
"""

from __future__ import annotations

import json
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from .. import theory
from ..zoo import build_model, load_data
from .common import (
    first_last_ratio,
    linear_names,
    monitored_run,
    per_layer_chi,
    signal_profile,
    smooth,
)
from .registry import ExperimentResult, LabContext, experiment, finish, fmt

LN10 = math.log(10.0)

# =============================================================================================
# saturation-over-training

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
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for k, col in enumerate(s_mean.columns, start=1):
        axes[0].plot(s_mean.index, s_mean[col], label=f"layer {k}")
        axes[1].plot(t_mean.index, t_mean[col], label=f"layer {k}")
    axes[0].set_title("sigmoid: mean activation per hidden layer")
    axes[1].set_title("tanh: mean activation per hidden layer")
    for ax in axes[:2]:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    axes[2].plot(smooth(s_loss, 20), label="sigmoid")
    axes[2].plot(smooth(t_loss, 20), label="tanh")
    axes[2].axhline(LN10, color="grey", ls=":", lw=1)
    axes[2].set_title("training loss (20-step mean); dotted: ln 10")
    axes[2].set_xlabel("step")
    axes[2].legend(fontsize=7)
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
    return finish(
        ctx,
        "saturation-over-training",
        passed=passed,
        measured=measured,
        criterion=crit,
        fig=fig,
        table=rows,
        note=note,
    )


# =============================================================================================
# activations-deep

DEEP_ACTS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "selu")
RELU_FAMILY = ("relu", "leaky_relu", "elu")
STALL_FRACTION = 0.9
MARGIN = 0.5


def _init_for(act: str) -> str:
    return "lecun" if act == "selu" else "kaiming"


def judge_activations_deep(
    final_loss: dict[str, float], dead_frac: dict[str, float]
) -> tuple[bool, str]:
    """At the deepest depth: pass when sigmoid stalls (final loss >= 0.9 ln 10), every
    ReLU-family net (relu, leaky_relu, elu) ends below half of sigmoid's final loss, LeakyReLU
    and ELU have no dead unit and ReLU has some."""
    sig = final_loss["sigmoid"]
    fam = max(final_loss[a] for a in RELU_FAMILY)
    trains = sig >= STALL_FRACTION * LN10 and fam < MARGIN * sig
    alive = dead_frac["leaky_relu"] == 0.0 and dead_frac["elu"] == 0.0
    relu_dead = dead_frac["relu"] > 0.0
    ok = trains and alive and relu_dead
    crit = (
        f"deepest net: sigmoid stalls (final loss >= {STALL_FRACTION} ln 10 = "
        f"{STALL_FRACTION * LN10:.3f}; measured {fmt(sig)}) and every ReLU-family net ends "
        f"below {MARGIN} x sigmoid's loss (worst {fmt(fam)}); LeakyReLU and ELU have dead "
        f"fraction 0 (measured {fmt(dead_frac['leaky_relu'])}, {fmt(dead_frac['elu'])}) while "
        f"ReLU's is > 0 (measured {fmt(dead_frac['relu'])})"
    )
    return bool(ok), crit


@experiment(
    "activations-deep",
    title="Activations in deep MLPs: ReLU family trains where sigmoid stalls",
    claim=(
        "ReLU keeps derivative 1 on positive inputs so deep nets train where sigmoid stalls, "
        "but ReLU units can die; LeakyReLU (0.01x) and ELU keep a slope and stay alive."
    ),
    source="article 2.1",
)
def run_activations_deep(ctx: LabContext) -> ExperimentResult:
    depths = ctx.pick((3, 4), (10, 20, 30), (10, 20, 30))
    steps = ctx.pick(5, 200, 600)
    width = ctx.pick(16, 128, 128)
    data = load_data("digits")
    rows: list[dict[str, Any]] = []
    curves: dict[tuple[str, int], list[float]] = {}
    for depth in depths:
        for act in DEEP_ACTS:
            ctx.progress(f"activations-deep: {act}, depth {depth}")
            spec = f"mlp:depth={depth},width={width},act={act},init={_init_for(act)}"
            model = build_model(spec, data.info, seed=ctx.seed)
            lins = linear_names(model)
            run = monitored_run(
                model, data, steps=steps, lr=0.005, optimizer="momentum", seed=ctx.seed
            )
            tr = run.trace
            dead = tr.pivot("dead_frac")
            sat = tr.pivot("saturated_frac")
            curves[(act, depth)] = run.losses
            rows.append(
                {
                    "activation": act,
                    "depth": depth,
                    "init": _init_for(act),
                    "first_last_signal_ratio_init": first_last_ratio(
                        signal_profile(tr, lins, step=0)
                    ),
                    "dead_frac_max": float(dead.max().max()) if not dead.empty else 0.0,
                    "dead_frac_init_mean": float(dead.iloc[0].mean()) if not dead.empty else 0.0,
                    "saturated_frac_init_mean": float(sat.iloc[0].mean()) if not sat.empty else 0,
                    "initial_loss": run.losses[0],
                    "final_loss": run.final_loss,
                }
            )
    deepest = max(depths)
    at = {r["activation"]: r for r in rows if r["depth"] == deepest}
    passed, crit = judge_activations_deep(
        {a: at[a]["final_loss"] for a in DEEP_ACTS},
        {a: at[a]["dead_frac_max"] for a in DEEP_ACTS},
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for act in DEEP_ACTS:
        sub = [r for r in rows if r["activation"] == act]
        axes[0].semilogy(
            [r["depth"] for r in sub],
            [max(r["first_last_signal_ratio_init"], 1e-30) for r in sub],
            "o-",
            label=act,
        )
        axes[1].plot(smooth(curves[(act, deepest)], 10), label=act)
        axes[2].bar(act, at[act]["dead_frac_max"])
    axes[0].set_title("||dL/dh^1|| / ||dL/dh^L|| at init")
    axes[0].set_xlabel("depth")
    axes[1].set_title(f"training loss, depth {deepest} (10-step mean)")
    axes[1].set_xlabel("step")
    axes[1].axhline(LN10, color="grey", ls=":", lw=1)
    axes[2].set_title(f"max dead-unit fraction, depth {deepest}")
    axes[2].tick_params(axis="x", rotation=45)
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    measured: dict[str, Any] = {"depth": deepest}
    for a in DEEP_ACTS:
        measured[f"{a}_final_loss"] = at[a]["final_loss"]
        measured[f"{a}_ratio_init"] = at[a]["first_last_signal_ratio_init"]
        measured[f"{a}_dead_frac_max"] = at[a]["dead_frac_max"]
    note = (
        f"MLPs of width {width} on digits, SGD momentum 0.9, lr 0.005, batch 64, {steps} steps; "
        "each activation with its He-style init (kaiming with PyTorch's gain; SELU LeCun-normal), "
        "so the comparison is about the activation, not a mismatched init. Dead fraction: "
        "units whose output is 0 for every sample of the batch, max over layers and the "
        "recorded steps (first and last)."
    )
    return finish(
        ctx,
        "activations-deep",
        passed=passed,
        measured=measured,
        criterion=crit,
        fig=fig,
        table=rows,
        note=note,
    )


# =============================================================================================
# init

CHI_RTOL = 0.15
TRAINS_BELOW = 1.0
STALLS_ABOVE = 2.0
RELU_INITS = ("default", "xavier", "kaiming", "orthogonal", "lsuv")
TANH_SB2 = 0.05


def _lsuv(model: nn.Module, x: torch.Tensor) -> None:
    from ..remedies import lsuv_

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
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    profiles: dict[str, list[float]] = {}
    for label, group, act, init in cases:
        ctx.progress(f"init: {group} {label}")
        spec_init = "default" if init == "lsuv" else init
        model = build_model(
            f"mlp:depth={depth},width={width},act={act},init={spec_init}", data.info, seed=ctx.seed
        )
        if init == "lsuv":
            _lsuv(model, data.fixed_batch(256, seed=ctx.seed)[0])
        lins = linear_names(model)
        run = monitored_run(model, data, steps=steps, lr=0.005, optimizer="momentum", seed=ctx.seed)
        prof = signal_profile(run.trace, lins, step=0)
        sw2, sb2 = _sw2_sb2(run.trace, lins)
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
                "first_last_ratio": first_last_ratio(prof),
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
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for label, prof in profiles.items():
        top = prof[-1] if prof[-1] > 0 else 1.0
        axes[0].semilogy(range(1, len(prof) + 1), [p / top for p in prof], label=label)
        axes[2 if by[label]["activation"] == "tanh" else 1].plot(
            smooth(curves[label], 10), label=label
        )
    axes[0].set_title("||dL/dh^l|| / ||dL/dh^L|| at init")
    axes[0].set_xlabel("layer l")
    axes[1].set_title("ReLU: training loss")
    axes[2].set_title(f"tanh sb2={TANH_SB2}: training loss")
    for ax in axes:
        ax.legend(fontsize=7)
    for ax in axes[1:]:
        ax.set_xlabel("step")
        ax.axhline(LN10, color="grey", ls=":", lw=1)
    measured: dict[str, Any] = {"tanh_critical_sw2": crit_sw2}
    for r in rows:
        measured[f"{r['case']}_chi1"] = r["chi1_theory"]
        measured[f"{r['case']}_measured_sq_gain"] = r["per_layer_sq_gain_measured"]
        measured[f"{r['case']}_final_loss"] = r["final_loss"]
    note = (
        f"{depth}-layer MLPs of width {width} on digits; SGD momentum 0.9, lr 0.005, batch 64, "
        f"{steps} steps. chi1 is computed by gradmedic.theory from the weights as built "
        "(sw2 = fan_in Var(W), sb2 = Var(b), read from the trace); the measured per-layer "
        "squared gain is the geometric mean of (||dL/dh^l|| / ||dL/dh^(l+1)||)^2 over the hidden "
        "layers at step 0. LSUV: orthogonal pre-init, then each layer scaled to unit output std "
        "on a batch of 256 (gradmedic.remedies.lsuv_)."
    )
    return finish(
        ctx,
        "init",
        passed=passed,
        measured=measured,
        criterion=crit,
        fig=fig,
        table=rows,
        note=note,
    )


# =============================================================================================
# normalisation-and-residual

PLAIN_VANISHES = 1e-3
CURE_MARGIN = 0.5
NORM_CASES = ("plain", "batchnorm", "layernorm", "residual", "zero-init-residual")


def _zero_init_residual(model: nn.Module) -> None:
    from ..remedies import zero_init_residual_

    zero_init_residual_(model)


def judge_norm_residual(ratio_plain: float, final_loss: dict[str, float]) -> tuple[bool, str]:
    """Pass when the plain net's first/last backward-signal ratio is < 1e-3 and it stalls
    (final loss >= 0.9 ln 10), and every cure ends below half the plain net's final loss."""
    plain = final_loss["plain"]
    cures = {k: v for k, v in final_loss.items() if k != "plain"}
    worst = max(cures.values())
    ok = (
        ratio_plain < PLAIN_VANISHES
        and plain >= STALL_FRACTION * LN10
        and all(v < CURE_MARGIN * plain for v in cures.values())
    )
    crit = (
        f"plain net: first/last backward-signal ratio < {PLAIN_VANISHES:g} (measured "
        f"{fmt(ratio_plain)}) and it stalls (final loss >= {STALL_FRACTION * LN10:.3f}, measured "
        f"{fmt(plain)}); BatchNorm, LayerNorm, residual and zero-init residual each end below "
        f"{CURE_MARGIN} x the plain net's loss (worst {fmt(worst)})"
    )
    return bool(ok), crit


@experiment(
    "normalisation-and-residual",
    title="Normalisation and residual connections against vanishing gradients",
    claim=(
        "Batch/layer normalisation and residual connections (with zero-initialised branches, "
        "Fixup-style) let a deep net whose plain version vanishes and stalls train."
    ),
    source="Ioffe & Szegedy 2015; Ba et al. 2016; He et al. 2016; Zhang et al. 2019 (Fixup)",
)
def run_norm_residual(ctx: LabContext) -> ExperimentResult:
    depth = ctx.pick(6, 30, 30)
    width = ctx.pick(16, 128, 128)
    steps = ctx.pick(5, 300, 800)
    data = load_data("digits")
    base = f"mlp:depth={depth},width={width},act=relu"
    specs = {
        "plain": base,
        "batchnorm": base + ",norm=batch",
        "layernorm": base + ",norm=layer",
        "residual": base + ",residual=true",
        "zero-init-residual": base + ",residual=true",
    }
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    profiles: dict[str, list[float]] = {}
    for case in NORM_CASES:
        ctx.progress(f"normalisation-and-residual: {case}")
        model = build_model(specs[case], data.info, seed=ctx.seed)
        if case == "zero-init-residual":
            _zero_init_residual(model)
        lins = linear_names(model)
        run = monitored_run(model, data, steps=steps, lr=0.01, optimizer="momentum", seed=ctx.seed)
        prof = signal_profile(run.trace, lins, step=0)
        curves[case] = run.losses
        profiles[case] = prof
        rows.append(
            {
                "case": case,
                "spec": specs[case],
                "linear_layers": len(lins),
                "first_last_signal_ratio_init": first_last_ratio(prof),
                "initial_loss": run.losses[0],
                "final_loss": run.final_loss,
            }
        )
    by = {r["case"]: r for r in rows}
    passed, crit = judge_norm_residual(
        by["plain"]["first_last_signal_ratio_init"], {k: by[k]["final_loss"] for k in NORM_CASES}
    )
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for case in NORM_CASES:
        prof = profiles[case]
        top = prof[-1] if prof[-1] > 0 else 1.0
        a1.semilogy(range(1, len(prof) + 1), [max(p / top, 1e-30) for p in prof], label=case)
        a2.plot(smooth(curves[case], 10), label=case)
    a1.set_title("||dL/dh^l|| / ||dL/dh^L|| at init (Linear layers)")
    a1.set_xlabel("Linear layer")
    a2.set_title("training loss (10-step mean)")
    a2.set_xlabel("step")
    a2.axhline(LN10, color="grey", ls=":", lw=1)
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    measured: dict[str, Any] = {}
    for r in rows:
        measured[f"{r['case']}_ratio_init"] = r["first_last_signal_ratio_init"]
        measured[f"{r['case']}_final_loss"] = r["final_loss"]
    note = (
        f"ReLU MLPs of depth {depth}, width {width}, PyTorch default init (sw2 = 1/3, chi1 = 1/6: "
        f"vanishing), digits, SGD momentum 0.9, lr 0.01, batch 64, {steps} steps. Residual: "
        "pre-norm-free blocks x + Linear-ReLU-Linear(x); zero-init residual zeroes each block's "
        "last Linear (gradmedic.remedies.zero_init_residual_). BatchNorm nets can show growing "
        "backward signals towards the input at init (Yang et al. 2019); the profile shows it."
    )
    plain_loss = by["plain"]["final_loss"]
    missed = [k for k in NORM_CASES[1:] if not by[k]["final_loss"] < CURE_MARGIN * plain_loss]
    if missed:
        note += " Did not reproduce: " + "; ".join(
            f"{k} keeps the backward signal (first/last ratio "
            f"{fmt(by[k]['first_last_signal_ratio_init'])}) but ends at loss "
            f"{fmt(by[k]['final_loss'])}"
            for k in missed
        )
        note += (
            ". A healthy gradient norm was not enough to train here; a likely reason (not "
            "tested) is that normalising each sample's features fixes the length of the "
            "signal but not the collapse of different inputs onto one representation in a deep "
            "ordered-phase net (Schoenholz et al. 2017's correlation depth scale). Also tried while calibrating (seed 0, LayerNorm): 800 "
            "steps at lr 0.01 ended at 2.04, 300 steps at lr 0.05 at 2.31; the criterion was "
            "not changed."
        )
    return finish(
        ctx,
        "normalisation-and-residual",
        passed=passed,
        measured=measured,
        criterion=crit,
        fig=fig,
        table=rows,
        note=note,
    )
