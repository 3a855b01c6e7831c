"""Experiments 6 and 9: gradients through time.

**rnn-vs-gated** (article 1.3, 2.3; Hochreiter & Schmidhuber 1997; Pascanu et al. 2013).
A vanilla tanh RNN, an LSTM with forget-gate bias 1 and a GRU (hidden 64) on the adding
problem (target = sum of the two marked values; always answering 1 gives MSE 1/6 = 0.167) for
several sequence lengths T, Adam. The Monitor unrolls each recurrent module to get the exact
``||dL/dh_t||`` for every t at init and after training; the memory ratio ``||dL/dh_1|| /
||dL/dh_T||`` says how much of the loss's gradient reaches the first step. Held-out MSE against
the 0.167 baseline says whether the long-range dependency was learned. The full run adds the
copy-memory task (memoryless baseline ``10 ln 8 / (T + 20)``).

**exploding-and-clipping** (Pascanu, Mikolov & Bengio 2013; Brock et al. 2021; Seetharaman et
al. 2020). A tanh RNN whose recurrent matrix is ``2 Q`` (largest singular value 2 > 1/gamma = 1,
Pascanu's necessary condition for explosion) on adding-T, and a ReLU MLP in the chaotic phase
(``sw2 = 3``, ``chi1 = 1.5`` per layer), trained with plain SGD: without clipping the gradient
norm spikes and the loss goes non-finite; each clipper (norm, value, AGC, AutoClip from
:mod:`gradmedic.remedies.clipping`) is then applied between backward and the optimizer step.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

from gradmedic import theory
from gradmedic.lab.common import flat_measures, loss_panel, monitored_run
from gradmedic.lab.registry import ExperimentResult, LabContext, experiment, fmt
from gradmedic.zoo import adding_baseline, build_model, copy_baseline, load_data, loss_for

RNN_STAYS = 0.15
GATED_LEARNS = 0.1
MEMORY_FACTOR = 100.0
CELLS = ("rnn", "lstm", "gru")


def _cell_spec(cell: str, hidden: int) -> str:
    if cell == "lstm":
        return f"lstm:hidden={hidden},forget_bias=1"
    return f"{cell}:hidden={hidden}"


def hidden_profile(trace: Any, step: int) -> np.ndarray:
    """``||dL/dh_t||`` for t = 1..T at ``step`` (layer 0), from the Monitor's unrolled grads."""
    f = trace.frame
    f = f[(f["quantity"] == "hidden_grad_t") & (f["step"] == step) & (f["parameter"] == "layer0")]
    return f.sort_values("idx")["value"].to_numpy(dtype=float)


def _memory(profile: np.ndarray) -> float:
    if profile.size == 0 or not profile[-1] > 0:
        return math.nan
    return float(profile[0] / profile[-1])


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, spec: str, seed: int, n: int = 1000) -> float:
    """Loss of ``model`` on fresh samples of ``spec`` (another seed than the training set)."""
    data = load_data(spec, seed=seed + 1000, n=n)
    model.eval()
    out = model(data.x)
    return float(loss_for(data.info)(out, data.y))


def judge_rnn_vs_gated(mse: dict[str, float], memory_after: dict[str, float]) -> tuple[bool, str]:
    """At the longest T: pass when the vanilla RNN stays near the baseline (held-out MSE >=
    0.15), LSTM and GRU learn (MSE < 0.1), and after training both gated nets pass >= 100x more
    of the gradient back to step 1 (||dL/dh_1|| / ||dL/dh_T||) than the RNN."""
    rnn_mem = memory_after["rnn"]
    gated_ok = all(
        memory_after[c] >= MEMORY_FACTOR * rnn_mem if rnn_mem > 0 else memory_after[c] > 0
        for c in ("lstm", "gru")
    )
    ok = (
        mse["rnn"] >= RNN_STAYS
        and mse["lstm"] < GATED_LEARNS
        and mse["gru"] < GATED_LEARNS
        and gated_ok
    )
    crit = (
        f"longest T: vanilla RNN held-out MSE >= {RNN_STAYS} (baseline 0.167; measured "
        f"{fmt(mse['rnn'])}), LSTM and GRU < {GATED_LEARNS} (measured {fmt(mse['lstm'])}, "
        f"{fmt(mse['gru'])}); after training ||dL/dh_1||/||dL/dh_T|| of LSTM and GRU >= "
        f"{MEMORY_FACTOR:g} x the RNN's (RNN {fmt(rnn_mem)}, LSTM {fmt(memory_after['lstm'])}, "
        f"GRU {fmt(memory_after['gru'])})"
    )
    return bool(ok), crit


