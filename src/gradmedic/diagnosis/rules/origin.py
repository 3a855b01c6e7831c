"""Where a NaN/Inf was born and what made it, from the trace alone (used by the non-finite rule).

* The run's start: steps recorded before the first optimizer update of a run (``meta["runs"]``
  gives each appended run's first step). Nothing was updated yet, so nothing an update did can
  explain a value that is non-finite there.
* The module's weights: its ``param_norm`` rows at the run's earlier steps (recorded after each
  update). Finite weights and a finite input (it is the first bad module in forward order) mean
  the module computed NaN/Inf itself: an operation at a boundary or an overflow.
* The loss: a ``nonfinite_loss`` row, a non-finite loss value, or a NaN gradient arriving at the
  first module in backward order (nothing hooked lies between it and the loss; not under a
  GradScaler, whose scaled gradients overflow by design). A finite loss
  value with a non-finite gradient is an undefined derivative at a boundary (sqrt at 0, the
  norm of a zero vector); a non-finite value is an undefined value (log 0 = -inf, 0 * -inf,
  x / 0) or an overflow.
* The growth before it: the global gradient norm multiplying steadily from step to step is an
  exploding update (divergence), not an operation.
* Theory's forward scale (kind "weight-scale overflow"): the length map
  ``q^l = sw2 E[phi(sqrt(q^{l-1}) z)^2] + sb2`` (Poole et al. 2016, eq. 3) from the module
  table's ``sw2`` predicts the activations' mean square layer by layer; the largest of ~1e4
  Gaussian entries is ~4 standard deviations, so outputs pass the dtype's largest value where
  ``log10 sqrt(q) + log10 4 >= log10 max``.

Example::

    >>> loss_origin(ctx, 0, ["3"])                              # doctest: +SKIP
    'value'
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.nn.taxonomy import module_category
from gradmedic.theory import e_phi_sq
from gradmedic.theory.gains import theory_activation
from gradmedic.trace.schema import Quantity

__all__ = [
    "DIVERGE_MIN_STEPS",
    "DIVERGE_PER_STEP",
    "LOG10_MAX",
    "ForwardScale",
    "forward_scale",
    "growth_before",
    "loss_origin",
    "params_finite_before",
    "run_start",
]

#: log10 of the largest finite value per dtype (float32 3.4e38, float16 65504).
LOG10_MAX = {"float32": 38.53, "bfloat16": 38.53, "float16": 4.816, "float64": 308.25}
#: log10 of the largest of ~1e4 standard Gaussian entries, relative to their std (~4).
_PEAK = math.log10(4.0)
#: The global gradient norm growing at least this much at every step, for at least
#: :data:`DIVERGE_MIN_STEPS` steps in a row, is a divergence (SGD's error factor
#: ``|1 - lr lambda|`` above 2: the step overshoots the minimum by more than its distance).
DIVERGE_PER_STEP = 2.0
DIVERGE_MIN_STEPS = 2
NONFINITE_LOSS = "nonfinite_loss"


def run_start(ctx: Context, step: int) -> int:
    """The first step of the run (``meta["runs"]``) that ``step`` belongs to."""
    runs = ctx.trace.meta.get("runs") if isinstance(ctx.trace.meta, dict) else None
    starts = [
        int(r["first_step"])
        for r in runs or []
        if isinstance(r, dict) and r.get("first_step") is not None
    ]
    starts = [s for s in starts if s <= step]
    if starts:
        return max(starts)
    return int(ctx.trace.steps[0]) if ctx.trace.steps else 0


def params_finite_before(ctx: Context, module: str, step: int, start: int) -> bool:
    """Whether ``module``'s weights were finite when step ``step`` ran: every ``param_norm``
    row of it recorded in ``[start, step)`` (after those steps' updates) is finite. At the
    run's first step the weights are the initial ones, finite unless the modules table says
    otherwise."""
    f = ctx.trace.frame
    rows = f[
        (f["quantity"] == Quantity.PARAM_NORM)
        & (f["module"] == module)
        & (f["step"] >= start)
        & (f["step"] < step)
    ]
    if not rows.empty:
        return bool(rows["value"].astype(float).map(math.isfinite).all())
    sw2 = ctx.infos.get(module, {}).get("sw2")
    return not (isinstance(sw2, float) and math.isinf(sw2))


def growth_before(ctx: Context, step: int, start: int) -> dict[str, Any] | None:
    """The geometric growth of the global gradient norm that leads up to ``step``: the last
    run of finite values in ``[start, step]`` each at least :data:`DIVERGE_PER_STEP` times the
    one before, over at least :data:`DIVERGE_MIN_STEPS` steps (one jump is a spike, not a
    divergence), whose values before the last are already :data:`DIVERGE_PER_STEP` times the
    median before the growth (a lone spike after a dip in flat norms is a spike, not a
    two-point growth). ``{"per_step", "first_step", "first_norm", "last_step", "last_norm",
    "baseline_norm"}`` (``baseline_norm``: the median norm before the growth began, None when
    it began at the run's start); None without such a growth."""
    pts = [
        (s, v)
        for s, v in ctx.trace.series(Quantity.GRAD_NORM_TOTAL)
        if start <= s <= step and math.isfinite(v) and v > 0
    ]
    k = len(pts) - 1
    while k > 0 and pts[k][1] >= DIVERGE_PER_STEP * pts[k - 1][1]:
        k -= 1
    if len(pts) - 1 - k < DIVERGE_MIN_STEPS:
        return None
    (s0, v0), (s1, v1) = pts[k], pts[-1]
    per = (v1 / v0) ** (1.0 / (s1 - s0))
    before = [v for _, v in pts[:k]]
    if before and pts[-2][1] < DIVERGE_PER_STEP * statistics.median(before):
        return None  # flat norms, a dip, then one jump: a spike
    return {
        "per_step": float(f"{per:.3g}"),
        "first_step": s0,
        "first_norm": float(f"{v0:.3g}"),
        "last_step": s1,
        "last_norm": float(f"{v1:.3g}"),
        "baseline_norm": float(f"{statistics.median(before):.2g}") if before else None,
    }


def _loss_at(ctx: Context, step: int) -> float | None:
    return dict(ctx.trace.series(Quantity.LOSS)).get(step)


def loss_origin(ctx: Context, step: int, bwd: list[str]) -> str | None:
    """``value`` (the loss value is NaN/Inf), ``derivative`` (the loss is finite, its gradient
    at the model's output is not) or None (the loss is not where the NaN was born); call it
    only when no module's forward output was non-finite at ``step``."""
    f = ctx.trace.frame
    at = f[f["step"] == step]
    loss = _loss_at(ctx, step)
    flagged = bool((at["quantity"] == NONFINITE_LOSS).any())
    if loss is not None and not math.isfinite(loss):
        return "value"
    if flagged:
        return "derivative" if loss is not None else "value"
    amp = bool((at["quantity"] == Quantity.AMP_UNSCALED).any())
    if bwd and not amp:  # a GradScaler's scaled gradient overflows by design: not the loss
        so = at[(at["quantity"] == Quantity.SIGNAL_OUT) & (at["module"] == bwd[0])]["value"]
        if not so.empty and not math.isfinite(float(so.iloc[-1])):
            return "derivative"
    return None


@dataclass
class ForwardScale:
    """Theory's forward scale at init: ``log10_rms`` (log10 of the root mean square of each
    modelled module's output, model order), the median ``log10_growth`` per weight layer, the
    predicted first module past the dtype's range, the dtype and its ``log10_max``, and the
    input mean square ``q0`` it started from."""

    log10_rms: dict[str, float]
    log10_growth: float
    first_over: str | None
    dtype: str
    log10_max: float
    q0: float


def _dtype(ctx: Context) -> str:
    meta = ctx.trace.meta if isinstance(ctx.trace.meta, dict) else {}
    d = str(meta.get("dtype") or (meta.get("data_stats") or {}).get("model_dtype") or "float32")
    return d.replace("torch.", "")


def forward_scale(ctx: Context, q0: float | None = None) -> ForwardScale | None:
    """Walk the modules in model order with the length map (module docstring) from the input
    mean square ``q0`` (default 1: standardised inputs): a weight layer maps ``q`` to
    ``sw2 q + sb2``, an activation ``q`` to ``E[phi(sqrt(q) z)^2]``, a normalisation layer
    back to 1. Stops at a recurrent layer or an unmodelled activation. None without weight
    layers."""
    q = start = 1.0 if q0 is None or not q0 > 0 else float(q0)
    dtype = _dtype(ctx)
    lmax = LOG10_MAX.get(dtype, LOG10_MAX["float32"])
    rms: dict[str, float] = {}
    growth: list[float] = []
    first_over, prev_w = None, None
    for name, info in sorted(ctx.infos.items(), key=lambda kv: kv[1].get("ord", 0)):
        cat = module_category(info)
        before = q
        if cat == "weight":
            sw2 = info.get("sw2")
            if sw2 is None or not math.isfinite(float(sw2)):
                return None
            q = float(sw2) * q + float(info.get("sb2") or 0.0)
        elif cat == "activation":
            spec = theory_activation(info)
            if spec is None:
                break
            q = float(e_phi_sq(spec, q)) if math.isfinite(q) and q < 1e300 else q
        elif cat == "norm":
            q = 1.0
        elif cat == "recurrent":
            break
        else:
            continue
        lg = 0.5 * math.log10(q) if q > 0 else -math.inf
        rms[name] = lg
        if cat == "weight" and before > 0 and q > 0:
            # per layer: from one weight layer's output to the next (activation included)
            growth.append(lg - prev_w if prev_w is not None else 0.5 * math.log10(q / before))
            prev_w = lg
        if first_over is None and lg + _PEAK >= lmax:
            first_over = name
    if not growth:
        return None
    growth = growth[1:] or growth  # the first layer's input is the data, not a layer output
    return ForwardScale(rms, statistics.median(growth), first_over, dtype, lmax, start)
