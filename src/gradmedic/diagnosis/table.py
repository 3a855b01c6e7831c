"""The per-layer table and the end-to-end backward-signal measurements a diagnosis is built on.

Backpropagation multiplies per-layer factors (Glorot & Bengio 2010, eq. 6): the signal that
reaches module ``k``'s input is its output signal times the module's gain,
``||dL/dx_k|| = alpha_k ||dL/dy_k||``. Along a plain chain the gains multiply to the
end-to-end ratio

    r = ||dL/dh^first|| / ||dL/dh^last||  (signal at the output of the first and the last
        weighted layer),

which is the number mean-field theory predicts as ``sqrt(chi1)^(L-1)`` (Schoenholz et al.
2017, Sec. 5). ``r`` is judged, never the ratio of weight gradients: with equal widths those can
be equal across layers while ``r`` has vanished (Glorot & Bengio 2010, eq. 14).

Example::

    >>> from gradmedic.train import train, TrainConfig       # doctest: +SKIP
    >>> run = train(model, "digits", TrainConfig(steps=3))    # doctest: +SKIP
    >>> rows = layer_table(run.trace)                        # doctest: +SKIP
    >>> rows[0]["module"], rows[0]["gain"]                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..trace import Trace
from .predict import module_predicted_gain

__all__ = [
    "NORM_TYPES",
    "RNN_TYPE_NAMES",
    "STRUCTURAL_TYPES",
    "EndToEnd",
    "end_to_end",
    "layer_table",
    "module_category",
    "module_infos",
    "pow10",
    "signal_steps",
]

NORM_TYPES = frozenset(
    {
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "LayerNorm",
        "GroupNorm",
        "InstanceNorm1d",
        "InstanceNorm2d",
        "InstanceNorm3d",
        "RMSNorm",
        "LocalResponseNorm",
    }
)
RNN_TYPE_NAMES = frozenset({"RNN", "LSTM", "GRU"})
#: Parameter-free modules that move, pool, pad or mask entries but apply no nonlinearity: their
#: backward gain reflects how many entries the signal is spread over (an 8x8 average pool
#: divides ``||dL/dx||`` by 8 while every weight upstream still receives the summed gradient),
#: not how well the layers before them learn, so the depth rules take it out of the judged ratio.
STRUCTURAL_TYPES = frozenset(
    {
        "Flatten",
        "Unflatten",
        "Identity",
        "Dropout",
        "Dropout1d",
        "Dropout2d",
        "Dropout3d",
        "AlphaDropout",
        "FeatureAlphaDropout",
        "MaxPool1d",
        "MaxPool2d",
        "MaxPool3d",
        "AvgPool1d",
        "AvgPool2d",
        "AvgPool3d",
        "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d",
        "AdaptiveMaxPool1d",
        "AdaptiveMaxPool2d",
        "AdaptiveMaxPool3d",
        "LPPool1d",
        "LPPool2d",
        "FractionalMaxPool2d",
        "Upsample",
        "UpsamplingNearest2d",
        "UpsamplingBilinear2d",
        "PixelShuffle",
        "PixelUnshuffle",
        "ChannelShuffle",
        "ZeroPad1d",
        "ZeroPad2d",
        "ZeroPad3d",
        "ConstantPad1d",
        "ConstantPad2d",
        "ConstantPad3d",
        "ReflectionPad1d",
        "ReflectionPad2d",
        "ReflectionPad3d",
        "ReplicationPad1d",
        "ReplicationPad2d",
        "ReplicationPad3d",
        "CircularPad1d",
        "CircularPad2d",
        "CircularPad3d",
    }
)

_TABLE_QUANTITIES = (
    "grad_norm",
    "signal_out",
    "signal_in",
    "gain",
    "dphi_mean",
    "dphi_sq_mean",
    "saturated_frac",
    "dead_frac",
    "preact_ms",
    "act_mean",
    "act_std",
)


def pow10(x: float) -> float:
    """``10**x`` that returns 0 or inf instead of raising on under/overflow."""
    if x == -math.inf or x < -400:
        return 0.0
    if x > 400:
        return math.inf
    return 10.0**x


def module_infos(trace: Trace) -> dict[str, dict[str, Any]]:
    """``name -> {"type", "activation", "ord", "n_params", **info}`` from the trace's modules table."""
    out: dict[str, dict[str, Any]] = {}
    mods = trace.modules
    if mods is None or mods.empty:
        return out
    for row in mods.itertuples(index=False):
        try:
            info = json.loads(row.info) if isinstance(row.info, str) and row.info else {}
        except json.JSONDecodeError:
            info = {}
        act = row.activation if isinstance(row.activation, str) else None
        out[str(row.name)] = {
            "type": str(row.type),
            "activation": act,
            "ord": int(row.ord),
            "n_params": int(row.n_params),
            **info,
        }
    return out


