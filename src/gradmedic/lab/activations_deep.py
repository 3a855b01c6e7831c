"""Experiment **activations-deep** (article 2.1).

Sigmoid, tanh, ReLU, LeakyReLU(0.01), ELU, GELU and SELU in MLPs of depth 10/20/30 on digits,
each with its own He-style init (``kaiming`` with the activation's gain; SELU LeCun-normal):
first/last backward-signal ratio at init, dead-unit fraction, loss curves. The verdict comes
from :func:`judge_activations_deep`.

Example::

    >>> loss = dict.fromkeys(DEEP_ACTS, 1.0) | {"sigmoid": 2.3, "relu": 0.4, "leaky_relu": 0.4, "elu": 0.4}
    >>> dead = dict.fromkeys(DEEP_ACTS, 0.0) | {"relu": 0.1}
    >>> judge_activations_deep(loss, dead)[0]
    True
"""

from __future__ import annotations

from typing import Any

from gradmedic.lab.common import (
    LN10,
    flat_measures,
    loss_panel,
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
    """7 activations x depths 10/20/30, width 128, 200 (quick) / 600 (full) steps.

    Run time with one torch thread on the 2-core lab machine (shared, load ~1.5-2): quick 18 s,
    full 95 s (estimated by timing a tenth of the steps).
    """
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
            pr = profiled_run(spec, data, steps=steps, lr=0.005, seed=ctx.seed)
            run = pr.result
            dead = run.trace.pivot("dead_frac")
            sat = run.trace.pivot("saturated_frac")
            curves[(act, depth)] = run.losses
            rows.append(
                {
                    "activation": act,
                    "depth": depth,
                    "init": _init_for(act),
                    "first_last_signal_ratio_init": pr.ratio,
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
    fig, axes = new_figure(1, 3, figsize=(13, 3.8))
    for act in DEEP_ACTS:
        sub = [r for r in rows if r["activation"] == act]
        axes[0].semilogy(
            [r["depth"] for r in sub],
            [max(r["first_last_signal_ratio_init"], 1e-30) for r in sub],
            "o-",
            label=act,
        )
        axes[2].bar(act, at[act]["dead_frac_max"])
    axes[0].set_title("||dL/dh^1|| / ||dL/dh^L|| at init")
    axes[0].set_xlabel("depth")
    axes[0].legend(fontsize=7)
    loss_panel(
        axes[1],
        {act: curves[(act, deepest)] for act in DEEP_ACTS},
        f"training loss, depth {deepest} (10-step mean)",
    )
    axes[2].set_title(f"max dead-unit fraction, depth {deepest}")
    axes[2].tick_params(axis="x", rotation=45)
    measured: dict[str, Any] = {"depth": deepest}
    measured |= flat_measures(
        [at[a] for a in DEEP_ACTS],
        "activation",
        {
            "final_loss": "final_loss",
            "ratio_init": "first_last_signal_ratio_init",
            "dead_frac_max": "dead_frac_max",
        },
    )
    note = (
        f"MLPs of width {width} on digits, SGD momentum 0.9, lr 0.005, batch 64, {steps} steps; "
        "each activation with its He-style init (kaiming with PyTorch's gain; SELU LeCun-normal), "
        "so the comparison is about the activation, not a mismatched init. Dead fraction: "
        "units whose output is 0 for every sample of the batch, max over layers and the "
        "recorded steps (first and last)."
    )
    return ctx.finish(passed, crit, measured=measured, fig=fig, table=rows, note=note)
