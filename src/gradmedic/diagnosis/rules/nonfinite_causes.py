"""The causes the non-finite rule names, each with the fix its mechanism calls for.

Each function returns ``(origin, cause, prescriptions, evidence)`` for one mechanism
(:mod:`gradmedic.diagnosis.rules.origin` decides which applies):

* :func:`weight_scale`: overflow from the initial weight scale; re-initialise (the scheme for
  the activation), with the forward growth per layer predicted before and after.
* :func:`loss_born`: a NaN born in the loss; an epsilon, a clamp or a fused loss (written in the
  user's code, so ``manual``), never clipping or a smaller learning rate, which cannot change
  an undefined value.
* :func:`divergence`: overflow after exploding updates; a learning rate cut sized from the
  measured growth where a model gives it (SGD on a quadratic, i.e. one weight layer under a
  squared loss, multiplies the error by ``|1 - lr lambda|`` per step, so a growth ``G`` means
  ``lr lambda ~ G + 1``; tenfold otherwise), standardised data when the data are unscaled
  (:mod:`gradmedic.diagnosis.datascale`), and clipping only at a norm measured before the
  growth (Pascanu et al. 2013: a threshold from a stationary run).
* :func:`module_born`: a module that computes NaN/Inf from finite inputs and finite weights.

Example::

    >>> loss_born(ctx, 0, "value")[0]                            # doctest: +SKIP
    'loss'
"""

from __future__ import annotations

import math
from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.datascale import unscaled
from gradmedic.diagnosis.finding import Prescription
from gradmedic.diagnosis.prescribe import fans, scheme_sw2
from gradmedic.diagnosis.rules._shared import num, reinit_scheme
from gradmedic.diagnosis.rules.origin import ForwardScale
from gradmedic.theory import e_phi_sq

__all__ = ["divergence", "growth_remedies", "loss_born", "module_born", "weight_scale"]

Cause = tuple[str, str, list[Prescription], dict[str, Any]]

_LOSS_OPS = {
    "value": (
        "the loss value itself is NaN/Inf although every module's output was finite: an "
        "undefined value in the loss (log of 0 is -inf and 0 * -inf is NaN; a division by "
        "zero; a log or sqrt of a negative)"
    ),
    "derivative": (
        "the loss value is finite but its gradient with respect to the model output is "
        "NaN/Inf: a derivative undefined at a boundary (sqrt at 0 has infinite slope, the norm "
        "of a zero vector gives 0/0, |x|^p with p < 1 at 0)"
    ),
}


def _meta(ctx: Context) -> dict[str, Any]:
    return ctx.trace.meta if isinstance(ctx.trace.meta, dict) else {}


def _fused(loss_spec: str) -> str:
    s = loss_spec.lower()
    if "poisson" in s:
        return "PoissonNLLLoss(log_input=True)"
    if "bce" in s or "binary" in s:
        return "BCEWithLogitsLoss"
    if "nll" in s or "cross" in s or s.split(":")[-1] == "ce":
        return "CrossEntropyLoss"
    return "the fused form on logits or log-rates"


def loss_born(ctx: Context, step: int, kind: str) -> Cause:
    """A NaN/Inf born in the loss at ``step`` (``kind``: ``value`` or ``derivative``)."""
    spec = str(_meta(ctx).get("loss_spec") or "")
    fused = _fused(spec)
    where = "log(x + eps), x / (d + eps)" if kind == "value" else "sqrt(x + eps), norm(x + eps)"
    pres = [
        Prescription("loss-epsilon", {"eps": 1e-8}, f"write {where} in the loss", manual=True),
        Prescription(
            "loss-clamp", {"min": 1e-8}, "clamp the input of log/sqrt/division", manual=True
        ),
        Prescription("fused-loss", {"use": fused}, "computes the log in closed form", manual=True),
    ]
    cause = (
        f"The NaN is born in the loss at step {step}: {_LOSS_OPS[kind]}. No update caused it, "
        "so clipping or a smaller learning rate cannot help; guard the operation with an "
        f"epsilon or a clamp, or use {fused}."
    )
    ev = {"origin": "loss", "loss_operation": kind, "loss_spec": spec or None}
    return "loss", cause, pres, ev