@experiment(
    "rnn-vs-gated",
    title="Vanilla RNN vs LSTM vs GRU: gradients through time on the adding problem",
    claim=(
        "RNNs are deep in time and their gradients vanish across time steps; LSTM/GRU gates "
        "keep information and gradient over long spans."
    ),
    source="article 1.3, 2.3",
)
def run_rnn_vs_gated(ctx: LabContext) -> ExperimentResult:
    """RNN/LSTM/GRU, hidden 64, adding-20/50 x 1000 steps (quick); adding-50/100/200 and copy-50
    x 3000 steps (full).

    Run time with one torch thread on the 2-core lab machine (shared, load ~1.5-2): quick 36 s,
    full ~15 min (900 s, estimated by timing 5% of the steps; T = 200 costs ~80 ms per step and
    cell). Calibrated: LSTM and GRU learn adding-200 within 3000 Adam steps (held-out MSE 3e-4
    and 2e-4, seed 0; the LSTM leaves the baseline near step 1250, the GRU before step 250).
    """
    lengths = ctx.pick((5,), (20, 50), (50, 100, 200))
    steps = ctx.pick(10, 1000, 3000)
    hidden = ctx.pick(8, 64, 64)
    n = ctx.pick(256, 2000, 4000)
    rows: list[dict[str, Any]] = []
    profiles: dict[tuple[str, int, str], np.ndarray] = {}
    curves: dict[tuple[str, str], list[float]] = {}
    tasks = [f"adding-{T}" for T in lengths]
    if ctx.size == "full":
        tasks.append("copy-50")
    for task in tasks:
        T = int(task.split("-")[1])
        data = load_data(task, seed=ctx.seed, n=n)
        for cell in CELLS:
            ctx.progress(f"rnn-vs-gated: {cell} on {task}, {steps} Adam steps")
            model = build_model(_cell_spec(cell, hidden), data.info, seed=ctx.seed)
            run = monitored_run(
                model,
                data,
                steps=steps,
                lr=0.01,
                optimizer="adam",
                seed=ctx.seed,
                rnn_hidden=[0, steps - 1],
                monitor={"nonfinite": False, "weights": False},
            )
            p0 = hidden_profile(run.trace, 0)
            p1 = hidden_profile(run.trace, steps - 1)
            profiles[(cell, T, task)] = p0
            profiles[(cell, T, task + ":after")] = p1
            curves[(cell, task)] = run.losses
            base = adding_baseline() if task.startswith("adding") else copy_baseline(T)
            rows.append(
                {
                    "task": task,
                    "T": T,
                    "cell": cell,
                    "baseline": base,
                    "heldout_loss": heldout_loss(model, task, ctx.seed),
                    "train_final_loss": run.final_loss,
                    "memory_ratio_init": _memory(p0),
                    "memory_ratio_after": _memory(p1),
                }
            )
    adding = [r for r in rows if r["task"].startswith("adding")]
    longest = max(lengths)
    at = {r["cell"]: r for r in adding if r["T"] == longest}
    passed, crit = judge_rnn_vs_gated(
        {c: at[c]["heldout_loss"] for c in CELLS},
        {c: at[c]["memory_ratio_after"] for c in CELLS},
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    task = f"adding-{longest}"
    for cell in CELLS:
        p0 = profiles[(cell, longest, task)]
        p1 = profiles[(cell, longest, task + ":after")]
        t = np.arange(1, len(p0) + 1)
        axes[0].semilogy(t, np.maximum(p0 / p0[-1], 1e-30), label=cell)
        axes[1].semilogy(t, np.maximum(p1 / p1[-1], 1e-30), label=cell)
    axes[0].set_title(f"||dL/dh_t|| / ||dL/dh_T|| at init, T={longest}")
    axes[1].set_title("... after training")
    for ax in axes[:2]:
        ax.set_xlabel("time step t")
        ax.legend(fontsize=7)
    loss_panel(
        axes[2],
        {cell: curves[(cell, f"adding-{longest}")] for cell in CELLS},
        f"training MSE, T={longest} (20-step mean)",
        k=20,
        baseline=adding_baseline(),
        baseline_label="baseline 1/6",
    )
    measured: dict[str, Any] = {"T": longest, "baseline": adding_baseline()}
    measured |= flat_measures(
        [at[c] for c in CELLS],
        "cell",
        {
            "heldout_mse": "heldout_loss",
            "memory_init": "memory_ratio_init",
            "memory_after": "memory_ratio_after",
        },
    )
    note = (
        f"Adding problem, hidden {hidden}, Adam lr 0.01, batch 64, {steps} steps, {n} training "
        "sequences; held-out MSE on 1000 fresh sequences. ||dL/dh_t|| is exact (the Monitor "
        "unrolls the cell with the weights of that forward pass). At init the GRU's memory ratio "
        "is as small as the RNN's (its update gate starts near 0.5, a factor ~0.5 per step); the "
        "gates learn to open during training. The LSTM starts with forget gate sigmoid(1) = 0.73."
    )
    if ctx.size == "full":
        note += " The full run adds copy-50 (memoryless baseline 10 ln 8 / 70 = 0.297)."
    return ctx.finish(passed, crit, measured=measured, fig=fig, table=rows, note=note)


# =============================================================================================
# exploding-and-clipping

SPIKE = 10.0


def _clippers() -> dict[str, Any]:
    from gradmedic.remedies.clipping import AGC, AutoClip, ClipGradNorm, ClipGradValue

    return {
        "none": None,
        "clip-grad-norm(1.0)": ClipGradNorm(1.0),
        "clip-grad-value(0.1)": ClipGradValue(0.1),
        "agc(0.01)": AGC(0.01),
        "autoclip(p=10)": AutoClip(10),
    }


def judge_exploding(
    spike: dict[str, float], diverged: dict[str, bool], clipped_finite: dict[str, bool]
) -> tuple[bool, str]:
    """Pass when, in every setup, the unclipped run's gradient norm spikes to >= 10x its
    first-step norm (inf when it went non-finite) and its loss goes non-finite, and every
    clipped run keeps all losses finite."""
    ok = (
        all(v >= SPIKE for v in spike.values())
        and all(diverged.values())
        and all(clipped_finite.values())
    )
    failing = [k for k, v in clipped_finite.items() if not v]
    crit = (
        f"without clipping the gradient norm spikes to >= {SPIKE:g}x its first-step value (a "
        "non-finite norm counts as an unbounded spike) "
        f"(measured {', '.join(f'{k}: {fmt(v)}x' for k, v in spike.items())}) and the loss goes "
        f"non-finite ({', '.join(f'{k}: {v}' for k, v in diverged.items())}); with clipping by "
        f"norm, value, AGC and AutoClip every loss stays finite "
        f"({'all finite' if not failing else 'non-finite: ' + ', '.join(failing)})"
    )
    return bool(ok), crit


@experiment(
    "exploding-and-clipping",
    title="Exploding gradients (RNN radius 2, chaotic MLP) and four ways of clipping",
    claim=(
        "When the recurrent matrix's largest singular value exceeds 1/gamma (or an MLP is in "
        "the chaotic phase), gradients explode; gradient clipping keeps training finite."
    ),
    source="Pascanu, Mikolov & Bengio 2013; Brock et al. 2021 (AGC); Seetharaman et al. 2020",
)
def run_exploding(ctx: LabContext) -> ExperimentResult:
    """2 setups x 5 clipping variants, 200 (quick) / 500 (full) SGD steps, every step recorded.

    Run time with one torch thread on the 2-core lab machine (shared, load ~1.5-2): quick 16 s,
    full 70 s (estimated by timing a tenth of the steps).
    """
    T = ctx.pick(10, 50, 100)
    steps = ctx.pick(8, 200, 500)
    hidden = ctx.pick(16, 64, 64)
    depth = ctx.pick(8, 20, 20)
    setups = {
        "rnn": (
            load_data(f"adding-{T}", seed=ctx.seed, n=ctx.pick(256, 2000, 2000)),
            f"rnn:hidden={hidden},init=orthogonal,radius=2",
            0.1,
        ),
        "mlp": (
            load_data("digits"),
            f"mlp:depth={depth},width={ctx.pick(32, 128, 128)},act=relu,init=normal(sw2=3.0)",
            0.01,
        ),
    }
    tdir = ctx.folder("exploding-and-clipping") / "traces"
    rows: list[dict[str, Any]] = []
    norms: dict[tuple[str, str], list[float]] = {}
    losses: dict[tuple[str, str], list[float]] = {}
    bound: dict[str, Any] = {}
    for setup, (data, spec, lr) in setups.items():
        for cname, clipper in _clippers().items():
            ctx.progress(f"exploding-and-clipping: {setup}, {cname}, {steps} SGD steps")
            model = build_model(spec, data.info, seed=ctx.seed)
            if setup == "rnn" and "pascanu" not in bound:
                pb = theory.pascanu_bound(model.rnn.weight_hh_l0.detach().double().numpy(), "tanh")
                bound = {"pascanu": pb.verdict, "lambda1": pb.lambda1, "inv_gamma": pb.inv_gamma}
            slug = cname.split("(")[0]
            run = monitored_run(
                model,
                data,
                steps=steps,
                lr=lr,
                optimizer="sgd",
                seed=ctx.seed,
                record=1,
                trace_path=tdir / f"{setup}-{slug}.sqlite",
                grad_transform=clipper,
                monitor={"signal": False, "weights": False},
            )
            # pre-clip norms: the clipper's own record; unclipped: the Monitor's total norm
            if clipper is not None:
                g = list(clipper.norms)
            else:
                g = run.trace.quantity("grad_norm_total")["value"].tolist()
            finite = [v for v in g if math.isfinite(v)]
            first = g[0] if g else math.nan
            norms[(setup, cname)] = g
            losses[(setup, cname)] = run.losses
            all_finite = all(math.isfinite(v) for v in run.losses)
            rows.append(
                {
                    "setup": setup,
                    "spec": spec,
                    "lr": lr,
                    "clipping": cname,
                    "first_grad_norm": first,
                    "max_grad_norm": max(finite) if finite else math.nan,
                    "spike_vs_first": (max(finite) / first) if finite and first > 0 else math.nan,
                    "nonfinite_grad_steps": sum(1 for v in g if not math.isfinite(v)),
                    "diverged_at": run.diverged_at,
                    "all_losses_finite": all_finite,
                    "initial_loss": run.losses[0],
                    "final_loss": run.final_loss,
                    "stable": all_finite and run.final_loss <= run.losses[0],
                    "first_event": (run.events[0]["module"] if run.events else None),
                }
            )
    unclipped = [r for r in rows if r["clipping"] == "none"]
    clipped = [r for r in rows if r["clipping"] != "none"]
    spike = {
        r["setup"]: (
            math.inf
            if r["nonfinite_grad_steps"] and not r["spike_vs_first"] >= SPIKE
            else r["spike_vs_first"]
        )
        for r in unclipped
    }
    passed, crit = judge_exploding(
        spike,
        {r["setup"]: r["diverged_at"] is not None for r in unclipped},
        {f"{r['setup']}/{r['clipping']}": r["all_losses_finite"] for r in clipped},
    )
    fig, axes = plt.subplots(2, 2, figsize=(12, 7))
    for i, setup in enumerate(setups):
        for cname in _clippers():
            g = np.asarray(norms[(setup, cname)], dtype=float)
            g = np.where(np.isfinite(g), g, np.nan)
            axes[0, i].semilogy(g, lw=1, label=cname)
            lo = np.asarray(losses[(setup, cname)], dtype=float)
            axes[1, i].semilogy(np.where(np.isfinite(lo), lo, np.nan), lw=1, label=cname)
        axes[0, i].set_title(f"{setup}: global gradient norm before clipping")
        axes[1, i].set_title(f"{setup}: training loss (gaps = non-finite)")
        for ax in axes[:, i]:
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
    measured: dict[str, Any] = dict(bound)
    for r in rows:
        key = f"{r['setup']}_{r['clipping'].split('(')[0]}"
        measured[f"{key}_final_loss"] = r["final_loss"]
        measured[f"{key}_all_finite"] = r["all_losses_finite"]
    for setup, v in spike.items():
        measured[f"{setup}_unclipped_spike"] = v
    unstable = [f"{r['setup']}/{r['clipping']}" for r in clipped if not r["stable"]]
    note = (
        f"RNN: tanh, hidden {hidden}, W_hh = 2Q (orthogonal Q; Pascanu bound: "
        f"{bound.get('pascanu')}, lambda1 = {fmt(bound.get('lambda1', math.nan))} > 1/gamma = 1), "
        f"adding-{T}, SGD lr 0.1. MLP: ReLU, depth {depth}, W ~ N(0, 3/fan_in) (chi1 = 1.5), "
        f"digits, SGD lr 0.01. {steps} steps each; thresholds: norm 1.0 (Pascanu's), value 0.1, "
        "AGC lambda 0.01 per unit, AutoClip 10th percentile. Traces of every run are kept in "
        "traces/ for `gradmedic diagnose`."
    )
    if unstable:
        note += (
            " Finite is not the same as healthy: "
            + ", ".join(unstable)
            + " ended with a loss above the initial one."
        )
    if any("autoclip" in u for u in unstable):
        note += (
            " AutoClip's threshold is a percentile of the norms seen so far, including the "
            "current one, so the very first (exploding) step passes unclipped and can throw the "
            "weights far away before any history exists."
        )
    return ctx.finish(passed, crit, measured=measured, fig=fig, table=rows, note=note)