def module_category(info: dict[str, Any]) -> str:
    """``weight`` (Linear/Conv), ``recurrent``, ``activation``, ``norm``, ``structural``
    (pooling, reshaping, padding, dropout: :data:`STRUCTURAL_TYPES`) or ``other`` (modules
    gradmedic has no model of: an activation it does not know, a custom parameter-free layer,
    an embedding)."""
    t = info.get("type", "")
    if t in RNN_TYPE_NAMES:
        return "recurrent"
    if "sw2" in info:
        return "weight"
    if info.get("activation"):
        return "activation"
    if t in NORM_TYPES:
        return "norm"
    if t in STRUCTURAL_TYPES:
        return "structural"
    return "other"


def signal_steps(trace: Trace) -> list[int]:
    """Recorded steps that carry backward-signal rows, ascending."""
    f = trace.frame
    if f.empty:
        return []
    s = f.loc[f["quantity"] == "signal_out", "step"].unique()
    return sorted(int(x) for x in s)


def _step_table(trace: Trace, step: int) -> pd.DataFrame:
    f = trace.frame
    sub = f[(f["step"] == step) & (f["parameter"] == "") & (f["module"] != "")]
    sub = sub[sub["quantity"].isin(_TABLE_QUANTITIES)]
    if sub.empty:
        return pd.DataFrame()
    return sub.pivot_table(index="module", columns="quantity", values="value", aggfunc="last")


def _weight_stats(trace: Trace, step: int) -> dict[str, dict[str, float]]:
    """Per module: ``weight`` (else ``weight_hh_l0``) grad_norm and param_norm at ``step``,
    ``weight_grad_norm`` (the grad_norm of a parameter named exactly ``weight``), and the
    median update ratio of the weight over all recorded steps."""
    f = trace.frame
    w = f[f["parameter"].isin(["weight", "weight_hh_l0"])]
    out: dict[str, dict[str, float]] = {}
    at = w[w["step"] == step]
    for row in at.itertuples(index=False):
        if row.quantity in ("grad_norm", "param_norm"):
            out.setdefault(row.module, {})[row.quantity] = float(row.value)
            if row.quantity == "grad_norm" and row.parameter == "weight":
                out[row.module]["weight_grad_norm"] = float(row.value)
    upd = w[w["quantity"] == "update_ratio"]
    if not upd.empty:
        med = upd.groupby("module")["value"].median()
        for name, v in med.items():
            out.setdefault(str(name), {})["update_ratio"] = float(v)
    return out


