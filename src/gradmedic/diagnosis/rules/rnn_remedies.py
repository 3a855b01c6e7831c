"""What the RNN rule prescribes for a gradient that vanishes through time, each with its
predicted effect, and only what the layer has: a vanilla ``nn.RNN`` has no forget gate, so it
never gets ``forget-bias`` alone, only after ``replace-rnn(to=lstm)`` as one combination.

The forget-gate bias ``b_f`` keeps the LSTM cell path ``c_t = f_t c_{t-1} + ...`` at
``f = sigmoid(b_f)`` per step, so the constant-gate path carries ``sigmoid(b_f)^(T-1)`` back
through ``T`` steps (Gers et al. 2000; Jozefowicz et al. 2015 use ``b_f = 1``: 0.731 per step,
1.9e-3 over 20 steps). :func:`forget_bias_for` picks the smallest whole ``b_f >= 1`` that keeps
that path above :data:`~gradmedic.diagnosis.thresholds.RNN_VANISH_WARNING` over the measured
length (in the spirit of chrono initialisation, Tallec & Ollivier 2018: ``b_f ~ log T``).

Example::

    >>> forget_bias_for(20), forget_bias_for(100)
    (1.0, 3.0)
"""

from __future__ import annotations

import math
from typing import Any

from gradmedic.diagnosis.finding import Finding, Prescription
from gradmedic.diagnosis.rules._shared import num
from gradmedic.diagnosis.thresholds import (
    GATED_VANISH_WARNING,
    RNN_VANISH_ERROR,
    RNN_VANISH_WARNING,
)

__all__ = ["PASCANU", "cell_path", "forget_bias_for", "vanishing_finding"]

PASCANU = "Pascanu et al. 2013"


def cell_path(b_f: float, T: int) -> float:
    """``sigmoid(b_f)^(T-1)``: the LSTM constant-gate cell path over ``T`` steps."""
    return (1.0 / (1.0 + math.exp(-b_f))) ** max(T - 1, 0)


def forget_bias_for(T: int) -> float:
    """The smallest whole forget bias (at least 1) whose cell path over ``T`` steps stays above
    :data:`RNN_VANISH_WARNING`."""
    if T < 2:
        return 1.0
    f = RNN_VANISH_WARNING ** (1.0 / (T - 1))
    return float(max(1, math.ceil(math.log(f / (1.0 - f)))))


def _forget(value: float, T: int, *, after_replace: bool) -> Prescription:
    path = cell_path(value, T)
    p = Prescription(
        "forget-bias",
        {"value": value},
        f"cell path sigmoid({value:g})^{T - 1} = {path:.1e} over {T} steps",
        predicted={"cell_path": num(path), "basis": "constant forget gate (Gers et al. 2000)"},
    )
    if not after_replace:
        return p
    return Prescription(
        "replace-rnn",
        {"to": "lstm"},
        f"gated cell path; forget bias {value:g}: {path:.1e} over {T} steps",
        plus=(Prescription("forget-bias", {"value": value}),),
        predicted=p.predicted,
    )


def vanishing_finding(
    name: str,
    info: dict[str, Any],
    ev: dict[str, Any],
    ratio: float,
    T: int,
    verdict: str | None,
    step: int,
) -> Finding:
    """The measured vanishing-through-time finding (first/last ``ratio`` below the warning)."""
    target = forget_bias_for(T)
    if info.get("type") in ("LSTM", "GRU"):
        sev = "warning" if ratio < GATED_VANISH_WARNING else "info"
        fb = info.get("forget_bias_mean")
        value = target + 1.0 if fb is not None and fb >= target else target
        pres = [_forget(value, T, after_replace=False)] if info.get("type") == "LSTM" else []
        why = (
            f"the {'forget' if ev['mode'] == 'LSTM' else 'update'} gate starts near 0.5"
            + (f" (forget bias {fb:.2f})" if fb is not None else "")
            + ", halving the cell path at every step"
        )
    else:
        sev = "error" if ratio < RNN_VANISH_ERROR else "warning"
        pres = [
            Prescription("replace-rnn", {"to": "lstm"}, "gated cell path"),
            _forget(target, T, after_replace=True),
            Prescription(
                "orthogonal-recurrent",
                {},
                "norm-preserving recurrence",
                predicted={"basis": "singular values 1; phi' <= 1 still shrinks the signal"},
            ),
        ]
        why = "each step multiplies it by W_hh^T diag(phi'), whose norm is below 1" + (
            f" (largest singular value {ev['pascanu_lambda1']} < 1/gamma: "
            f"sufficient for vanishing, {PASCANU})"
            if verdict == "vanishing-sufficient"
            else " on average (saturated units shrink it further)"
        )
    return Finding(
        slug="rnn-long-range-vanishing",
        severity=sev,
        title=f"Gradient vanishes through time in '{name}' ({ratio:.1e} over {T} steps)",
        cause=(
            f"The gradient reaching the first of {T} time steps is {ratio:.1e} of the last "
            f"one's (memory horizon {ev['memory_horizon']} steps): {why}."
        ),
        layers=[name],
        evidence=ev,
        prescriptions=pres,
        step=step,
    )
