"""Experiment **exploding-and-clipping** (Pascanu, Mikolov & Bengio 2013; Brock et al. 2021;
Seetharaman et al. 2020).

A tanh RNN whose recurrent matrix is ``2 Q`` (largest singular value 2 > 1/gamma = 1,
Pascanu's necessary condition for explosion) on adding-T, and a ReLU MLP in the chaotic phase
(``sw2 = 3``, ``chi1 = 1.5`` per layer), trained with plain SGD: without clipping the gradient
norm spikes and the loss goes non-finite; each clipper (norm, value, AGC, AutoClip from
:mod:`gradmedic.remedies.clipping`) is then applied between backward and the optimizer step.
The verdict comes from :func:`judge_exploding`.

Example::

    >>> spike, diverged = {"rnn": float("inf"), "mlp": 50.0}, {"rnn": True, "mlp": True}
    >>> judge_exploding(spike, diverged, {"rnn/agc": True, "mlp/agc": True})[0]
    True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradmedic import theory
from gradmedic.lab.common import monitored_run
from gradmedic.lab.registry import (
    ExperimentResult,
    LabContext,
    experiment,
    fmt,
    new_figure,
)
from gradmedic.zoo import build_model, load_data

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
    fig, axes = new_figure(2, 2, figsize=(12, 7))
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
