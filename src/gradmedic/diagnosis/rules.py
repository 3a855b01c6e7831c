"""Rules that turn a trace (plus the model's structure and theory) into findings.

Every rule is written from a mechanism, with thresholds on what the mechanism does to learning:

* **Vanishing / exploding** are judged on the backward signal ``r = ||dL/dh^first|| /
  ||dL/dh^last||`` at initialisation (never on weight-gradient ratios alone: Glorot & Bengio
  2010, eq. 14, show those stay equal across layers while ``r`` vanishes). ``r < 1e-3``
  (the first layer learns a thousand times slower than the last under SGD) is a warning,
  ``r < 1e-6`` or a first layer whose relative update per step is below ``1e-6`` (it would need
  more than ~1e5 steps to change by 10 %) is an error. Exploding: ``r > 1e3`` (warning) /
  ``1e6`` (error), or a chaotic-phase stack (measured per-layer gain >= 1.1, i.e. chi1 >= 1.21,
  Schoenholz et al. 2017) whose signal grows more than tenfold. Off a plain chain (skip
  connections) the per-layer factor means nothing; there a tenfold growth is exploding only
  when the forward scale multiplies too (mean square of the pre-activations up 100x from the
  first to the last activation): the residual stream's variance compounds block after block,
  as in unnormalised ResNets with He-initialised branches (Zhang, Dauphin & Ma 2019, Fixup),
  whereas normalised ResNets grow it only linearly (the branch adds O(1) variance per block).
  Pooling, reshaping, padding and dropout (``STRUCTURAL_TYPES``) spread the signal over more
  or fewer entries without changing what the layers before them learn; their gain is taken
  out of the judged ratio. Modules gradmedic has no model for (an activation it does not
  know, a custom layer) stay in: their decay is real.
* **Attribution** splits ``log10 r`` over the modules on the path: weight layers
  (``sqrt(sw2)`` each), activation derivatives (``sqrt(E[phi'^2])``, sigmoid's at most 0.25),
  dead units (``sqrt(1 - dead_frac)``), normalisation, pooling/reshaping, unmodelled modules
  and what happens *between* hooked modules (functional calls such as ``torch.sigmoid`` in
  ``forward``, skip connections), and sets the product of the per-layer gains beside the
  measured ratio (equal on a plain chain; different when skip connections carry the signal
  around the modules).
* **poor-init** compares the weight scale with theory's critical ``sigma_w^2`` where one is
  practical (ReLU family, tanh: He / Xavier); a net at its critical scale is never blamed on
  its init, whatever else makes its signal vanish or explode.
* **Saturation / dead units**: the fraction of units with ``|phi'| < 1 %`` of its maximum
  (sigmoid, tanh, ...) or dead for the whole batch (ReLU).
* **RNNs**: the profile ``||dL/dh_t||`` over time, its first/last ratio and memory horizon
  (steps back until it falls by 1e-3), and Pascanu, Mikolov & Bengio's (2013) bound:
  ``lambda1(W_hh) < 1/gamma`` is sufficient for vanishing, ``> 1/gamma`` necessary for exploding.
* **Non-finite values**: the first module whose output (forward) or gradient (backward) was
  NaN/Inf, and the step.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gradmedic.diagnosis.findings import Finding, Prescription
from gradmedic.diagnosis.predict import InitPrediction, init_predictions
from gradmedic.diagnosis.table import EndToEnd, end_to_end, layer_table, module_infos, signal_steps
from gradmedic.diagnosis.table import module_category as _category
from gradmedic.trace import Trace

__all__ = [
    "DEAD_ERROR",
    "DEAD_WARNING",
    "LEARN_MIN_UPDATE",
    "SATURATION_ERROR",
    "SATURATION_WARNING",
    "VANISH_ERROR",
    "VANISH_WARNING",
    "Context",
    "run_rules",
]

VANISH_WARNING = 1e-3
VANISH_ERROR = 1e-6
EXPLODE_WARNING = 1e3
EXPLODE_ERROR = 1e6
CHAOTIC_LAYER_GAIN = 1.1
CHAOTIC_MIN_GROWTH = 10.0
#: Forward growth (ratio of pre-activation mean squares, last / first activation) that makes a
#: skip-connected path's backward growth multiplicative: 100x in q = 10x in scale. Normalised
#: residual nets grow q linearly (about 10x over 24 blocks); unnormalised ones geometrically.
FORWARD_GROWTH = 100.0
#: Relative weight update per step below which a layer does not learn in practice.
LEARN_MIN_UPDATE = 1e-6
SATURATION_WARNING = 0.5
SATURATION_ERROR = 0.9
DEAD_WARNING = 0.5
DEAD_ERROR = 0.9
RNN_VANISH_WARNING = 1e-3
RNN_VANISH_ERROR = 1e-6
#: Gated cells (LSTM/GRU) can learn to open their gates; only a deeper fall is a warning.
GATED_VANISH_WARNING = 1e-8
RNN_EXPLODE_WARNING = 1e3
RNN_EXPLODE_ERROR = 1e6
SPIKE_FACTOR = 10.0

_SATURATING = {"sigmoid", "tanh", "softsign", "hardtanh", "hardsigmoid", "elu", "selu", "celu"}
_DEAD_CAPABLE = {"relu", "relu6"}
_RELU_LIKE = {"relu", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "relu6", "mish"}
_DERIVATIVE_BOUND = {"sigmoid": 0.25, "hardsigmoid": 1 / 6}


def _f(x: float | None, digits: int = 4) -> float | str | None:
    """A JSON-safe number: rounded to ``digits`` significant digits; +-inf/NaN as strings."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return 0.0
    return float(f"{x:.{digits}g}")


