"""Helpers shared by the report tests (tests/report/): hostile text, a finding and a small
trace built by hand. The real traces are fixtures in tests/report/conftest.py."""

from __future__ import annotations

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