def layer_table(trace: Trace, step: int | None = None) -> list[dict[str, Any]]:
    """One row per hooked module in model order at ``step`` (default: the first recorded step,
    i.e. the initialisation).

    Keys: ``module``, ``type``, ``category`` (weight / recurrent / activation / norm /
    structural / other),
    ``activation``, ``grad_norm`` (root of summed squares of the module's parameter gradients),
    ``weight_grad_norm`` (``||dL/dW||`` of its ``weight`` alone, else ``grad_norm``),
    ``param_norm`` and ``grad_to_weight`` = ``||dL/dW|| / ||W||`` of its weight,
    ``update_ratio`` (median ``||dW_step|| / ||W||`` over the run, with an optimizer),
    ``signal_out`` = ``||dL/dy||``, ``signal_in`` = ``||dL/dx||``, ``gain`` =
    signal_in / signal_out, the activation statistics ``dphi_mean``, ``dphi_sq_mean``,
    ``saturated_frac``, ``dead_frac``, ``preact_ms`` (mean square of the pre-activation, ``q``),
    the init facts ``sw2`` = fan_in Var(W), ``sb2``, ``fan_in``, ``fan_out``, and
    ``predicted_gain`` (see :func:`gradmedic.diagnosis.predict.module_predicted_gain`:
    ``sqrt(sw2)`` for a Linear/Conv, ``sqrt(E[phi'(sqrt(q) z)^2])`` for an activation at the
    measured ``q``). Missing values are None.
    """
    infos = module_infos(trace)
    steps = signal_steps(trace) or trace.steps
    if not steps:
        return []
    s = steps[0] if step is None else int(step)
    tab = _step_table(trace, s)
    if tab.empty:
        return []
    wstats = _weight_stats(trace, s)
    order = sorted(tab.index, key=lambda n: infos.get(n, {}).get("ord", 10**9))
    rows: list[dict[str, Any]] = []
    for name in order:
        info = infos.get(name, {"type": "?"})
        rec = tab.loc[name]

        def get(q: str, rec: pd.Series = rec) -> float | None:
            if q not in rec.index or pd.isna(rec[q]):
                return None
            return float(rec[q])

        ws = wstats.get(name, {})
        pn, gn = ws.get("param_norm"), ws.get("grad_norm")
        row: dict[str, Any] = {
            "module": name,
            "type": info.get("type"),
            "category": module_category(info),
            "activation": info.get("activation"),
            "grad_norm": get("grad_norm"),
            "weight_grad_norm": ws.get("weight_grad_norm", get("grad_norm")),
            "param_norm": pn,
            "grad_to_weight": (gn / pn) if (gn is not None and pn) else None,
            "update_ratio": ws.get("update_ratio"),
            "signal_out": get("signal_out"),
            "signal_in": get("signal_in"),
            "gain": get("gain"),
            "dphi_mean": get("dphi_mean"),
            "dphi_sq_mean": get("dphi_sq_mean"),
            "saturated_frac": get("saturated_frac"),
            "dead_frac": get("dead_frac"),
            "preact_ms": get("preact_ms"),
            "sw2": info.get("sw2"),
            "sb2": info.get("sb2"),
            "fan_in": info.get("fan_in"),
            "fan_out": info.get("fan_out"),
        }
        row["predicted_gain"] = module_predicted_gain(info, row.get("preact_ms"))
        rows.append(row)
    return rows


@dataclass
class EndToEnd:
    """The end-to-end backward-signal measurement at one step.

    ``ratio`` = signal_out(first weighted layer) / signal_out(last weighted layer);
    ``path``: the hooked modules from the first to the last weighted layer (model order);
    ``crossings``: weighted layers the signal crosses (their number on the path minus one);
    ``gain_product``: product of the measured gains of ``path[1:]`` (equal to ``ratio`` on a
    plain chain); ``chain``: True when every module's input signal is the previous module's
    output signal (no skip connection or branch on the path); ``contributions``: log10 of the
    end-to-end ratio split by cause: ``weights``, ``activation`` (derivative), ``dead_units``,
    ``norm`` (normalisation), ``structural`` (pooling/reshaping/dropout), ``other`` (modules
    without a model: unknown activations, custom layers) and ``between``: the signal lost or
    gained *between* hooked modules, ``sum log10(signal_out(prev) / signal_in(next))`` over the
    junctions of the path (functional calls such as ``torch.sigmoid`` in ``forward``, or skip
    connections adding to the signal). Since ``so_{k-1}/so_k = (so_{k-1}/si_k)(si_k/so_k)`` the
    parts add up to ``log10 ratio`` exactly when every module on the path has both signals.
    """

    step: int
    first: str
    last: str
    ratio: float
    crossings: int
    path: list[str]
    gain_product: float | None
    chain: bool
    contributions: dict[str, float] = field(default_factory=dict)
    predicted_product: float | None = None