def _log10(x: float) -> float:
    if x is None or not math.isfinite(x) or x <= 0:
        return -math.inf if (x is not None and x == 0) else math.nan
    return math.log10(x)


@dataclass
class Context:
    """Everything the rules look at: the trace, the init-time module facts and the run's lr."""

    trace: Trace
    infos: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    e2e: EndToEnd | None
    e2e_last: EndToEnd | None
    prediction: InitPrediction
    lr: float | None
    optimizer: str | None
    steps: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, trace: Trace, infos: dict[str, dict[str, Any]] | None = None) -> Context:
        if infos:
            trace = _with_infos(trace, infos)  # init-time facts of the untrained model
        else:
            infos = module_infos(trace)
        steps = signal_steps(trace) or trace.steps
        rows = layer_table(trace) if steps else []
        e0 = end_to_end(trace) if steps else None
        e1 = end_to_end(trace, steps[-1]) if len(steps) > 1 else e0
        ordered = sorted(infos.items(), key=lambda kv: kv[1].get("ord", 0))
        pred = init_predictions([{"name": n, **i} for n, i in ordered])
        cfg = trace.meta.get("train_config") if isinstance(trace.meta, dict) else None
        lr = float(cfg["lr"]) if isinstance(cfg, dict) and "lr" in cfg else None
        opt = str(cfg["optimizer"]) if isinstance(cfg, dict) and "optimizer" in cfg else None
        return cls(trace, infos, rows, e0, e1, pred, lr, opt, steps)


def _with_infos(trace: Trace, infos: dict[str, dict[str, Any]]) -> Trace:
    """A trace whose modules table carries ``infos`` (init-time facts of the untrained model)."""
    import json

    recs = []
    for name, i in sorted(infos.items(), key=lambda kv: kv[1].get("ord", 0)):
        extra = {k: v for k, v in i.items() if k not in ("type", "activation", "ord", "n_params")}
        recs.append(
            {
                "ord": i.get("ord", 0),
                "name": name,
                "type": i.get("type", ""),
                "activation": i.get("activation"),
                "n_params": i.get("n_params", 0),
                "info": json.dumps(extra),
            }
        )
    mods = pd.DataFrame(recs, columns=["ord", "name", "type", "activation", "n_params", "info"])
    return Trace(frame=trace.frame, modules=mods, meta=trace.meta, path=trace.path)


# ------------------------------------------------------------------------------------ helpers
def _row(ctx: Context, name: str) -> dict[str, Any]:
    return next((r for r in ctx.rows if r["module"] == name), {})


def _relative_update(ctx: Context, row: dict[str, Any]) -> tuple[float | None, str]:
    """Relative weight change per step of a layer: the measured update ratio (with an
    optimizer), else lr x ||dL/dW|| / ||W|| (SGD's step)."""
    if row.get("update_ratio") is not None:
        return float(row["update_ratio"]), "measured ||dW_step|| / ||W|| (median over steps)"
    gw = row.get("grad_to_weight")
    if gw is None:
        return None, ""
    lr = ctx.lr if ctx.lr is not None else 0.01
    return lr * gw, f"lr x ||dL/dW|| / ||W|| with lr = {lr:g}"


