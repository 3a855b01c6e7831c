"""The mixed-precision rule: GradScaler skips while the scale settles are an info note with
their count; skipping that persists (or skips every step) is a warning naming the first module
whose fp16 output overflowed; a scaler that saw no overflow gets the bf16 note."""

from __future__ import annotations

from diagnosis_util import event_trace, finding
from gradmedic.workflows.checkup import diagnose

MODS = [("", "Sequential", None, {}), ("0", "Linear", None, {}), ("1", "ReLU", "relu", {})]


def _trace(skips: list[int], n: int, overflow: dict[int, str] | None = None):
    rows, scale = [], 65536.0
    for s in range(n):
        rows.append((s, "", "", "loss", None, 1.0))
        rows.append((s, "", "", "amp_scale", None, scale))
        rows.append((s, "", "", "step_skipped", None, float(s in skips)))
        rows.append((s, "", "", "grad_norm_total", None, float("inf") if s in skips else 1.0))
        if s in skips:
            scale /= 2
    for s, module in (overflow or {}).items():
        rows.append((s, module, "", "amp_overflow", None, 1.0))
    return event_trace(MODS, rows)


def test_skips_while_the_scale_settles_are_an_info_note_with_the_count():
    # field case 09's pattern: 8 skips at the start, two more in the first half, then none
    f = finding(diagnose(_trace([0, 1, 2, 3, 4, 5, 6, 7, 10, 15], 30)), "amp-skipped-steps")
    assert f.severity == "info" and f.evidence["skipped"] == 10
    assert f.evidence["settled_at"] == 8 and f.evidence["skipped_after_settling"] == 2
    assert f.title == "GradScaler skipped 10 of 30 steps while its scale settled"


def test_skipping_that_persists_is_a_warning_naming_the_overflowing_module():
    skips = [0, 1, 2, 10, 14, 18, 22, 26]
    f = finding(diagnose(_trace(skips, 30, {10: "1", 14: "0"})), "amp-skipped-steps")
    assert f.severity == "warning" and f.layers == ["1"]
    assert f.evidence["skipped_after_settling"] == 5 and f.step == 10
    assert {p.remedy for p in f.prescriptions} == {"bf16-autocast", "scaler-init-scale"}


def test_every_step_skipped_says_the_model_never_updated():
    f = finding(diagnose(_trace([0, 1, 2, 3], 4, {0: ""})), "amp-skipped-steps")
    assert f.severity == "warning" and f.evidence["settled_at"] is None
    assert "never updated" in f.cause and f.layers == []


def test_a_scaler_that_saw_no_overflow_gets_the_bf16_note():
    f = finding(diagnose(_trace([], 10)), "amp-no-overflow")
    assert f.severity == "info" and "bf16" in f.cause
