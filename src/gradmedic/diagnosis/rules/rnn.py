"""``rnn-long-range-vanishing`` and ``rnn-exploding``: the gradient through time of RNN layers.

For each ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` the rule reads the time profile of the backward
signal at the first recorded step: ``||dL/dh_t||`` of the unrolled first layer (``rnn_hidden``
recording), else ``||dL/dx_t||`` at the layer's input. It reports the first/last ratio, the
peak over the last value, the memory horizon (steps back until the profile falls below 1e-3 of
its last value) and, for vanilla RNNs, Pascanu, Mikolov & Bengio's (2013) bound:
``lambda1(W_hh) < 1/gamma`` is sufficient for vanishing, ``> 1/gamma`` necessary for exploding
(``gamma = 1`` for tanh and ReLU).

* Exploding through time: the profile grows going back (peak over last >= 1e3).
* Vanishing through time: first/last below 1e-3 (gated cells: a note until 1e-8, since their
  gates can learn to open, Hochreiter & Schmidhuber 1997).
* With a loss on every time step the measured profile stays level whatever the recurrence
  does; a vanilla RNN whose ``W_hh`` contracts (spectral radius ``rho < 1``, ``rho^(T-1)``
  below 1e-3) then gets a note from theory, and one whose largest singular value is at least 2
  a note that it can amplify.

Example::

    >>> [f.slug for f in rule_rnn(Context.build(trace))]      # doctest: +SKIP
    ['rnn-long-range-vanishing']
"""

from __future__ import annotations

import math
from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.registry import rule
from gradmedic.diagnosis.rules._shared import num
from gradmedic.diagnosis.rules.origin import growth_before, run_start
from gradmedic.diagnosis.rules.rnn_remedies import PASCANU, vanishing_finding
from gradmedic.diagnosis.thresholds import (
    MEMORY_FALL,
    RNN_AMPLIFY_SIGMA,
    RNN_EXPLODE_ERROR,
    RNN_EXPLODE_WARNING,
    RNN_GAMMA,
    RNN_VANISH_WARNING,
)
from gradmedic.nn.taxonomy import RNN_TYPE_NAMES
from gradmedic.trace.schema import Quantity

__all__ = ["memory_horizon", "rule_rnn"]

_PROFILE = (Quantity.HIDDEN_GRAD_T, Quantity.INPUT_GRAD_T)
_PASCANU = PASCANU
#: What the recurrence's own nonlinearity adds to a contracting W_hh.
_SLOPE = {
    "tanh": "tanh' <= 1 only shrinks it more",
    "relu": "relu' is 1 on active units and 0 on the others: it never amplifies",
}


def _profiles(ctx: Context, q: Quantity, parameter: str) -> dict[tuple[str, int], list[float]]:
    """``(module, step) -> values by time index`` of ``q`` (cached on the trace)."""
    key = ("rnn_profiles", q.value, parameter)
    cache = ctx.trace._cache
    if key not in cache:
        sub = ctx.trace.quantity(q, parameter=parameter)
        cache[key] = {
            (str(m), int(s)): g.sort_values("idx")["value"].astype(float).tolist()
            for (m, s), g in sub.groupby(["module", "step"], sort=False)
        }
    return cache[key]


def _profile(ctx: Context, module: str, step: int) -> tuple[list[float], str]:
    """The time profile of ``module`` at ``step`` and what it measures; ``([], "")`` if none."""
    vals = _profiles(ctx, Quantity.HIDDEN_GRAD_T, "layer0").get((module, step), [])
    if vals and vals[-1] > 0:
        return vals, "||dL/dh_t|| (unrolled, layer 0)"
    vals = _profiles(ctx, Quantity.INPUT_GRAD_T, "").get((module, step), [])
    if vals:
        return vals, "||dL/dx_t||"
    return [], ""