def _weighted_names(rows: list[dict[str, Any]]) -> list[str]:
    return [
        r["module"]
        for r in rows
        if r["category"] in ("weight", "recurrent")
        and r["signal_out"] is not None
        and math.isfinite(r["signal_out"])
        and r["signal_out"] > 0
    ]


def end_to_end(trace: Trace, step: int | None = None) -> EndToEnd | None:
    """Measure the end-to-end ratio at ``step`` (default: first recorded step); None when the
    trace has fewer than two weighted layers with a backward signal."""
    rows = layer_table(trace, step)
    if not rows:
        return None
    weighted = _weighted_names(rows)
    # The first weighted layer may have received no signal at all (blocked upstream): keep it.
    candidates = [
        r["module"]
        for r in rows
        if r["category"] in ("weight", "recurrent") and r["signal_out"] is not None
    ]
    if len(candidates) < 2 or not weighted:
        return None
    first, last = candidates[0], weighted[-1]
    idx = {r["module"]: i for i, r in enumerate(rows)}
    if idx[first] >= idx[last]:
        return None
    path_rows = rows[idx[first] : idx[last] + 1]
    so_first = rows[idx[first]]["signal_out"]
    so_last = rows[idx[last]]["signal_out"]
    ratio = so_first / so_last if so_last else math.nan
    crossings = sum(1 for r in path_rows if r["category"] in ("weight", "recurrent")) - 1
    chain = True
    prev = path_rows[0]
    for r in path_rows[1:]:
        si, so = r["signal_in"], prev["signal_out"]
        if si is None or so is None:
            chain = False
            break
        if not math.isclose(si, so, rel_tol=1e-4, abs_tol=1e-300):
            chain = False
            break
        prev = r
    contributions = {"weights": 0.0, "activation": 0.0, "dead_units": 0.0, "norm": 0.0}
    contributions.update(structural=0.0, other=0.0, between=0.0)
    prev_out = path_rows[0]["signal_out"]
    for r in path_rows[1:]:
        si = r["signal_in"]
        if prev_out is not None and si is not None and prev_out > 0 and si > 0:
            contributions["between"] += math.log10(prev_out / si)
        prev_out = r["signal_out"]
    log_prod = 0.0
    pred_log = 0.0
    pred_ok = True
    prod_ok = True
    for r in path_rows[1:]:
        g = r["gain"]
        if g is None or not math.isfinite(g):
            prod_ok = False
            continue
        lg = math.log10(g) if g > 0 else -math.inf
        log_prod += lg
        cat = r["category"]
        if cat in ("weight", "recurrent"):
            contributions["weights"] += lg
        elif cat == "activation":
            dead = r.get("dead_frac") or 0.0
            dead_part = 0.5 * math.log10(max(1.0 - dead, 1e-300)) if dead > 0 else 0.0
            dead_part = max(dead_part, lg) if math.isfinite(lg) else dead_part
            contributions["dead_units"] += dead_part
            contributions["activation"] += lg - dead_part
        elif cat == "norm":
            contributions["norm"] += lg
        elif cat == "structural":
            contributions["structural"] += lg
        else:
            contributions["other"] += lg
        pg = r.get("predicted_gain")
        if pg is None or not (pg > 0):
            pred_ok = False
        else:
            pred_log += math.log10(pg)
    gain_product = pow10(log_prod) if prod_ok else None
    steps = signal_steps(trace) or trace.steps
    return EndToEnd(
        step=int(step if step is not None else steps[0]),
        first=first,
        last=last,
        ratio=float(ratio),
        crossings=int(crossings),
        path=[r["module"] for r in path_rows],
        gain_product=gain_product,
        chain=chain,
        contributions={k: float(v) for k, v in contributions.items()},
        predicted_product=pow10(pred_log) if pred_ok else None,
    )