def _pair_summary(ctx: Context) -> dict[str, Any]:
    pairs = ctx.prediction.pairs
    if not pairs:
        return {}
    acts = sorted({p.act_spec for p in pairs})
    sw2 = statistics.median(p.sw2 for p in pairs)
    chis = [p.chi1 for p in pairs]
    crits = [p.critical_sw2 for p in pairs if p.critical_sw2 is not None]
    out: dict[str, Any] = {
        "activation": acts[0] if len(acts) == 1 else acts,
        "sigma_w2_median": _f(sw2),
        "chi1_median": _f(statistics.median(chis)),
        "phase": pairs[len(pairs) // 2].phase,
        "theory_ratio_at_q_star": _f(ctx.prediction.ratio),
    }
    if crits:
        out["critical_sigma_w2"] = _f(statistics.median(crits))
    return out


def _critical_deficit(ctx: Context) -> float | None:
    """log10 of the part of the end-to-end ratio that moving sigma_w^2 to its critical value
    would remove: sum over crossed pairs of 0.5 log10(sw2 / sw2_crit), for activations whose
    critical sigma_w^2 is practical (<= 10)."""
    total, used = 0.0, 0
    for p in ctx.prediction.pairs:
        if p.critical_sw2 is None or not (0 < p.critical_sw2 <= 10) or p.sw2 <= 0:
            continue
        total += 0.5 * math.log10(p.sw2 / p.critical_sw2)
        used += 1
    return total if used else None


def _main_activation(ctx: Context, path: list[str]) -> str | None:
    names = [ctx.infos.get(n, {}).get("activation") for n in path]
    names = [n for n in names if n]
    return statistics.mode(names) if names else None


def _reinit_scheme(act: str | None) -> str:
    return "kaiming" if act in _RELU_LIKE else "xavier"


# ------------------------------------------------------------------------------------ rules
def rule_nonfinite(ctx: Context) -> list[Finding]:
    f = ctx.trace.frame
    bad = f[f["quantity"].isin(["nonfinite_forward", "nonfinite_backward", "nonfinite"])]
    if bad.empty:
        return []
    first_step = int(bad["step"].min())
    at = bad[bad["step"] == first_step]
    fwd = at[at["quantity"] == "nonfinite_forward"]["module"].tolist()
    bwd = at[at["quantity"] == "nonfinite_backward"]["module"].tolist()
    losses = f[(f["quantity"] == "loss") & (f["module"] == "")]
    nonfinite_loss = losses[~losses["value"].apply(lambda v: math.isfinite(v))]
    start = ctx.trace.steps[0] if ctx.trace.steps else 0
    n_steps = int(bad["step"].nunique())
    if fwd:
        where = fwd[0]
        born = first_step == start
        cause = f"Module '{where}' produced NaN/Inf in the forward pass at step {first_step}" + (
            " before any update, so the module itself computes it (a log or sqrt of a "
            "negative, a division by zero, an overflowing exp); fix that operation."
            if born
            else "; an earlier update (an exploding step) made its input or weights non-finite."
        )
    elif bwd:
        where = bwd[0]
        born = False
        cause = (
            f"The gradient became NaN/Inf in backward at module '{where}' (step {first_step}): "
            "a step overflowed or the module's derivative is undefined there."
        )
    else:
        where = ""
        born = False
        cause = f"A parameter gradient became NaN/Inf at step {first_step}."
    pres = []
    if not born:
        pres = [
            Prescription("clip-grad-norm", {"max_norm": 1.0}, "cap each step's size"),
            Prescription("lower-lr", {"factor": 0.1}, "smaller steps keep values finite"),
        ]
    evidence: dict[str, Any] = {
        "first_step": first_step,
        "first_forward_module": fwd[0] if fwd else None,
        "first_backward_module": bwd[0] if bwd else None,
        "steps_with_nonfinite": n_steps,
        "born_in_module": born,
    }
    if not nonfinite_loss.empty:
        evidence["first_nonfinite_loss_step"] = int(nonfinite_loss["step"].min())
    return [
        Finding(
            slug="nonfinite-gradient",
            severity="error",
            title=f"Non-finite values from step {first_step}" + (f" in '{where}'" if where else ""),
            cause=cause,
            layers=[where] if where else [],
            evidence=evidence,
            prescriptions=pres,
            step=first_step,
        )
    ]


def _attribution(ctx: Context, e: EndToEnd) -> dict[str, Any]:
    lr_ = _log10(e.ratio)
    c = e.contributions
    out: dict[str, Any] = {
        "log10_ratio": _f(lr_),
        "log10_weights": _f(c.get("weights")),
        "log10_activation_derivative": _f(c.get("activation")),
        "log10_dead_units": _f(c.get("dead_units")),
        "log10_normalisation": _f(c.get("norm")),
        "log10_other": _f(c.get("other")),
        "log10_structural": _f(c.get("structural")),
        "log10_between_modules": _f(c.get("between")),
    }
    # Shares of the judged decay: pooling/reshaping is taken out of the judged ratio.
    judged = {k: v for k, v in c.items() if k != "structural"}
    total = sum(v for v in judged.values() if math.isfinite(v))
    if math.isfinite(total) and abs(total) > 1e-9:
        out["share"] = {
            k: _f(v / total, 3) for k, v in judged.items() if math.isfinite(v) and abs(v) > 1e-3
        }
    deficit = _critical_deficit(ctx)
    if deficit is not None:
        out["log10_weight_scale_vs_critical"] = _f(deficit)
    return out


def _chain_note(e: EndToEnd) -> dict[str, Any]:
    return {
        "gain_product": _f(e.gain_product),
        "plain_chain": e.chain,
        "predicted_product_at_measured_q": _f(e.predicted_product),
    }


def _top_cause(ctx: Context, e: EndToEnd, act: str | None) -> tuple[str, str]:
    """(key, phrase) of the largest contribution to a decay."""
    c = {k: v for k, v in e.contributions.items() if math.isfinite(v) and k != "structural"}
    deficit = _critical_deficit(ctx)
    if e.contributions.get("dead_units", 0.0) == -math.inf:
        return "dead_units", "dead units block the signal completely"
    if not c:
        return "unknown", "the layers on the path"
    key = min(c, key=lambda k: c[k])
    sw2 = _pair_summary(ctx).get("sigma_w2_median")
    if key == "activation":
        bound = _DERIVATIVE_BOUND.get(act or "")
        extra = f" (at most {bound:g})" if bound else ""
        if deficit is not None and deficit < -1 and act in _RELU_LIKE:
            crit = _pair_summary(ctx).get("critical_sigma_w2")
            return "weights", (
                f"the weight scale (sigma_w^2 = {sw2}, below the critical {crit} for {act}, "
                "so the weights do not make up for the activation's derivative)"
            )
        return key, f"the {act or 'activation'} derivative{extra}"
    if key == "weights":
        return key, f"the weight scale (sigma_w^2 = {sw2})" if sw2 else "the weight scale"
    if key == "dead_units":
        return key, "dead units (zero for every sample)"
    if key == "norm":
        return key, "the normalisation layers"
    if key == "between":
        return key, (
            "operations between the hooked modules (functional calls in forward such as "
            "torch.sigmoid or F.tanh, which the Monitor sees only through the signal they "
            "remove, or skip connections)"
        )
    others = [
        str(ctx.infos.get(n, {}).get("type"))
        for n in e.path
        if ctx.infos.get(n) and _category(ctx.infos[n]) == "other"
    ]
    kinds = ", ".join(sorted(set(others))[:3])
    return key, (
        "modules gradmedic has no derivative model for"
        + (f" ({kinds}: an activation it does not know or a custom layer)" if kinds else "")
    )


def rule_depth(ctx: Context) -> list[Finding]:
    """vanishing-gradient, exploding-gradient and poor-init for feed-forward stacks."""
    e = ctx.e2e
    if e is None or e.crossings < 1:
        return []
    # Pooling/reshaping/dropout change the number of entries (or mask them), not how well the
    # layers before them learn: their gain is taken out of the ratio that is judged.
    r = e.ratio
    structural = e.contributions.get("structural", 0.0)
    if structural and math.isfinite(structural) and abs(structural) < 300:
        r = r / 10**structural
    if not math.isfinite(r) and not math.isinf(r):
        return []
    first = _row(ctx, e.first)
    act = _main_activation(ctx, e.path)
    upd, upd_how = _relative_update(ctx, first)
    base: dict[str, Any] = {
        "measured_ratio": _f(e.ratio),
        "judged_ratio": _f(r),
        "layers_crossed": e.crossings,
        "per_layer_factor": _f(r ** (1.0 / e.crossings)) if r > 0 else 0.0,
        "first_layer": e.first,
        "last_layer": e.last,
        "measured_ratio_last_step": _f(ctx.e2e_last.ratio) if ctx.e2e_last else None,
        **_chain_note(e),
        **_pair_summary(ctx),
    }
    if upd is not None:
        base["first_layer_relative_update"] = _f(upd)
        base["relative_update_basis"] = upd_how
    out: list[Finding] = []
    layers = [e.first, e.last]
    norm_driven = e.contributions.get("norm", 0.0) > 0.5 * max(_log10(r), 1e-9)
    if r < VANISH_WARNING or (r < 1e-2 and e.crossings >= 2):
        cannot_learn = upd is not None and upd < LEARN_MIN_UPDATE
        if r < VANISH_ERROR or (r < VANISH_WARNING and cannot_learn):
            sev = "error"
        elif r < VANISH_WARNING:
            sev = "warning"
        else:
            sev = "info"
        key, phrase = _top_cause(ctx, e, act)
        ev = {**base, **_attribution(ctx, e), "first_layer_can_learn": not cannot_learn}
        ratio_txt = "0 (blocked)" if r == 0 else f"{r:.1e}"
        cause = (
            f"The backward signal falls to {ratio_txt} of its value across {e.crossings} layers "
            f"(from '{e.last}' back to '{e.first}'); most of the decay comes from {phrase}"
            + ("; the first layer effectively does not learn." if cannot_learn else ".")
        )
        pres: list[Prescription] = []
        if act in _SATURATING and key == "activation":
            pres.append(Prescription("swap-activation", {"to": "relu"}, "derivative 1, not <=1/4"))
            pres.append(Prescription("reinit", {"scheme": "kaiming"}, "critical init for ReLU"))
        elif key == "dead_units":
            pres.append(Prescription("swap-activation", {"to": "leaky_relu"}, "keeps a slope"))
            pres.append(Prescription("reinit", {"scheme": "kaiming"}, "zero biases, He scale"))
        else:
            pres.append(
                Prescription("reinit", {"scheme": _reinit_scheme(act)}, "critical weight scale")
            )
        if e.crossings >= 8:
            pres.append(Prescription("add-norm", {"kind": "layer"}, "rescales every layer"))
            pres.append(Prescription("add-residual", {}, "identity path for the gradient"))
        out.append(
            Finding(
                slug="vanishing-gradient",
                severity=sev,
                title=f"Vanishing gradient: signal ratio {ratio_txt} over {e.crossings} layers",
                cause=cause,
                layers=layers,
                evidence=ev,
                prescriptions=pres,
                step=e.step,
            )
        )
        out += _poor_init(ctx, e, act, sev, vanishing=True)
    elif r > 1.0:
        per = r ** (1.0 / e.crossings)
        growth = _forward_growth(ctx, e)
        # On a plain chain every layer multiplies the signal, so a per-layer factor >= 1.1 is
        # the chaotic phase. Off a chain (skip connections) the per-layer factor means nothing:
        # the growth is multiplicative only when the forward scale compounds too.
        chaotic = e.chain and per >= CHAOTIC_LAYER_GAIN and r >= CHAOTIC_MIN_GROWTH
        stream = (
            not e.chain
            and r >= CHAOTIC_MIN_GROWTH
            and growth is not None
            and growth >= FORWARD_GROWTH
        )
        if r >= EXPLODE_WARNING or chaotic or stream:
            sev = "error" if r >= EXPLODE_ERROR else "warning"
            if norm_driven and r < EXPLODE_WARNING:
                sev = "info"
            ev = {**base, **_attribution(ctx, e)}
            if growth is not None:
                ev["forward_preact_ms_growth"] = _f(growth)
            if not e.chain and not norm_driven:
                cause = (
                    f"The backward signal grows {r:.1f}x from '{e.last}' back to '{e.first}' "
                    "across a path with skip connections"
                    + (
                        f", and the forward activations' mean square grows {growth:.3g}x: "
                        if growth is not None
                        else ": "
                    )
                    + "each residual block adds a branch as large as its input, so the stream's "
                    "variance multiplies block after block (unnormalised ResNets, Zhang et al. "
                    "2019, Fixup); zero-initialise the last layer of each branch or normalise it."
                )
                pres = [
                    Prescription("zero-init-residual", {}, "each block starts as the identity"),
                    Prescription("add-norm", {"kind": "batch"}, "bounds every branch's scale"),
                    Prescription("clip-grad-norm", {"max_norm": 1.0}, "cap each step"),
                ]
            elif norm_driven:
                cause = (
                    f"The backward signal grows {r:.1f}x across {e.crossings} layers, driven by "
                    "the normalisation layers: batch normalisation without skip connections "
                    "makes gradients explode with depth at initialisation (Yang et al. 2019)."
                )
                pres = [
                    Prescription("add-residual", {}, "identity paths bound the growth"),
                    Prescription("clip-grad-norm", {"max_norm": 1.0}, "cap each step"),
                ]
            else:
                cause = (
                    f"The backward signal grows {r:.1f}x across {e.crossings} layers "
                    f"({per:.2f}x per layer): the weights put the network in the chaotic phase "
                    "(chi1 > 1), so every layer amplifies the gradient."
                )
                pres = [
                    Prescription("reinit", {"scheme": _reinit_scheme(act)}, "critical init"),
                    Prescription("clip-grad-norm", {"max_norm": 1.0}, "cap each step"),
                ]
            out.append(
                Finding(
                    slug="exploding-gradient",
                    severity=sev,
                    title=f"Exploding gradient: signal grows {r:.3g}x over {e.crossings} layers",
                    cause=cause,
                    layers=layers,
                    evidence=ev,
                    prescriptions=pres,
                    step=e.step,
                )
            )
            if not norm_driven:
                out += _poor_init(ctx, e, act, sev, vanishing=False)
    return out


def _forward_growth(ctx: Context, e: EndToEnd) -> float | None:
    """Growth of the forward scale along the path at init: mean square of the pre-activation
    (the Monitor's ``preact_ms``, q) at the last activation module over the first; None with
    fewer than two activation modules measured."""
    qs = [
        float(r["preact_ms"])
        for r in ctx.rows
        if r["module"] in set(e.path)
        and r["category"] == "activation"
        and r.get("preact_ms") is not None
        and math.isfinite(r["preact_ms"])
    ]
    if len(qs) < 2 or qs[0] <= 0:
        return None
    return qs[-1] / qs[0]


def _poor_init(
    ctx: Context, e: EndToEnd, act: str | None, sev: str, *, vanishing: bool
) -> list[Finding]:
    """poor-init when the weight scale explains a large part (>= 1 order of magnitude and a
    quarter of the total) of the vanishing/explosion.

    Where theory has a practical critical scale for the activation (ReLU family, tanh: He /
    Xavier) the weights are judged against it, ``sum 0.5 log10(sw2 / sw2_crit)``: a network
    at its critical scale is not badly initialised whatever else moves its signal (skip
    connections, normalisation, functional ops). Otherwise the measured weight gains count."""
    w = e.contributions.get("weights", 0.0)
    total = _log10(e.ratio) if e.ratio > 0 else -math.inf
    deficit = _critical_deficit(ctx)
    weight_part = w if math.isfinite(w) else 0.0
    practical = act in _RELU_LIKE | {"tanh", "softsign"}
    if deficit is not None and practical:
        weight_part = deficit
    if abs(weight_part) < 1.0:
        return []
    if math.isfinite(total) and abs(total) > 0 and weight_part / total < 0.25:
        return []
    if (weight_part < 0) != vanishing:
        return []
    ps = _pair_summary(ctx)
    sw2 = ps.get("sigma_w2_median")
    if sw2 is None:  # no Linear+activation pair theory models: the weights on the path
        sws = [ctx.infos[n]["sw2"] for n in e.path if "sw2" in ctx.infos.get(n, {})]
        sw2 = _f(statistics.median(sws)) if sws else None
        ps = {**ps, "sigma_w2_median": sw2}
    crit = ps.get("critical_sigma_w2")
    scheme = _reinit_scheme(act)
    cause = (
        f"The initial weight scale (sigma_w^2 = fan_in Var(W) = {sw2}"
        + (f", critical {crit} for {act}" if crit is not None and crit <= 10 else "")
        + f") accounts for 10^{weight_part:.1f} of the end-to-end signal ratio; "
        f"{scheme} initialisation keeps each layer's gain near 1."
    )
    return [
        Finding(
            slug="poor-init",
            severity=sev,
            title="Weight initialisation off the critical scale",
            cause=cause,
            layers=[p.weight for p in ctx.prediction.pairs] or [e.first, e.last],
            evidence={
                "log10_weight_contribution": _f(weight_part),
                "log10_measured_weights": _f(w),
                "log10_weight_scale_vs_critical": _f(deficit),
                **ps,
            },
            prescriptions=[Prescription("reinit", {"scheme": scheme}, "critical weight scale")],
            step=e.step,
        )
    ]


def _act_rows_over_run(ctx: Context, quantity: str) -> dict[str, float]:
    """Per activation module: the larger of the init value and the last recorded value."""
    f = ctx.trace.frame
    sub = f[(f["quantity"] == quantity) & (f["parameter"] == "")]
    if sub.empty:
        return {}
    steps = sorted(sub["step"].unique())
    first = sub[sub["step"] == steps[0]].groupby("module")["value"].last()
    last = sub[sub["step"] == steps[-1]].groupby("module")["value"].last()
    out = {}
    for name in first.index.union(last.index):
        vals = [v for v in (first.get(name), last.get(name)) if v is not None and not pd.isna(v)]
        if vals:
            out[str(name)] = float(max(vals))
    return out


def _act_hits(
    ctx: Context, quantity: str, kinds: Container[str], threshold: float
) -> tuple[dict[str, float], dict[str, float]]:
    """``(per-module values over the run, hits)``: the values of :func:`_act_rows_over_run` for
    ``quantity``, and those of activations of ``kinds`` at or above ``threshold``, in model
    order."""
    fr = _act_rows_over_run(ctx, quantity)
    hits = {
        n: v
        for n, v in fr.items()
        if ctx.infos.get(n, {}).get("activation") in kinds and v >= threshold
    }
    order = sorted(hits, key=lambda n: ctx.infos[n].get("ord", 0))
    return fr, {n: hits[n] for n in order}


def rule_saturation(ctx: Context) -> list[Finding]:
    _, hits = _act_hits(ctx, "saturated_frac", _SATURATING, 0.2)
    if not hits:
        return []
    worst = max(hits.values())
    sev = (
        "error"
        if worst >= SATURATION_ERROR
        else "warning"
        if worst >= SATURATION_WARNING
        else "info"
    )
    names = list(hits)
    act = ctx.infos[names[0]].get("activation")
    dphi = {n: _f(_row(ctx, n).get("dphi_mean")) for n in names}
    return [
        Finding(
            slug="saturating-activation",
            severity=sev,
            title=f"Saturated {act} units (up to {worst:.0%} of a layer)",
            cause=(
                f"Up to {worst:.0%} of the {act} units sit where the derivative is below 1% of "
                "its maximum, so almost no gradient passes them; large pre-activations (weights "
                "or inputs too large) push them there."
            ),
            layers=names,
            evidence={
                "saturated_frac": {n: _f(hits[n], 3) for n in names},
                "dphi_mean_at_init": dphi,
                "threshold": "|phi'| < 1% of max phi'",
            },
            prescriptions=[
                Prescription("swap-activation", {"to": "relu"}, "no saturation for x > 0"),
                Prescription("reinit", {"scheme": "xavier"}, "keeps pre-activations O(1)"),
                Prescription("add-norm", {"kind": "batch"}, "re-centres pre-activations"),
            ],
        )
    ]


def rule_dead(ctx: Context) -> list[Finding]:
    fr, hits = _act_hits(ctx, "dead_frac", _DEAD_CAPABLE, 0.3)
    if not hits:
        return []
    relus = [n for n in fr if ctx.infos.get(n, {}).get("activation") in _DEAD_CAPABLE]
    mean_dead = statistics.fmean(fr[n] for n in relus)
    worst = max(hits.values())
    if worst >= DEAD_ERROR and mean_dead >= DEAD_WARNING:
        sev = "error"
    elif mean_dead >= DEAD_WARNING or worst >= DEAD_ERROR:
        sev = "warning"
    else:
        sev = "info"
    # A convolution's unit is a channel: the Monitor counts a channel dead only when it is zero
    # at every position of every sample, so conv-fed layers need no special case here.
    names = list(hits)
    bias = {}
    for n in names:
        prev = _previous_weight(ctx, n)
        if prev and "b_mean" in ctx.infos[prev]:
            bias[n] = _f(ctx.infos[prev]["b_mean"])
    neg_bias = (
        bool(bias) and statistics.fmean(v for v in bias.values() if isinstance(v, float)) < -0.5
    )
    cause = (
        f"{mean_dead:.0%} of the ReLU units (up to {worst:.0%} in a layer) output zero for "
        "every sample, so their weights get no gradient and cannot recover"
        + (": the biases before them are strongly negative." if neg_bias else ".")
    )
    return [
        Finding(
            slug="dead-relu",
            severity=sev,
            title=f"Dead ReLU units ({mean_dead:.0%} of all, up to {worst:.0%} of a layer)",
            cause=cause,
            layers=names,
            evidence={
                "dead_frac": {n: _f(hits[n], 3) for n in names},
                "mean_dead_frac": _f(mean_dead, 3),
                "bias_mean_before": bias,
            },
            prescriptions=[
                Prescription("swap-activation", {"to": "leaky_relu"}, "slope 0.01 for x < 0"),
                Prescription("reinit", {"scheme": "kaiming"}, "zero biases, He scale"),
            ],
        )
    ]


def _fed_by_conv(ctx: Context, name: str) -> bool:
    prev = _previous_weight(ctx, name)
    return bool(prev) and str(ctx.infos[prev].get("type", "")).startswith("Conv")


def _previous_weight(ctx: Context, name: str) -> str | None:
    o = ctx.infos.get(name, {}).get("ord", 0)
    prev = [(i["ord"], n) for n, i in ctx.infos.items() if "sw2" in i and i.get("ord", 0) < o]
    return max(prev)[1] if prev else None


def _profile(ctx: Context, module: str, step: int) -> tuple[list[float], str]:
    f = ctx.trace.frame
    for q, param in (("hidden_grad_t", "layer0"), ("input_grad_t", "")):
        sub = f[
            (f["quantity"] == q)
            & (f["module"] == module)
            & (f["step"] == step)
            & (f["parameter"] == param)
        ]
        if not sub.empty:
            vals = sub.sort_values("idx")["value"].astype(float).tolist()
            if q == "hidden_grad_t" and vals and vals[-1] > 0:
                return vals, "||dL/dh_t|| (unrolled, layer 0)"
            if q == "input_grad_t" and vals:
                return vals, "||dL/dx_t||"
    return [], ""


def _horizon(vals: list[float], fall: float = 1e-3) -> int:
    """Steps back from the last step over which the signal stays above ``fall`` of its value
    at the last step."""
    ref = vals[-1]
    for k, v in enumerate(reversed(vals)):
        if not (v >= fall * ref):
            return k
    return len(vals)


def rule_rnn(ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    steps = ctx.steps or ctx.trace.steps
    for name, info in sorted(ctx.infos.items(), key=lambda kv: kv[1].get("ord", 0)):
        if info.get("type") not in ("RNN", "LSTM", "GRU") or not steps:
            continue
        mode = info.get("mode", info.get("type"))
        gated = info.get("type") in ("LSTM", "GRU")
        vals, what = _profile(ctx, name, steps[0])
        ev: dict[str, Any] = {"mode": mode, "profile": what}
        verdict = None
        if not gated and info.get("whh_sigma_max") is not None:
            gamma = 1.0  # sup |phi'| for tanh and relu
            lam = float(info["whh_sigma_max"])
            verdict = "vanishing-sufficient" if lam < 1 / gamma else "exploding-possible"
            ev.update(
                pascanu_lambda1=_f(lam),
                pascanu_inv_gamma=1 / gamma,
                pascanu_verdict=verdict,
                spectral_radius=_f(info.get("whh_radius")),
            )
        if "forget_bias_mean" in info:
            ev["forget_bias_mean"] = _f(info["forget_bias_mean"])
        if len(vals) < 2 or not vals[-1] > 0:
            continue
        T = len(vals)
        ratio = vals[0] / vals[-1]
        peak = max(vals) / vals[-1]
        ev.update(
            seq_len=T,
            first_last_ratio=_f(ratio),
            peak_over_last=_f(peak),
            memory_horizon=_horizon(vals),
        )
        # Exploding through time: the signal grows going back in time.
        later = [_profile(ctx, name, s)[0] for s in steps[1:]]
        peaks = [max(v) / v[-1] for v in later if len(v) > 1 and v[-1] > 0]
        if peak >= RNN_EXPLODE_WARNING:
            sev = "error" if peak >= RNN_EXPLODE_ERROR else "warning"
            ev["peak_over_last_later_steps_max"] = _f(max(peaks)) if peaks else None
            out.append(
                Finding(
                    slug="rnn-exploding",
                    severity=sev,
                    title=f"Exploding gradient through time in '{name}' ({peak:.1e}x)",
                    cause=(
                        f"Going back through {T} time steps the gradient grows {peak:.1e}x: the "
                        "recurrent matrix amplifies it at every step"
                        + (
                            f" (largest singular value {ev['pascanu_lambda1']} > 1/gamma = 1, "
                            "the necessary condition of Pascanu et al. 2013)."
                            if verdict == "exploding-possible"
                            else "."
                        )
                    ),
                    layers=[name],
                    evidence=ev,
                    prescriptions=[
                        Prescription("clip-grad-norm", {"max_norm": 1.0}, "Pascanu et al. 2013"),
                        Prescription("orthogonal-recurrent", {}, "singular values 1"),
                    ],
                    step=steps[0],
                )
            )
            continue
        warn_at = GATED_VANISH_WARNING if gated else RNN_VANISH_WARNING
        if ratio < RNN_VANISH_WARNING:
            if gated:
                sev = "warning" if ratio < warn_at else "info"
            else:
                sev = "error" if ratio < RNN_VANISH_ERROR else "warning"
            horizon = ev["memory_horizon"]
            pres: list[Prescription] = []
            if not gated:
                pres = [
                    Prescription("replace-rnn", {"to": "lstm"}, "gated cell path"),
                    Prescription("forget-bias", {"value": 1.0}, "remember by default"),
                    Prescription("orthogonal-recurrent", {}, "norm-preserving recurrence"),
                ]
                why = "each step multiplies it by W_hh^T diag(phi'), whose norm is below 1" + (
                    f" (largest singular value {ev['pascanu_lambda1']} < 1/gamma: "
                    "sufficient for vanishing, Pascanu et al. 2013)"
                    if verdict == "vanishing-sufficient"
                    else " on average (saturated units shrink it further)"
                )
            else:
                fb = info.get("forget_bias_mean")
                target = 1.0 if fb is None or fb < 0.5 else 2.0
                pres = [Prescription("forget-bias", {"value": target}, "open the forget gate")]
                why = (
                    f"the {'forget' if mode == 'LSTM' else 'update'} gate starts near 0.5"
                    + (f" (forget bias {fb:.2f})" if fb is not None else "")
                    + ", halving the cell path at every step"
                )
            out.append(
                Finding(
                    slug="rnn-long-range-vanishing",
                    severity=sev,
                    title=f"Gradient vanishes through time in '{name}' ({ratio:.1e} over {T} steps)",
                    cause=(
                        f"The gradient reaching the first of {T} time steps is {ratio:.1e} of the "
                        f"last one's (memory horizon {horizon} steps): {why}."
                    ),
                    layers=[name],
                    evidence=ev,
                    prescriptions=pres,
                    step=steps[0],
                )
            )
        elif _predicted_time_decay(info, T) is not None:
            # The measured profile did not fall, yet the recurrence contracts: with a loss on
            # every time step each h_t receives its own step's gradient, which hides how little
            # of the late steps' gradient reaches it. Theory's estimate is a note, not an alarm.
            rho = float(info["whh_radius"])
            lg = _predicted_time_decay(info, T)
            ev.update(spectral_radius=_f(rho), predicted_log10_decay=_f(lg), basis="theory")
            out.append(
                Finding(
                    slug="rnn-long-range-vanishing",
                    severity="info",
                    title=f"Recurrence of '{name}' contracts: 10^{lg:.0f} over {T} steps (theory)",
                    cause=(
                        f"W_hh has spectral radius {rho:.3g} < 1, so a gradient sent back through "
                        f"{T - 1} steps shrinks like {rho:.2g}^{T - 1} = 10^{lg:.1f} (tanh' <= 1 "
                        "only shrinks it more); the measured profile stays level because every "
                        "step's own loss feeds it, so dependencies that long cannot be learned."
                    ),
                    layers=[name],
                    evidence=ev,
                    prescriptions=[
                        Prescription("replace-rnn", {"to": "lstm"}, "gated cell path"),
                        Prescription("orthogonal-recurrent", {}, "norm-preserving recurrence"),
                    ],
                    step=steps[0],
                )
            )
        elif verdict == "exploding-possible" and float(info["whh_sigma_max"]) >= 2.0:
            out.append(
                Finding(
                    slug="rnn-exploding",
                    severity="info",
                    title=f"Recurrent matrix of '{name}' can amplify gradients",
                    cause=(
                        f"The largest singular value of W_hh is {ev['pascanu_lambda1']} > 1/gamma"
                        " = 1, the necessary condition for exploding gradients (Pascanu et al. "
                        "2013); it did not explode in this run."
                    ),
                    layers=[name],
                    evidence=ev,
                    prescriptions=[Prescription("clip-grad-norm", {"max_norm": 1.0}, "safety")],
                    step=steps[0],
                )
            )
    return out


def _predicted_time_decay(info: dict[str, Any], T: int) -> float | None:
    """log10 of ``rho(W_hh)^(T-1)`` for a vanilla RNN whose recurrence contracts enough to lose
    more than 1e3 over the sequence; None otherwise (gated cells, rho >= 1, short sequences)."""
    rho = info.get("whh_radius")
    if info.get("type") != "RNN" or rho is None or not (0 < float(rho) < 1) or T < 2:
        return None
    lg = (T - 1) * math.log10(float(rho))
    return lg if lg < math.log10(RNN_VANISH_WARNING) else None


#: A loss that rises by this factor within 3 steps after a gradient spike marks the spike harmful.
LOSS_JUMP = 1.5


def rule_spikes(ctx: Context) -> list[Finding]:
    f = ctx.trace.frame
    g = f[(f["quantity"] == "grad_norm_total") & (f["module"] == "")].sort_values("step")
    vals = [(int(s), float(v)) for s, v in zip(g["step"], g["value"], strict=True)]
    finite = [(s, v) for s, v in vals if math.isfinite(v) and v > 0]
    if len(finite) < 5:
        return []
    med = statistics.median(v for _, v in finite)
    # The first step is an init transient (a large initial loss), judged by the depth and RNN
    # rules; spikes are jumps during training.
    spikes = [(s, v) for s, v in finite[1:] if v >= SPIKE_FACTOR * med]
    if not spikes:
        return []
    top = max(spikes, key=lambda sv: sv[1])
    clip = float(f"{med:.2g}")
    # A spike matters when it throws the weights off the loss surface: the loss after it rises
    # (or stops being finite). A large step that the loss shrugs off is only a note.
    losses = f[(f["quantity"] == "loss") & (f["module"] == "")].sort_values("step")
    loss_at = dict(zip(losses["step"].astype(int), losses["value"].astype(float), strict=True))
    harmful = []
    for s, _ in spikes:
        before = [loss_at[k] for k in range(s - 3, s + 1) if k in loss_at]
        after = [loss_at[k] for k in range(s + 1, s + 4) if k in loss_at]
        if before and after:
            ref = statistics.median(before)
            if any(not math.isfinite(v) or v > LOSS_JUMP * ref for v in after):
                harmful.append(s)
    severity = "warning" if harmful or not loss_at else "info"
    return [
        Finding(
            slug="gradient-spikes",
            severity=severity,
            title=f"Gradient-norm spikes ({top[1] / med:.0f}x the median)",
            cause=(
                f"The total gradient norm jumped to {top[1]:.3g} at step {top[0]}, "
                f"{top[1] / med:.0f}x its median {med:.3g}: steps that large throw the weights "
                "off the loss surface (a cliff, Pascanu et al. 2013)."
            ),
            layers=[],
            evidence={
                "median_grad_norm": _f(med),
                "spike_steps": [s for s, _ in spikes][:20],
                "max_grad_norm": _f(top[1]),
                "factor": SPIKE_FACTOR,
                "loss_jumped_after": harmful[:20],
            },
            prescriptions=[
                Prescription("clip-grad-norm", {"max_norm": clip}, "clip at the median norm"),
                Prescription("autoclip", {"percentile": 10}, "adaptive threshold"),
            ],
            step=top[0],
        )
    ]


RULES = (rule_nonfinite, rule_depth, rule_saturation, rule_dead, rule_rnn, rule_spikes)


def run_rules(ctx: Context) -> list[Finding]:
    """Apply every rule; findings sorted by severity (worst first), then rule order."""
    from gradmedic.diagnosis.findings import severity_rank

    found: list[Finding] = []
    for rule in RULES:
        found.extend(rule(ctx))
    return sorted(found, key=lambda fd: -severity_rank(fd.severity))