def _grows(ctx: Context, name: str, steps: list[int]) -> bool:
    """Whether the run shows the gradient growing: a later profile of ``name`` peaks at
    :data:`RNN_EXPLODE_WARNING` over its last value, the global norm diverges, or a value went
    non-finite. A theory note about vanishing would then contradict the measurements."""
    for s in steps[1:]:
        v = _profile(ctx, name, s)[0]
        if len(v) > 1 and v[-1] > 0 and max(v) / v[-1] >= RNN_EXPLODE_WARNING:
            return True
    if ctx.present & {"nonfinite", "nonfinite_forward", "nonfinite_backward", "nonfinite_loss"}:
        return True
    last = steps[-1] if steps else 0
    return growth_before(ctx, last, run_start(ctx, last)) is not None


def _worst_step(ctx: Context, name: str, steps: list[int]) -> int:
    """The recorded step whose time profile of ``name`` is furthest from flat (the larger of
    its peak over last and its first/last ratio away from 1, in decades); the first step on a
    tie or without profiles."""
    best, score = steps[0], -1.0
    for s in steps:
        v = _profile(ctx, name, s)[0]
        if len(v) < 2 or not v[-1] > 0 or not all(map(math.isfinite, v)) or not v[0] > 0:
            continue
        x = max(math.log10(max(v) / v[-1]), abs(math.log10(v[0] / v[-1])))
        if x > score + 1e-9:
            best, score = s, x
    return best


def memory_horizon(vals: list[float], fall: float = MEMORY_FALL) -> int:
    """Steps back from the last step over which the signal stays above ``fall`` of its value
    at the last step.

    >>> memory_horizon([1e-5, 1e-2, 0.5, 1.0])
    3
    """
    ref = vals[-1]
    for k, v in enumerate(reversed(vals)):
        if not (v >= fall * ref):
            return k
    return len(vals)


def _predicted_time_decay(info: dict[str, Any], T: int) -> float | None:
    """log10 of ``rho(W_hh)^(T-1)`` for a vanilla RNN whose recurrence contracts enough to lose
    more than :data:`RNN_VANISH_WARNING` over the sequence; None otherwise (gated cells,
    ``rho >= 1``, short sequences)."""
    rho = info.get("whh_radius")
    if info.get("type") != "RNN" or rho is None or not (0 < float(rho) < 1) or T < 2:
        return None
    lg = (T - 1) * math.log10(float(rho))
    return lg if lg < math.log10(RNN_VANISH_WARNING) else None


@rule(
    slugs=("rnn-long-range-vanishing", "rnn-exploding"),
    requires=(_PROFILE,),
    priority=50,
    applies_to=("recurrent",),
)
def rule_rnn(ctx: Context) -> list[Finding]:
    """At most one finding per recurrent layer (see the module docstring). ``evidence``:
    ``mode``, ``profile`` (what was measured), ``seq_len``, ``first_last_ratio``,
    ``peak_over_last``, ``memory_horizon``, and for vanilla RNNs ``pascanu_lambda1``,
    ``pascanu_verdict`` and ``spectral_radius``; ``forget_bias_mean`` for LSTMs."""
    out: list[Finding] = []
    steps = ctx.steps or ctx.trace.steps
    for name, info in sorted(ctx.infos.items(), key=lambda kv: kv[1].get("ord", 0)):
        if info.get("type") not in RNN_TYPE_NAMES or not steps:
            continue
        worst = _worst_step(ctx, name, steps)  # the whole run, not its first step alone
        steps_w = [worst, *(s for s in steps if s != worst)]
        vals, what = _profile(ctx, name, worst)
        ev: dict[str, Any] = {"mode": info.get("mode", info.get("type")), "profile": what}
        verdict = None
        if info.get("type") == "RNN" and info.get("whh_sigma_max") is not None:
            lam = float(info["whh_sigma_max"])
            verdict = "vanishing-sufficient" if lam < 1 / RNN_GAMMA else "exploding-possible"
            ev.update(
                pascanu_lambda1=num(lam),
                pascanu_inv_gamma=1 / RNN_GAMMA,
                pascanu_verdict=verdict,
                spectral_radius=num(info.get("whh_radius")),
            )
        if "forget_bias_mean" in info:
            ev["forget_bias_mean"] = num(info["forget_bias_mean"])
        if len(vals) < 2 or not vals[-1] > 0:
            continue
        ratio, peak = vals[0] / vals[-1], max(vals) / vals[-1]
        ev.update(
            seq_len=len(vals),
            first_last_ratio=num(ratio),
            peak_over_last=num(peak),
            memory_horizon=memory_horizon(vals),
        )
        finding = _judge(ctx, name, info, ev, vals, verdict, steps_w)
        if finding is not None:
            out.append(finding)
    return out


