"""The Python lines that apply exactly the verified treatment to the user's own model code.

What was verified is a remedy spec *and* a learning rate: the lines apply the same spec
(:func:`gradmedic.remedies.apply`), the fused loss and the clipper it brings, and set the
learning rate the candidate was verified at (the grid rate times any ``lower-lr`` factor, as
one number). When no remedy is chosen, the advice says why in words (never "keep the model as
it is" for a run that is non-finite or diverging), plus the changes the diagnosis names that
gradmedic cannot apply itself (``manual`` prescriptions, e.g. standardising the data).

Example::

    >>> print(advice({"name": "reinit", "specs": ["reinit(scheme=kaiming)"], "lr": 0.1},
    ...              None, None, user_lr=0.01))
    # Apply the same transform to your own model code:
    import torch
    from gradmedic.remedies import apply
    model, report = apply(model, "reinit(scheme=kaiming)", data_batch=(x, y))
    print(report)  # exactly what changed
    lr = 0.1  # the verified learning rate (10x yours)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradmedic.workflows.treatment.choice import UNTREATED

__all__ = ["advice", "manual_changes"]

_FUSED = {"bce-logits": "torch.nn.BCEWithLogitsLoss()", "ce": "torch.nn.CrossEntropyLoss()"}


def manual_changes(diagnosis: Any) -> list[str]:
    """The diagnosis' prescriptions that gradmedic cannot apply (``manual``), as text."""
    out: list[str] = []
    for f in getattr(diagnosis, "findings", []) or []:
        for p in getattr(f, "prescriptions", []) or []:
            if getattr(p, "manual", False):
                text = f"{p}" + (f" ({p.reason})" if getattr(p, "reason", "") else "")
                if text not in out:
                    out.append(text)
    return out


def _lr_line(lr: float, user_lr: float) -> str:
    ratio = lr / user_lr if user_lr else float("nan")
    return f"lr = {lr:.3g}  # the verified learning rate ({ratio:.3g}x yours)"


def advice(
    best: dict[str, Any],
    out: Path | None,
    report: Any,
    *,
    user_lr: float,
    verdict: str = "",
    diagnosis: Any = None,
) -> str:
    """Lines that apply the chosen candidate (see the module docstring). ``best`` is its row
    (``name``, ``specs``, ``lr``), ``report`` its :class:`~gradmedic.remedies.RemedyReport`
    (None for the untreated model), ``verdict`` the verdict line (used when nothing is
    applied)."""
    lr = float(best.get("lr", user_lr))
    manual = manual_changes(diagnosis)
    if best["name"] == UNTREATED:
        lines = [verdict or "No remedy beat the untreated model."]
        if abs(lr - user_lr) > 1e-12 * user_lr:
            lines.append(f"Train at lr {lr:.3g} instead of {user_lr:.3g}:")
            lines.append(_lr_line(lr, user_lr))
        lines += [f"Change by hand (the diagnosis): {m}" for m in manual]
        lines.append(
            "Try other remedies with --remedy (gradmedic.remedies.applicable(model) lists "
            "them) or more steps."
        )
        return "\n".join(lines)
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
        lines.append(f"loss_fn = {_FUSED.get(str(report.loss), repr(str(report.loss)))}")
    if report is not None and report.grad_transform is not None:
        lines += [
            "# in the training loop, between backward and the optimizer step:",
            "loss.backward()",
            "report.grad_transform(model.parameters())  # "
            + str(getattr(report.grad_transform, "spec", "")),
            "optimizer.step()",
        ]
    lines.append(_lr_line(lr, user_lr))
    lines += [f"# also by hand (the diagnosis): {m}" for m in manual]
    return "\n".join(lines)
