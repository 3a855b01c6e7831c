"""Experiment 5, loss-pairing (article 1.2): unfused output activation + loss is unstable.

``Sigmoid`` followed by ``BCELoss`` computes ``log(sigmoid(z))``; once ``sigmoid(z)`` rounds to
1 in float32 (``z`` above ~17) the chain rule multiplies ``1/(p(1-p))`` (clamped) by
``sigmoid'(z) = 0`` and the gradient of a confidently *wrong* prediction becomes 0 instead of
``sigmoid(z) - y ~ 1``. ``BCEWithLogitsLoss`` computes ``softplus`` in closed form and its
gradient ``sigmoid(z) - y`` stays exact. Likewise ``log(softmax(z))`` underflows to ``log 0 =
-inf`` once a logit gap exceeds ~104 in float32, and ``NLLLoss`` of it gives ``inf`` loss and
NaN gradients, while ``cross_entropy`` on logits uses log-sum-exp.

For logits scaled by ``s = 1 .. 1000`` we compare each float32 gradient with a float64
reference of the fused form: error = ``max |g - g_ref| / max |g_ref|`` over a batch holding
confident right and confident wrong predictions. The Monitor, run on the unfused softmax → log
chain at a large scale, names the module where the first non-finite value appears.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradmedic.lab.registry import (
    ExperimentResult,
    LabContext,
    experiment,
    fmt,
    new_figure,
)
from gradmedic.monitor import Monitor

FUSED_TOL = 1e-5
BROKEN = 0.5
BROKEN_BY = 100.0

# BCE: logits s * [1, -1, 0.5, -0.5] with targets [0, 1, 1, 0]: two confidently wrong, two right
_BCE_DIR = [1.0, -1.0, 0.5, -0.5]
_BCE_Y = [0.0, 1.0, 1.0, 0.0]
# CE: 5 classes, logits s * [1, .5, 0, -.5, -1]; sample 0 right (class 0), sample 1 wrong (4)
_CE_DIR = [1.0, 0.5, 0.0, -0.5, -1.0]
_CE_Y = [0, 4]


def _grad(fn: Any, z: torch.Tensor) -> torch.Tensor:
    z = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(z), z)
    return g.detach()


def _error(g: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |g - g_ref| / max |g_ref|`` (inf when ``g`` is not finite)."""
    g64 = g.double()
    if not bool(torch.isfinite(g64).all()):
        return math.inf
    return float((g64 - ref).abs().max() / ref.abs().max().clamp_min(1e-300))


def _compare(unfused: torch.Tensor, fused: torch.Tensor, ref: torch.Tensor) -> dict[str, Any]:
    """Errors of the unfused and fused float32 gradients against the float64 reference, and
    how many unfused entries are wrongly zero or non-finite."""
    return {
        "unfused_err": _error(unfused, ref),
        "fused_err": _error(fused, ref),
        "unfused_zero_grads": int(((unfused == 0) & (ref != 0)).sum()),
        "unfused_nonfinite": int((~torch.isfinite(unfused)).sum()),
    }


def bce_errors(scale: float) -> dict[str, Any]:
    """Gradient errors of Sigmoid+BCELoss and BCEWithLogitsLoss at logit scale ``scale``."""
    z64 = torch.tensor(_BCE_DIR, dtype=torch.float64) * scale
    y64 = torch.tensor(_BCE_Y, dtype=torch.float64)
    ref = _grad(lambda z: F.binary_cross_entropy_with_logits(z, y64, reduction="sum"), z64)
    z32, y32 = z64.float(), y64.float()
    unfused = _grad(lambda z: F.binary_cross_entropy(torch.sigmoid(z), y32, reduction="sum"), z32)
    fused = _grad(lambda z: F.binary_cross_entropy_with_logits(z, y32, reduction="sum"), z32)
    return _compare(unfused, fused, ref)


def ce_errors(scale: float) -> dict[str, Any]:
    """Gradient errors of softmax → log → NLLLoss and cross_entropy at logit scale ``scale``."""
    z64 = torch.tensor([_CE_DIR, _CE_DIR], dtype=torch.float64) * scale
    y = torch.tensor(_CE_Y)
    ref = _grad(lambda z: F.cross_entropy(z, y, reduction="sum"), z64)
    z32 = z64.float()
    unfused = _grad(lambda z: F.nll_loss(torch.log(F.softmax(z, dim=-1)), y, reduction="sum"), z32)
    fused = _grad(lambda z: F.cross_entropy(z, y, reduction="sum"), z32)
    return _compare(unfused, fused, ref)