def growth_remedies(
    ctx: Context, growth: dict[str, Any]
) -> tuple[str, list[Prescription], dict[str, Any]]:
    """For a geometric growth of the gradient norm (:func:`~gradmedic.diagnosis.rules.origin.
    growth_before`): the sentence on unscaled data ("" when the data are scaled or unknown),
    the prescriptions (standardised data, a learning-rate cut sized from the growth, clipping
    only at a norm measured before the growth) and evidence."""
    g = float(growth["per_step"])
    stats = _meta(ctx).get("data_stats") or {}
    bad = unscaled(stats)
    lr = ctx.lr
    text = ""
    pres: list[Prescription] = []
    if bad:
        text = (
            f"; the data are not standardised ({', '.join(bad)}): init schemes and learning "
            "rates assume unit scale, and the loss's curvature grows with E[x^2], so each SGD "
            "step overshoots"
        )
        pres.append(
            Prescription(
                "standardise-data",
                {"inputs": True, "targets": bool(stats.get("target_float"))},
                "zero mean, unit variance for inputs and targets",
                predicted={"input_ms_after": 1.0, "basis": "curvature ~ 2 E[x^2] = 2"},
                manual=True,
            )
        )
    # The quadratic model holds for one weight layer under a squared loss and plain SGD (the
    # gradient is linear in the weights); deeper nets compound the growth over their layers.
    weighted = sum(1 for i in ctx.infos.values() if i.get("sw2") is not None)
    quadratic = (ctx.optimizer or "sgd") == "sgd" and weighted == 1
    factor = 10.0 ** math.floor(math.log10(1.0 / (g + 1.0))) if quadratic else 0.1
    pred = (
        {"lr_x_curvature_after": num((g + 1.0) * factor), "basis": "SGD on a quadratic"}
        if quadratic
        else {"basis": "no model for a deep net or this optimizer: retrain and measure"}
    )
    pres.append(
        Prescription(
            "lower-lr",
            {"factor": factor},
            "|1 - lr lambda| < 1: the error contracts"
            + (f" (lr {lr:g} -> {lr * factor:.2g})" if lr else ""),
            predicted=pred,
        )
    )
    if growth.get("baseline_norm"):
        pres.append(
            Prescription(
                "clip-grad-norm",
                {"max_norm": growth["baseline_norm"]},
                "the median norm before the growth began",
            )
        )
    ev: dict[str, Any] = {"growth_per_step": num(g), "unscaled_data": bad}
    if stats:
        ev["data_stats"] = stats
    return text, pres, ev


def divergence(ctx: Context, step: int, growth: dict[str, Any], where: str) -> Cause:
    """Values at ``where`` overflowed at ``step`` after the updates grew the gradient norm
    ``growth["per_step"]`` times per step."""
    text, pres, ev = growth_remedies(ctx, growth)
    cause = (
        f"The updates exploded: the global gradient norm grew {growth['per_step']:.3g}x per "
        f"step from {growth['first_norm']:.3g} at step {growth['first_step']} to "
        f"{growth['last_norm']:.3g} at step {growth['last_step']}, until {where} overflowed at "
        f"step {step}{text}."
    )
    return "updates", cause, pres, {"origin": "updates", **ev}


def weight_scale(ctx: Context, step: int, where: str | None, fs: ForwardScale) -> Cause:
    """Overflow at ``step`` (first non-finite module ``where``, None when only the loss or a
    gradient was) predicted by the forward scale ``fs`` of the initial weights."""
    weights = [i for i in ctx.infos.values() if i.get("sw2") is not None]
    sw2s = sorted(float(i["sw2"]) for i in weights)
    acts = [i.get("activation") for i in ctx.infos.values() if i.get("activation")]
    act = max(set(acts), key=acts.count) if acts else None
    spec = act or "linear"
    scheme = reinit_scheme(act)
    news = sorted(v for i in weights if (v := scheme_sw2(scheme, act, *fans(i))))
    after = None
    if news:
        try:  # the median layer after re-initialisation, at q = 1
            after = 0.5 * math.log10(news[len(news) // 2] * float(e_phi_sq(spec, 1.0)))
        except Exception:
            after = None
    per = 10**fs.log10_growth
    limit = f"{fs.dtype}'s largest value 1e{fs.log10_max:.1f}"
    at = f" at '{fs.first_over}'" if fs.first_over else " in the loss (its square)"
    cause = (
        f"Weight-scale overflow: the initial weights (sigma_w^2 = fan_in Var(W) = "
        f"{sw2s[len(sw2s) // 2]:.4g} per layer) multiply the activations' scale by {per:.3g}x "
        f"per layer (length map q' = sigma_w^2 E[phi^2]), so theory puts them past {limit}"
        f"{at}; the first non-finite value was measured "
        + (f"at '{where}'" if where else "in the loss or a gradient")
        + f" at step {step}, before the weights had moved. No operation is at fault: "
        f"re-initialise with {scheme} ({spec})."
    )
    pred = {"log10_growth_per_layer": num(after), "basis": "length map at q = 1"}
    pres = [
        Prescription("reinit", {"scheme": scheme}, f"critical scale for {spec}", predicted=pred)
    ]
    ev = {
        "origin": "weight-scale",
        "predicted_growth_per_layer": num(per),
        "predicted_first_overflow": fs.first_over,
        "dtype": fs.dtype,
        "sigma_w2_median": num(sw2s[len(sw2s) // 2]),
    }
    return "weight-scale", cause, pres, ev


def module_born(ctx: Context, step: int, module: str, fresh: bool) -> Cause:
    """Module ``module`` computed NaN/Inf at ``step`` from finite inputs and finite weights."""
    t = str(ctx.infos.get(module, {}).get("type", ""))
    when = "before any update" if fresh else "with finite weights"
    if "Attention" in t:
        op = (
            "a row whose keys are all masked (a fully padded sequence): softmax over only -inf "
            "scores is 0/0 = NaN"
        )
        pres = [
            Prescription(
                "mask-guard",
                {},
                "let at least one key through per row, or drop fully padded rows",
                manual=True,
            )
        ]
    else:
        op = (
            "an operation at a boundary (a log or sqrt of 0 or a negative, a division by zero, "
            "an exp that overflows)"
        )
        pres = []
    cause = (
        f"Module '{module}' ({t}) produced NaN/Inf in the forward pass at step {step} {when}, "
        f"from a finite input: it computes the value itself, {op}. Clipping or a smaller "
        "learning rate cannot help; fix that operation."
    )
    return "module", cause, pres, {"origin": "module"}
