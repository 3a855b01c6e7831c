"""Helpers shared by the report tests (tests/report/): hostile text, a finding, small traces
built by hand (:func:`synthetic_trace`, :func:`layer_trace`) and the hypothesis strategy of
generated traces (:func:`traces`). The real traces are fixtures in tests/report/conftest.py."""

from __future__ import annotations

import json

import pandas as pd

from gradmedic.diagnosis import Finding, Prescription
from gradmedic.trace import Trace, frame_from_rows

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def finding(severity="error", layers=("0",), slug="vanishing-gradient", **kw) -> Finding:
    """A vanishing-gradient finding with one prescription; keywords replace its texts."""
    return Finding(
        slug=slug,
        severity=severity,
        title=kw.get("title", "Vanishing gradient"),
        cause=kw.get("cause", "sigmoid saturates; each layer multiplies the signal by 0.25"),
        layers=list(layers),
        evidence=kw.get("evidence", {"first_last_ratio": 5.7e-10, "depth": 12}),
        prescriptions=[Prescription("swap-activation", {"to": "relu"}, "slope 1 on positives")],
        step=kw.get("step", 0),
    )


def synthetic_trace(values, *, nonfinite_at=(), loss=None) -> Trace:
    """A trace with only global rows: grad_norm_total per step (and the loss)."""
    rows = []
    for s, v in enumerate(values):
        rows.append((s, "", "", "grad_norm_total", None, float(v)))
        if loss is not None:
            rows.append((s, "", "", "loss", None, float(loss[s])))
        if s in nonfinite_at:
            rows.append((s, "", "", "nonfinite", None, 1.0))
            rows.append((s, "fc", "", "nonfinite_backward", None, 1.0))
    modules = pd.DataFrame(
        [(0, "", "Net", None, 0, "{}"), (1, "fc", "Linear", None, 10, "{}")],
        columns=["ord", "name", "type", "activation", "n_params", "info"],
    )
    return Trace(frame=frame_from_rows(rows), modules=modules, meta={"schema_version": 1})


def layer_trace(rows, types, *, model_class="Net") -> Trace:
    """A trace of ``rows`` (long-form tuples) over modules ``{name: type}`` in that order,
    each with the module facts of its kind (:data:`KIND_FACTS`: activation name, ``tails``;
    none for a type not listed there), under a root module of class ``model_class``."""
    modules = pd.DataFrame(
        [(0, "", model_class, None, 0, "{}")]
        + [(i + 1, n, t, *_facts(t)) for i, (n, t) in enumerate(types.items())],
        columns=["ord", "name", "type", "activation", "n_params", "info"],
    )
    meta = {"schema_version": 1, "model_class": model_class}
    return Trace(frame=frame_from_rows(rows), modules=modules, meta=meta)


def _facts(type_name: str) -> tuple[str | None, int, str]:
    activation, info = KIND_FACTS.get(type_name, (None, {}))
    return activation, 10, json.dumps(info)


# --- generated traces for the property tests -------------------------------------------------

#: Module names that are hard to show: mathtext, TeX specials, markup, control characters.
HOSTILE_NAMES = ("a$x^2$", "$\\frac$", "x_y", "back\\slash", "[red]x[/red]", "\x1b]0;t\x07")
#: Values that break log axes, colour scales and means.
NASTY = (float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 1e-300, 1e300, 0.5, 2.0)

#: type -> (activation, module facts) of the module kinds the test traces are made of.
KIND_FACTS = {
    "Linear": (None, {"fan_in": 8, "fan_out": 8, "sw2": 1.0, "sb2": 0.0}),
    "Sigmoid": ("sigmoid", {"theory": "sigmoid", "tails": "both"}),
    "ReLU": ("relu", {"theory": "relu", "tails": "negative"}),
    "LeakyReLU": ("leaky_relu", {"theory": "leaky_relu", "tails": "none"}),
    "LayerNorm": (None, {}),
    "RNN": (None, {"fan_in": 4}),
}
_ACT_QUANTITIES = ("dphi_mean", "dphi_sq_mean", "saturated_frac", "dead_frac", "preact_ms")


def traces(max_steps: int = 3, max_layers: int = 4):
    """A hypothesis strategy of :class:`Trace` objects: 0 to ``max_steps`` recorded steps
    (0 = an empty frame), 1 to ``max_layers`` modules of the kinds above with ordinary or
    hostile names, each quantity present or absent, and values that are all finite, all NaN,
    all Inf, all zero or a mix of :data:`NASTY`."""
    from hypothesis import strategies as st

    value_sets = st.sampled_from([(1.0, 0.3, 2.5), (float("nan"),), (float("inf"),), (0.0,), NASTY])

    @st.composite
    def build(draw):
        n_steps = draw(st.integers(0, max_steps))
        stride = draw(st.sampled_from([1, 20]))
        kinds = draw(st.lists(st.sampled_from(sorted(KIND_FACTS)), min_size=1, max_size=max_layers))
        names = [
            draw(st.sampled_from([str(i), f"layers.{i}", *HOSTILE_NAMES]))
            for i in range(len(kinds))
        ]
        names = list(dict.fromkeys(names))  # module names are unique
        kinds = kinds[: len(names)]
        present = draw(
            st.sets(st.sampled_from(["signal", "weight", "act", "rnn", "global", "nan"]))
        )
        pool = draw(value_sets)

        def v():
            return draw(st.sampled_from(pool))

        rows = []
        for k in range(n_steps):
            s = k * stride
            for name, kind in zip(names, kinds, strict=True):
                if "signal" in present:
                    for q in ("signal_out", "signal_in", "gain"):
                        rows.append((s, name, "", q, None, v()))
                if "weight" in present and kind in ("Linear", "RNN", "LayerNorm"):
                    rows.append((s, name, "", "grad_norm", None, v()))
                    for q in ("grad_norm", "param_norm", "update_ratio"):
                        rows.append((s, name, "weight", q, None, v()))
                if "act" in present and KIND_FACTS[kind][0] is not None:
                    rows.extend((s, name, "", q, None, v()) for q in _ACT_QUANTITIES)
                if "rnn" in present and kind == "RNN":
                    for t in range(draw(st.integers(1, 3))):
                        rows.append((s, name, "", "input_grad_t", t, v()))
                        rows.append((s, name, "l0", "hidden_grad_t", t, v()))
            if "global" in present:
                rows.append((s, "", "", "grad_norm_total", None, v()))
                rows.append((s, "", "", "loss", None, v()))
            if "nan" in present and k == n_steps - 1:
                rows.append((s, "", "", "nonfinite", None, 1.0))
                rows.append((s, names[-1], "", "nonfinite_backward", None, 1.0))
        return layer_trace(rows, dict(zip(names, kinds, strict=True)))

    return build()