class _Logits(nn.Module):
    """A trainable logits table: the 'model' whose output pairs with the loss."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.z = nn.Parameter(logits.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.z + 0.0 * x


class _Log(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


def monitor_unfused_ce(scale: float) -> list[dict[str, Any]]:
    """Run logits → Softmax → log → NLLLoss once under the Monitor; return its events."""
    model = nn.Sequential(
        _Logits(torch.tensor([_CE_DIR, _CE_DIR]) * scale), nn.Softmax(dim=-1), _Log()
    )
    mon = Monitor(model, every=1)
    with mon:
        loss = F.nll_loss(model(torch.zeros(2, 5)), torch.tensor(_CE_Y))
        loss.backward()
        mon.step(loss)
    return list(mon.events)


def first_broken(scales: list[float], errors: list[float]) -> float:
    """The smallest scale whose error is >= 0.5 (or not finite); nan if none."""
    for s, e in zip(scales, errors, strict=True):
        if not e < BROKEN:
            return s
    return math.nan


def judge_loss_pairing(
    fused_max_err: float, bce_broken_at: float, ce_broken_at: float
) -> tuple[bool, str]:
    """Pass when both fused forms stay within 1e-5 of the float64 reference at every scale and
    both unfused pairs break (error >= 0.5, zero or non-finite gradient) at some logit scale
    <= 100."""
    broken = all(math.isfinite(b) and b <= BROKEN_BY for b in (bce_broken_at, ce_broken_at))
    ok = fused_max_err <= FUSED_TOL and broken
    crit = (
        f"fused BCEWithLogitsLoss and cross_entropy gradients within {FUSED_TOL:g} of a float64 "
        f"reference at every logit scale (worst {fmt(fused_max_err)}); Sigmoid+BCELoss and "
        f"softmax+log+NLLLoss break (relative error >= {BROKEN}) at some scale <= "
        f"{BROKEN_BY:g} (first at {fmt(bce_broken_at)} and {fmt(ce_broken_at)})"
    )
    return bool(ok), crit


@experiment(
    "loss-pairing",
    title="Unfused output activation + loss: gradient error at extreme logits",
    claim=(
        "A loss paired with the wrong output activation (Sigmoid + BCELoss, softmax + log + "
        "NLLLoss) gives numerically unstable gradients; the fused forms stay exact."
    ),
    source="article 1.2",
)
def run_loss_pairing(ctx: LabContext) -> ExperimentResult:
    """25 (quick) / 61 (full) logit scales, closed-form gradients.

    Run time with one torch thread on the 2-core lab machine (shared, load ~1.5-2): quick 0.3 s,
    full 0.3 s (measured).
    """
    scales = [
        float(s) for s in ctx.pick([1.0, 30.0, 100.0], np.logspace(0, 3, 25), np.logspace(0, 3, 61))
    ]
    rows: list[dict[str, Any]] = []
    ctx.progress(f"loss-pairing: {len(scales)} logit scales")
    for s in scales:
        for pair, fn in (("bce", bce_errors), ("ce", ce_errors)):
            rows.append({"pair": pair, "scale": s, **fn(s)})
    events = monitor_unfused_ce(200.0)
    first = events[0] if events else {}
    bce = [r for r in rows if r["pair"] == "bce"]
    ce = [r for r in rows if r["pair"] == "ce"]
    bce_at = first_broken(scales, [r["unfused_err"] for r in bce])
    ce_at = first_broken(scales, [r["unfused_err"] for r in ce])
    fused_max = max(r["fused_err"] for r in rows)
    passed, crit = judge_loss_pairing(fused_max, bce_at, ce_at)
    fig, ax = new_figure(figsize=(6.8, 4.0))
    cap = 1e3
    for sub, label in ((bce, "Sigmoid + BCELoss"), (ce, "softmax + log + NLLLoss")):
        ax.loglog(
            scales,
            [min(max(r["unfused_err"], 1e-12), cap) for r in sub],
            "o-",
            ms=3,
            label=f"{label} (non-finite drawn at {cap:g})",
        )
    for sub, label in ((bce, "BCEWithLogitsLoss"), (ce, "cross_entropy(logits)")):
        ax.loglog(scales, [max(r["fused_err"], 1e-12) for r in sub], "s--", ms=3, label=label)
    ax.axhline(BROKEN, color="grey", ls=":", lw=1)
    ax.set_xlabel("logit scale s")
    ax.set_ylabel("max |g - g_ref| / max |g_ref|")
    ax.set_title("float32 gradient error vs float64 reference (1e-12 = exact)")
    ax.legend(fontsize=7)
    measured = {
        "fused_max_err": fused_max,
        "bce_unfused_first_broken_scale": bce_at,
        "ce_unfused_first_broken_scale": ce_at,
        "bce_unfused_zero_grads_at_max": bce[-1]["unfused_zero_grads"],
        "ce_unfused_nonfinite_at_max": ce[-1]["unfused_nonfinite"],
        "monitor_first_nonfinite_kind": first.get("kind"),
        "monitor_first_nonfinite_module": first.get("module"),
    }
    note = (
        "Batch: confident right and confident wrong predictions, loss summed. Sigmoid+BCELoss "
        "returns zero gradients for confidently wrong logits once sigmoid rounds to 1; "
        "log(softmax) returns -inf and NaN gradients once a logit gap passes ~104. The Monitor, "
        "run on Logits -> Softmax -> log at scale 200, flags the first module with a non-finite "
        f"output: {first.get('module')!r} ({first.get('kind')}), i.e. the log of the softmax."
    )
    return ctx.finish(passed, crit, measured=measured, fig=fig, table=rows, note=note)
