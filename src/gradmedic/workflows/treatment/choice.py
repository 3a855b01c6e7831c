"""Which candidate ``treat`` picks, by how much it beats the untreated model, and the advice.

Rule for "best" (:data:`BEST_RULE`, also written into the output):

1. among candidates with no non-finite step, those that improve gradient health
   (``health`` lower than the untreated model's) *and* reach a lower final loss: the lowest
   final loss;
2. else those that improve gradient health: the lowest final loss;
3. else those with a lower final loss whose health is no worse (by 0.1 decade): the lowest
   final loss;
4. else the untreated model (no remedy helped).

A NaN health counts as infinitely bad; so does any health of an untreated run with
non-finite steps (then every finite candidate improves on it).

Example::

    >>> rows = [{"name": UNTREATED, "health": 5.0, "final_loss": 2.0, "nonfinite": 0},
    ...         {"name": "add-norm", "health": 0.3, "final_loss": 1.7, "nonfinite": 0}]
    >>> choose(rows)
    'add-norm'
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["BEST_RULE", "UNTREATED", "advice", "choose", "margins"]

#: The name of the untreated model's row.
UNTREATED = "untreated"

BEST_RULE = (
    "finite runs only; 1) better gradient health (|log10 first/last signal ratio| lower) and "
    "lower final loss -> lowest final loss; 2) else better health -> lowest final loss; "
    "3) else lower final loss with health no worse (0.1 decade) -> lowest final loss; "
    "4) else untreated"
)


def _health(row: dict[str, Any]) -> float:
    return row["health"] if not math.isnan(row["health"]) else math.inf


def choose(rows: list[dict[str, Any]]) -> str:
    """The name of the best row by :data:`BEST_RULE`; ``rows[0]`` is the untreated model.

    Each row needs ``name``, ``health``, ``final_loss``, ``nonfinite`` (and ``error``, None
    when the candidate ran). Ties go to the lower health.
    """
    base = rows[0]
    h0 = math.inf if base["nonfinite"] else _health(base)
    l0 = base["final_loss"]
    ok = [r for r in rows[1:] if r.get("error") is None and r["nonfinite"] == 0]
    ok = [r for r in ok if math.isfinite(r["final_loss"])]
    tiers = [
        [r for r in ok if _health(r) < h0 and r["final_loss"] < l0],
        [r for r in ok if _health(r) < h0],
        [r for r in ok if r["final_loss"] < l0 and _health(r) <= h0 + 0.1],
    ]
    for tier in tiers:
        if tier:
            return min(tier, key=lambda r: (r["final_loss"], _health(r)))["name"]
    return UNTREATED


def margins(base: dict[str, Any], best: dict[str, Any]) -> dict[str, float]:
    """Best against untreated: health and loss of both, ``health_gain_decades`` (untreated
    health minus best health), ``loss_gain`` (the loss difference) and ``loss_ratio``."""
    l0, l1 = base["final_loss"], best["final_loss"]
    return {
        "health_untreated": base["health"],
        "health_best": best["health"],
        "health_gain_decades": base["health"] - best["health"],
        "signal_ratio_untreated": base["first_last_signal_ratio"],
        "signal_ratio_best": best["first_last_signal_ratio"],
        "loss_untreated": l0,
        "loss_best": l1,
        "loss_gain": l0 - l1,
        "loss_ratio": (l1 / l0) if l0 and math.isfinite(l0) else math.nan,
    }


def advice(best: dict[str, Any], out: Path | None, report: Any) -> str:
    """Python lines that apply the chosen candidate to the user's own model code (the remedy
    spec, the fused loss, the clipper in the training loop, the learning-rate factor), or a
    sentence saying that nothing beat the untreated model. ``report`` is the chosen
    candidate's :class:`~gradmedic.remedies.RemedyReport` (None for the untreated model)."""
    if best["name"] == UNTREATED:
        return (
            "No remedy beat the untreated model in this short run; keep the model as it is, or "
            "try other remedies with --remedy (gradmedic.remedies.applicable(model) lists them)."
        )
    spec = "+".join(best["specs"])
    lines = [
        "# Apply the same transform to your own model code:",
        "import torch",
        "from gradmedic.remedies import apply",
        f'model, report = apply(model, "{spec}", data_batch=(x, y))',
        "print(report)  # exactly what changed",
    ]
    if out is not None:
        lines.append(
            f'model.load_state_dict(torch.load("{out / "best_model.pt"}"))  '
            "# optional: the verified weights"
        )
    if report is not None and report.loss is not None:
        lines.append("loss_fn = report.loss  # fused loss spec: " + str(report.loss))
        fused = {"bce-logits": "torch.nn.BCEWithLogitsLoss()", "ce": "torch.nn.CrossEntropyLoss()"}
        lines.append(f"loss_fn = {fused.get(str(report.loss), str(report.loss))}")
    if report is not None and report.grad_transform is not None:
        lines += [
            "# in the training loop, between backward and the optimizer step:",
            "loss.backward()",
            "report.grad_transform(model.parameters())  # "
            + str(getattr(report.grad_transform, "spec", "")),
            "optimizer.step()",
        ]
    if report is not None and report.lr_factor != 1.0:
        lines.append(f"lr = lr * {report.lr_factor:g}")
    return "\n".join(lines)