def _judge(
    ctx: Context,
    name: str,
    info: dict[str, Any],
    ev: dict[str, Any],
    vals: list[float],
    verdict: str | None,
    steps: list[int],
) -> Finding | None:
    """The finding for one recurrent layer with a measured profile ``vals``, or None."""
    T = len(vals)
    ratio, peak = vals[0] / vals[-1], max(vals) / vals[-1]
    if peak >= RNN_EXPLODE_WARNING:  # the signal grows going back in time
        later = [_profile(ctx, name, s)[0] for s in steps[1:]]
        peaks = [max(v) / v[-1] for v in later if len(v) > 1 and v[-1] > 0]
        ev["peak_over_last_later_steps_max"] = num(max(peaks)) if peaks else None
        bound = (
            f" (largest singular value {ev['pascanu_lambda1']} > 1/gamma = 1, "
            f"the necessary condition of {_PASCANU})."
            if verdict == "exploding-possible"
            else "."
        )
        return Finding(
            slug="rnn-exploding",
            severity="error" if peak >= RNN_EXPLODE_ERROR else "warning",
            title=f"Exploding gradient through time in '{name}' ({peak:.1e}x)",
            cause=(
                f"Going back through {T} time steps the gradient grows {peak:.1e}x: the "
                "recurrent matrix amplifies it at every step" + bound
            ),
            layers=[name],
            evidence=ev,
            prescriptions=[
                Prescription("clip-grad-norm", {"max_norm": 1.0}, _PASCANU),
                Prescription("orthogonal-recurrent", {}, "singular values 1"),
            ],
            step=steps[0],
        )
    if ratio < RNN_VANISH_WARNING:
        return vanishing_finding(name, info, ev, ratio, T, verdict, steps[0])
    lg = _predicted_time_decay(info, T)
    if lg is not None and not _grows(ctx, name, steps):
        # The measured profile did not fall, yet the recurrence contracts: with a loss on every
        # time step each h_t receives its own step's gradient, which hides how little of the
        # late steps' gradient reaches it. Theory's estimate is a note, not an alarm.
        rho = float(info["whh_radius"])
        ev.update(spectral_radius=num(rho), predicted_log10_decay=num(lg), basis="theory")
        return Finding(
            slug="rnn-long-range-vanishing",
            severity="info",
            title=f"Recurrence of '{name}' contracts: 10^{lg:.0f} over {T} steps (theory)",
            cause=(
                f"W_hh has spectral radius {rho:.3g} < 1, so a gradient sent back through "
                f"{T - 1} steps shrinks like {rho:.2g}^{T - 1} = 10^{lg:.1f} "
                f"({_SLOPE.get(str(info.get('nonlinearity')), 'its slope')}); the measured "
                "profile stays level because every step's own loss feeds it, so dependencies "
                "that long cannot be learned."
            ),
            layers=[name],
            evidence=ev,
            prescriptions=[
                Prescription("replace-rnn", {"to": "lstm"}, "gated cell path"),
                Prescription("orthogonal-recurrent", {}, "norm-preserving recurrence"),
            ],
            step=steps[0],
        )
    if verdict == "exploding-possible" and float(info["whh_sigma_max"]) >= RNN_AMPLIFY_SIGMA:
        return Finding(
            slug="rnn-exploding",
            severity="info",
            title=f"Recurrent matrix of '{name}' can amplify gradients",
            cause=(
                f"The largest singular value of W_hh is {ev['pascanu_lambda1']} > 1/gamma"
                f" = 1, the necessary condition for exploding gradients ({_PASCANU}); it "
                "did not explode in this run."
            ),
            layers=[name],
            evidence=ev,
            prescriptions=[Prescription("clip-grad-norm", {"max_norm": 1.0}, "safety")],
            step=steps[0],
        )
    return None
