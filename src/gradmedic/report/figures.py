"""The standard figures of a trace, readable at a glance.

Every function takes a :class:`~gradmedic.trace.Trace` (so a report can be rebuilt from a saved
trace, without the model) and returns a matplotlib ``Figure``, or ``None`` when the trace lacks
the data the figure needs (e.g. :func:`rnn_time_figure` on an MLP). Figures are built on
``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot: they do not join
pyplot's global registry, do not switch a notebook's backend, and cannot leak if a caller
forgets to close them. Log axes mask values that are zero, negative or not finite.

Quantities (see :mod:`gradmedic.monitor.core`): the backward signal ``‖∂L/∂y_l‖`` at a
module's output (``signal_out``), ``‖∂L/∂x_l‖`` at its input (``signal_in``), the gain
``α_l = signal_in / signal_out``. Over a chain of L modules the gains multiply to the
end-to-end ratio (article 1.1: ``0.9**20 ≈ 0.12``).

Theory overlays (mean-field, Poole et al. 2016; Schoenholz et al. 2017, see
:mod:`gradmedic.theory`): a Linear/Conv layer with ``σ_w² = fan_in·Var(W)`` scales the norm of
the backward signal by ``√σ_w²`` (``‖Wᵀδ‖² ≈ fan_in·Var(W)·‖δ‖²``); an elementwise activation
by ``√E[φ'(h)²]`` with ``h ~ N(0, q)``, q the measured mean square of its pre-activation. Their
product per layer pair is ``√χ₁``.

Example::

    >>> from gradmedic.trace import read_trace                     # doctest: +SKIP
    >>> fig = gradient_flow_figure(read_trace("run/trace.sqlite"))  # doctest: +SKIP
    >>> fig.savefig("flow.png")                                     # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from gradmedic.diagnosis.predict import module_predicted_slope
from gradmedic.diagnosis.table import layer_table, module_infos

if TYPE_CHECKING:  # pragma: no cover
    from gradmedic.trace import Trace

__all__ = [
    "SNAPSHOT_COLUMNS",
    "activation_figure",
    "find_spikes",
    "gain_product_data",
    "gain_product_figure",
    "grad_norm_over_steps_figure",
    "gradient_flow_figure",
    "layer_snapshot",
    "loss_figure",
    "predicted_gains",
    "rnn_time_figure",
    "signal_heatmap_figure",
    "treatment_figures",
]

#: Colours used across figures (colour-blind safe, Okabe-Ito).
COLOURS = {
    "signal": "#0072B2",
    "weight": "#E69F00",
    "gain": "#009E73",
    "theory": "#CC79A7",
    "spike": "#D55E00",
    "nonfinite": "#B3261E",
    "dead": "#56B4E9",
    "saturated": "#D55E00",
    "before": "#222222",
}
_CYCLE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]

_WEIGHT_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "RNN", "LSTM", "GRU", "Bilinear")
_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


# --------------------------------------------------------------------------------------------
# data helpers (the per-layer numbers come from gradmedic.diagnosis.table)
# --------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float, nrows: int = 1, **kw: Any) -> tuple[Figure, Any]:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, 1, squeeze=False, **kw)[:, 0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def _positive(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return np.where(np.isfinite(v) & (v > 0), v, np.nan)


def _module_order(trace: Trace) -> list[str]:
    return [str(n) for n in trace.modules["name"] if str(n) != ""]


def _first_step(trace: Trace, quantity: str) -> int | None:
    f = trace.frame
    steps = f.loc[f["quantity"] == quantity, "step"]
    return int(steps.min()) if len(steps) else None


def _last_step(trace: Trace, quantity: str) -> int | None:
    f = trace.frame
    steps = f.loc[f["quantity"] == quantity, "step"]
    return int(steps.max()) if len(steps) else None


#: Columns of :func:`layer_snapshot`.
SNAPSHOT_COLUMNS = [
    "module",
    "type",
    "weight_grad_norm",
    "grad_norm",
    "signal_out",
    "signal_in",
    "gain",
    "dphi_mean",
    "dphi_sq_mean",
    "preact_ms",
    "saturated_frac",
    "dead_frac",
    "predicted_gain",
]


def layer_snapshot(trace: Trace, step: int | None = None) -> pd.DataFrame:
    """The diagnosis's per-layer table (:func:`gradmedic.diagnosis.layer_table`) as a frame.

    One row per hooked module (model order, root excluded) with its numbers at ``step``;
    columns :data:`SNAPSHOT_COLUMNS`: ``module``, ``type``, ``weight_grad_norm`` (per-parameter
    ``grad_norm`` of ``weight``, else the module aggregate), ``grad_norm``, ``signal_out``,
    ``signal_in``, ``gain``, ``dphi_mean``, ``dphi_sq_mean``, ``preact_ms``,
    ``saturated_frac``, ``dead_frac`` (NaN where not measured) and ``predicted_gain`` (theory,
    :func:`gradmedic.diagnosis.predict.module_predicted_gain`). ``step=None`` takes the first
    step with backward signals (initialisation). Modules with no record at that step are left
    out. The figures, the report's table and the diagnosis read the same numbers.
    """
    rows = layer_table(trace, step)
    data = {
        c: [r.get(c) if c in ("module", "type") else _float(r.get(c)) for r in rows]
        for c in SNAPSHOT_COLUMNS
    }
    return pd.DataFrame(data, columns=SNAPSHOT_COLUMNS)


def _float(v: Any) -> float:
    return float("nan") if v is None else float(v)


def predicted_gains(trace: Trace, step: int | None = None) -> dict[str, float]:
    """Theory's per-module gain of the backward-signal norm, where there is one.

    The ``predicted_gain`` column of :func:`gradmedic.diagnosis.layer_table` at ``step``
    (default: the first step with backward signals): ``sqrt(sw2)`` for Linear/Conv layers,
    ``sqrt(E[phi'(sqrt(q) z)^2])`` for an elementwise activation at its measured
    pre-activation mean square ``q``, 1 for Flatten/Identity; other modules (norms, RNNs,
    pooling, containers) get no prediction.
    """
    return {
        r["module"]: float(r["predicted_gain"])
        for r in layer_table(trace, step)
        if r["predicted_gain"] is not None
    }


def _labels(modules: Sequence[str], types: Sequence[str], limit: int = 22) -> list[str]:
    out = []
    for m, t in zip(modules, types, strict=True):
        text = f"{m} ({t})" if t else m
        out.append(text if len(text) <= limit else text[: limit - 1] + "…")
    return out


def _set_layer_ticks(ax: Any, labels: Sequence[str], max_ticks: int = 32) -> None:
    n = len(labels)
    every = max(1, math.ceil(n / max_ticks))
    pos = list(range(0, n, every))
    ax.set_xticks(pos)
    ax.set_xticklabels([labels[i] for i in pos], rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.5, n - 0.5)


def find_spikes(values: Sequence[float], *, factor: float = 5.0, window: int = 10) -> list[int]:
    """Indices where a value exceeds ``factor`` × the median of the previous ``window`` values.

    At least 3 earlier finite values are needed before a spike can be called; non-finite
    values are not spikes (they are marked as non-finite events instead).

    >>> find_spikes([1, 1.1, 0.9, 1.0, 9.0, 1.0])
    [4]
    """
    v = np.asarray(values, dtype=float)
    out = []
    for i in range(len(v)):
        prev = v[max(0, i - window) : i]
        prev = prev[np.isfinite(prev)]
        if len(prev) >= 3 and np.isfinite(v[i]) and v[i] > factor * np.median(prev):
            out.append(i)
    return out


# --------------------------------------------------------------------------------------------
# the figures
# --------------------------------------------------------------------------------------------


def gradient_flow_figure(trace: Trace, step: int | None = None) -> Figure | None:
    """Per-layer gradient flow: weight-gradient and backward-signal norms, and the gain.

    Top: ``‖∂L/∂W_l‖`` and ``‖∂L/∂y_l‖`` per module on a log axis, input left, output right;
    a healthy net keeps them within a decade or two, a vanishing one slopes down to the left.
    Bottom: the gain ``α_l`` per module with theory's prediction (× markers) and the line
    α = 1. ``step=None``: the first recorded step, with the last recorded step overlaid faintly.
    """
    first = step if step is not None else _first_step(trace, "signal_out")
    if first is None:
        first = _first_step(trace, "grad_norm")
    if first is None:
        return None
    snap = layer_snapshot(trace, first)
    snap = snap[snap[["weight_grad_norm", "signal_out", "gain"]].notna().any(axis=1)]
    if snap.empty:
        return None
    last = _last_step(trace, "signal_out") if step is None else None
    later = None
    if last is not None and last != first:
        later = layer_snapshot(trace, last).set_index("module").reindex(snap["module"])
    x = np.arange(len(snap))
    fig, (ax, ax2) = _new_figure(9.5, 6.2, nrows=2, sharex=True)
    ax.plot(
        x,
        _positive(snap["signal_out"]),
        "-o",
        ms=3,
        color=COLOURS["signal"],
        label=f"backward signal ‖∂L/∂y‖ (step {first})",
    )
    has_w = snap["type"].isin(_WEIGHT_TYPES) | snap["grad_norm"].notna()
    ax.plot(
        x[has_w.to_numpy()],
        _positive(snap.loc[has_w, "weight_grad_norm"]),
        "s",
        ms=5,
        color=COLOURS["weight"],
        label=f"weight gradient ‖∂L/∂W‖ (step {first})",
    )
    if later is not None:
        ax.plot(
            x,
            _positive(later["signal_out"]),
            "-",
            color=COLOURS["signal"],
            alpha=0.35,
            label=f"backward signal, step {last}",
        )
    ax.set_yscale("log")
    ax.set_ylabel("L2 norm (log scale)")
    ax.set_title(f"Gradient flow per layer, input → output (step {first})")
    ax.legend(loc="best")
    gain = _positive(snap["gain"])
    ax2.plot(x, gain, "-o", ms=3, color=COLOURS["gain"], label="measured gain α = ‖∂L/∂x‖/‖∂L/∂y‖")
    pred = _positive(snap["predicted_gain"])
    if np.isfinite(pred).any():
        ax2.plot(x, pred, "x", ms=6, mew=1.5, color=COLOURS["theory"], label="theory (mean field)")
    ax2.axhline(1.0, color="#555", lw=1, ls="--", label="α = 1 (signal kept)")
    both = np.concatenate([gain[np.isfinite(gain)], pred[np.isfinite(pred)], [1.0]])
    if both.max() / both.min() > 30:  # a log axis only when the gains span decades
        ax2.set_yscale("log")
        ax2.set_ylabel("gain α per module (log)")
    else:
        ax2.set_ylim(0, 1.1 * both.max())
        ax2.set_ylabel("gain α per module")
    ax2.set_xlabel("module (model order: input → output)")
    ax2.legend(loc="best")
    _set_layer_ticks(ax2, _labels(list(snap["module"]), list(snap["type"])))
    return fig


def signal_heatmap_figure(trace: Trace) -> Figure | None:
    """Layer × step heatmap of the backward signal ``‖∂L/∂y_l‖`` on a log colour scale.

    Rows are modules (input at the top), columns recorded steps; a vanishing net shows a dark
    band at the top that stays dark while training, an exploding one bright rows or steps.
    """
    table = trace.pivot("signal_out")
    if table.empty:
        return None
    data = _positive(table.to_numpy().T)  # modules x steps
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return None
    info = module_infos(trace)
    modules = [str(c) for c in table.columns]
    labels = _labels(modules, [info.get(m, {}).get("type", "") for m in modules])
    steps = list(table.index)
    height = min(9.0, 2.2 + 0.14 * len(modules))
    fig, (ax,) = _new_figure(9.5, height)
    ax.grid(False)
    vmin, vmax = float(finite.min()), float(finite.max())
    if vmax <= vmin:
        vmax = vmin * 10
    img = ax.imshow(
        np.ma.masked_invalid(data),
        aspect="auto",
        interpolation="nearest",
        cmap="viridis",
        norm=LogNorm(vmin=vmin, vmax=vmax),
        extent=(steps[0] - 0.5, steps[-1] + 0.5, len(modules) - 0.5, -0.5),
    )
    every = max(1, math.ceil(len(modules) / 40))
    ax.set_yticks(range(0, len(modules), every))
    ax.set_yticklabels(labels[::every], fontsize=7)
    ax.set_xlabel("training step")
    ax.set_ylabel("module (input at top)")
    ax.set_title("Backward signal ‖∂L/∂y‖ per module and step (log colour scale)")
    cb = fig.colorbar(img, ax=ax)
    cb.set_label("‖∂L/∂y‖ (log scale)")
    return fig


def gain_product_data(trace: Trace, step: int | None = None) -> pd.DataFrame:
    """The numbers behind :func:`gain_product_figure`, one row per module with a gain.

    Columns: ``module``, ``type``, ``product`` = ``∏_{k ≥ l} α_k`` (chain rule, from module l to
    the output), ``measured`` = ``‖∂L/∂x_l‖ / ‖∂L/∂y_out‖`` (``y_out``: the output of the last
    such module) and ``theory`` = ``∏_{k ≥ l}`` predicted α_k (NaN past a module without a
    prediction).
    """
    snap = layer_snapshot(trace, step)
    snap = snap[snap["gain"].notna() & snap["signal_in"].notna()]
    if snap.empty:
        return pd.DataFrame(columns=["module", "type", "product", "measured", "theory"])
    out_signal = float(snap["signal_out"].iloc[-1])
    gains = snap["gain"].to_numpy(dtype=float)
    pred = snap["predicted_gain"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = snap["signal_in"].to_numpy(dtype=float) / out_signal
    return pd.DataFrame(
        {
            "module": snap["module"].to_numpy(),
            "type": snap["type"].to_numpy(),
            "product": np.cumprod(gains[::-1])[::-1],
            "measured": measured if out_signal > 0 else np.nan,
            "theory": np.cumprod(pred[::-1])[::-1],  # NaN propagates: no prediction past a gap
        }
    )


def gain_product_figure(trace: Trace, step: int | None = None) -> Figure | None:
    """Product of per-module gains against the measured end-to-end ratio.

    For module l the measured ratio is ``‖∂L/∂x_l‖ / ‖∂L/∂y_out‖`` (how far the gradient at
    the network output has shrunk or grown by the time it reaches l's input); the product is
    ``∏_{k ≥ l} α_k``. On a plain chain the two curves coincide (the chain rule); where a skip
    connection or auxiliary head bypasses modules the measured ratio departs from the product.
    Theory's product (where every module from l to the output has a prediction) is overlaid.
    Numbers: :func:`gain_product_data`.
    """
    snap = gain_product_data(trace, step)
    if snap.empty:
        return None
    product = snap["product"].to_numpy(dtype=float)
    measured = snap["measured"].to_numpy(dtype=float)
    theory = snap["theory"].to_numpy(dtype=float)
    if not np.isfinite(measured).any():
        measured = None
    x = np.arange(len(snap))
    fig, (ax,) = _new_figure(9.5, 4.6)
    ax.plot(x, _positive(product), "-o", ms=3, color=COLOURS["gain"], label="product of gains ∏α_k")
    if measured is not None:
        ax.plot(
            x,
            _positive(measured),
            "--s",
            ms=3,
            color=COLOURS["signal"],
            label="measured ratio ‖∂L/∂x_l‖ / ‖∂L/∂y_out‖",
        )
    if np.isfinite(theory).any():
        ax.plot(
            x, _positive(theory), ":", lw=2, color=COLOURS["theory"], label="theory ∏ predicted α"
        )
    ax.axhline(1.0, color="#555", lw=1, ls="--")
    ax.set_yscale("log")
    ax.set_ylabel("ratio to the output gradient (log)")
    ax.set_xlabel("module l (model order: input → output)")
    end = f"end to end: product {product[0]:.3g}"
    if measured is not None:
        end += f", measured {measured[0]:.3g}"
    if np.isfinite(theory[0]):
        end += f", theory {theory[0]:.3g}"
    ax.set_title(f"Gains multiply along depth ({end})")
    ax.legend(loc="best")
    _set_layer_ticks(ax, _labels(list(snap["module"]), list(snap["type"])))
    return fig


def activation_figure(trace: Trace, step: int | None = None) -> Figure | None:
    """Saturated and dead fractions per activation layer, and the mean slope φ'.

    Top: fraction of units saturated (``|φ'| < 1%`` of its maximum) and dead (zero for the whole
    batch), 0 to 1. Bottom: measured mean ``φ'(x)`` with theory's ``E[φ'(√q z)]`` under the
    measured pre-activation scale q. Sigmoid's slope is at most 0.25 (article 1.2).
    """
    if step is None:
        step = _first_step(trace, "saturated_frac")
    if step is None:
        return None
    snap = layer_snapshot(trace, step)
    snap = snap[snap["saturated_frac"].notna() | snap["dead_frac"].notna()]
    if snap.empty:
        return None
    info = module_infos(trace)
    x = np.arange(len(snap))
    fig, (ax, ax2) = _new_figure(9.5, 5.8, nrows=2, sharex=True)
    w = 0.4
    ax.bar(
        x - w / 2,
        snap["saturated_frac"].fillna(0),
        w,
        color=COLOURS["saturated"],
        label="saturated (|φ'| < 1% of max)",
    )
    ax.bar(
        x + w / 2, snap["dead_frac"].fillna(0), w, color=COLOURS["dead"], label="dead (0 on batch)"
    )
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction of units")
    ax.set_title(f"Activation health per layer (step {step})")
    ax.legend(loc="best")
    ax2.plot(x, snap["dphi_mean"], "-o", ms=3, color=COLOURS["gain"], label="measured mean φ'(x)")
    expected = [
        _float(module_predicted_slope(info.get(m, {}), None if pd.isna(q) else float(q)))
        for m, q in zip(snap["module"], snap["preact_ms"], strict=True)
    ]
    if np.isfinite(np.asarray(expected, dtype=float)).any():
        ax2.plot(
            x, expected, "x", ms=6, mew=1.5, color=COLOURS["theory"], label="theory E[φ'(√q z)]"
        )
    ax2.set_ylabel("mean slope φ'(x)")
    ax2.set_xlabel("activation module (model order: input → output)")
    ax2.set_ylim(bottom=0)
    ax2.legend(loc="best")
    _set_layer_ticks(ax2, _labels(list(snap["module"]), list(snap["type"])))
    return fig


def rnn_time_figure(trace: Trace, step: int | None = None) -> Figure | None:
    """RNN gradient through time: ``‖∂L/∂x_t‖`` (and ``‖∂L/∂h_t‖`` when recorded) against t.

    With the loss at the last step (adding/copy tasks), a vanishing RNN shows the norm falling
    exponentially from right to left (Pascanu et al. 2013); the dotted line marks 10⁻³ of the
    largest value, the memory-horizon threshold.
    """
    f = trace.frame
    f = f[f["quantity"].isin(["input_grad_t", "hidden_grad_t"])]
    if f.empty:
        return None
    if step is None:
        step = int(f["step"].min())
    f = f[f["step"] == step]
    if f.empty:
        return None
    fig, (ax,) = _new_figure(9.0, 4.4)
    peak = 0.0
    for i, ((module, param, qty), g) in enumerate(f.groupby(["module", "parameter", "quantity"])):
        g = g.sort_values("idx")
        vals = _positive(g["value"])
        if np.isfinite(vals).any():
            peak = max(peak, float(np.nanmax(vals)))
        what = "‖∂L/∂x_t‖ (input)" if qty == "input_grad_t" else f"‖∂L/∂h_t‖ ({param})"
        ax.plot(
            g["idx"].astype(float),
            vals,
            "-" if qty == "hidden_grad_t" else "--",
            color=_CYCLE[i % len(_CYCLE)],
            label=f"{module}: {what}",
        )
    if peak > 0:
        ax.axhline(peak * 1e-3, color="#555", ls=":", lw=1, label="10⁻³ of the largest")
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("gradient norm (log scale)")
    ax.set_title(f"Gradient reaching each time step (step {step})")
    ax.legend(loc="best")
    return fig


def _nonfinite_steps(trace: Trace) -> list[int]:
    f = trace.frame
    hits = f[f["quantity"].isin(["nonfinite", "nonfinite_forward", "nonfinite_backward"])]
    return sorted({int(s) for s in hits["step"]})


def grad_norm_over_steps_figure(
    trace: Trace, *, spike_factor: float = 5.0, window: int = 10
) -> Figure | None:
    """Global gradient norm over training steps, spikes and non-finite events marked.

    A spike is a value above ``spike_factor`` × the median of the previous ``window`` recorded
    values (:func:`find_spikes`). Steps where a NaN/Inf appeared (forward or backward) are red
    vertical lines. The loss is drawn below on the same steps.
    """
    g = trace.quantity("grad_norm_total")
    g = g[g["module"] == ""].sort_values("step")
    if g.empty:
        return None
    loss = trace.quantity("loss")
    loss = loss[loss["module"] == ""].sort_values("step")
    steps = g["step"].to_numpy()
    vals = g["value"].to_numpy(dtype=float)
    nrows = 2 if not loss.empty else 1
    fig, axes = _new_figure(9.0, 5.4 if nrows == 2 else 3.4, nrows=nrows, sharex=True)
    ax = axes[0]
    ax.plot(
        steps,
        _positive(vals),
        "-",
        color=COLOURS["signal"],
        lw=1.2,
        label="‖∇θ L‖ (all parameters)",
    )
    spikes = find_spikes(vals, factor=spike_factor, window=window)
    if spikes:
        ax.plot(
            steps[spikes],
            vals[spikes],
            "^",
            ms=8,
            color=COLOURS["spike"],
            label=f"spike (> {spike_factor:g}× recent median)",
        )
    bad = _nonfinite_steps(trace)
    for i, s in enumerate(bad):
        for a in axes:
            a.axvline(
                s,
                color=COLOURS["nonfinite"],
                lw=1.2,
                alpha=0.8,
                label="NaN/Inf" if i == 0 and a is ax else None,
            )
    ax.set_yscale("log")
    ax.set_ylabel("gradient norm (log)")
    title = "Gradient norm over training"
    if bad:
        title += f" (first NaN/Inf at step {bad[0]})"
    ax.set_title(title)
    ax.legend(loc="best")
    if nrows == 2:
        lv = loss["value"].to_numpy(dtype=float)
        axes[1].plot(loss["step"], np.where(np.isfinite(lv), lv, np.nan), "-", color="#333", lw=1.2)
        axes[1].set_ylabel("training loss")
    axes[-1].set_xlabel("training step")
    return fig


def loss_figure(
    curves: Mapping[str, Sequence[float]], *, title: str = "Training loss"
) -> Figure | None:
    """Loss against step for several runs (e.g. ``{"before": [...], "reinit(scheme=kaiming)": [...]}``).

    Log y-axis when every value is positive and they span more than 30×. A run that went
    non-finite ends with a red ✕ at its last finite value.
    """
    curves = {str(k): np.asarray(list(v), dtype=float) for k, v in curves.items() if len(v)}
    if not curves:
        return None
    fig, (ax,) = _new_figure(9.0, 4.2)
    finite_all = np.concatenate([c[np.isfinite(c)] for c in curves.values()])
    for i, (name, c) in enumerate(curves.items()):
        colour = (
            COLOURS["before"]
            if i == 0 and name.lower().startswith("before")
            else _CYCLE[i % len(_CYCLE)]
        )
        ok = np.isfinite(c)
        ax.plot(
            np.arange(len(c)),
            np.where(ok, c, np.nan),
            "-",
            lw=2 if colour == COLOURS["before"] else 1.3,
            color=colour,
            label=name,
        )
        if not ok.all():
            j = int(np.argmin(ok))  # first non-finite
            y = (
                c[j - 1]
                if j > 0 and ok[j - 1]
                else (np.nanmax(finite_all) if finite_all.size else 1.0)
            )
            ax.plot([j], [y], "x", ms=10, mew=2, color=COLOURS["nonfinite"])
    if finite_all.size and (finite_all > 0).all() and finite_all.max() / finite_all.min() > 30:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(loc="best")
    return fig


def _weight_layer_norms(trace: Trace) -> tuple[list[str], np.ndarray] | None:
    step = _first_step(trace, "grad_norm")
    if step is None:
        return None
    f = trace.frame
    w = f[(f["step"] == step) & (f["parameter"] == "weight") & (f["quantity"] == "grad_norm")]
    info = module_infos(trace)
    w = w[[("Norm" not in info.get(m, {}).get("type", "")) for m in w["module"]]]
    if w.empty:
        return None
    order = {m: i for i, m in enumerate(_module_order(trace))}
    w = w.assign(o=[order.get(m, len(order)) for m in w["module"]]).sort_values("o")
    return list(w["module"]), w["value"].to_numpy(dtype=float)


def _trace_losses(trace: Trace) -> list[float]:
    loss = trace.quantity("loss")
    loss = loss[loss["module"] == ""].sort_values("step")
    return [float(v) for v in loss["value"]]


def treatment_figures(
    before_trace: Trace, after_traces: Mapping[str, Trace]
) -> list[tuple[Figure, str]]:
    """Before/after overlays for ``treat``: a list of ``(figure, caption)`` pairs.

    1. Weight-gradient norm per weight layer (Linear/Conv/RNN, norms excluded) at the first
       recorded step, the untreated model in bold black, each remedy in colour: a fix for a
       vanishing gradient lifts the left end of the curve.
    2. Training loss over recorded steps, same colours.

    Use as ``for fig, caption in treatment_figures(before, after): report.add_figure(fig, caption)``.
    """
    out: list[tuple[Figure, str]] = []
    runs: dict[str, Trace] = {"before (untreated)": before_trace, **dict(after_traces)}
    flows = {name: _weight_layer_norms(tr) for name, tr in runs.items()}
    if any(v is not None for v in flows.values()):
        fig, (ax,) = _new_figure(9.5, 4.6)
        for i, (name, fl) in enumerate(flows.items()):
            if fl is None:
                continue
            _, vals = fl
            bold = i == 0
            ax.plot(
                np.arange(1, len(vals) + 1),
                _positive(vals),
                "-o",
                ms=3 if not bold else 4,
                lw=2.2 if bold else 1.3,
                color=COLOURS["before"] if bold else _CYCLE[(i - 1) % len(_CYCLE)],
                label=name,
            )
        ax.set_yscale("log")
        ax.set_xlabel("weight layer (1 = nearest the input)")
        ax.set_ylabel("‖∂L/∂W‖ at the first step (log)")
        ax.set_title("Weight-gradient norm per layer, before and after each remedy")
        ax.legend(loc="best")
        out.append(
            (
                fig,
                "Weight-gradient norm per layer at initialisation, untreated model (black) against "
                "each remedy: a flatter curve means the gradient reaches the early layers.",
            )
        )
    losses = {name: _trace_losses(tr) for name, tr in runs.items()}
    fig = loss_figure(
        {k: v for k, v in losses.items() if v}, title="Training loss, before and after"
    )
    if fig is not None:
        out.append(
            (fig, "Training loss over the same seeded run for the untreated model and each remedy.")
        )
    return out
