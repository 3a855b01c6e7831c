"""``nothing-measurable``: the run yielded too little to judge gradient flow.

A diagnosis with no finding says "healthy"; that is only true when something was measured. The
rules judge the backward signal of modules whose computation gradmedic models (Linear/Conv
layers, activations, normalisation, recurrent layers), activation statistics and RNN time
profiles. A model that computes with bare ``nn.Parameter`` s and functional calls
(``torch.sigmoid(x @ W.T)``) gives none of them when the Monitor cannot see its layers: every
rule would stay silent and the silence would read as health. This rule turns that silence into
its own outcome, ``nothing measurable: <reason>``, which ``gradmedic diagnose`` reports with
exit status 3 (:data:`gradmedic.diagnosis.finding.EXIT_UNMEASURABLE`).

It fires when no module of a modelled kind has a backward-signal row, no activation has
statistics, no RNN has a time profile and no non-finite value was seen; the reason is the
Monitor's own (``measurable: false`` and its reason in the trace's metadata) when it gives one.
Rows that were measured outweigh a verdict in the metadata.

Example::

    >>> [f.title for f in rule_measurable(Context.build(trace))]   # doctest: +SKIP
    ['nothing measurable: SigmoidMatrix computes with bare parameters (W) ...']
"""

from __future__ import annotations

from typing import Any

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import NOTHING_MEASURABLE, Finding
from gradmedic.diagnosis.registry import rule
from gradmedic.nn.taxonomy import module_category
from gradmedic.trace.schema import Quantity

__all__ = ["rule_measurable", "unmeasurable_reason"]

#: Module kinds whose backward signal the rules can judge.
_JUDGED = frozenset({"weight", "activation", "norm", "recurrent"})
#: Quantities that are evidence on their own (activation statistics, RNN profiles, NaN events).
_EVIDENCE = frozenset(
    str(q)
    for q in (
        Quantity.SATURATED_FRAC,
        Quantity.DEAD_FRAC,
        Quantity.DPHI_MEAN,
        Quantity.INPUT_GRAD_T,
        Quantity.HIDDEN_GRAD_T,
        Quantity.NONFINITE,
        Quantity.NONFINITE_FORWARD,
        Quantity.NONFINITE_BACKWARD,
        Quantity.NONFINITE_GRADIENT,
        "nonfinite_loss",
    )
)


def _meta_verdict(meta: dict[str, Any]) -> str | None:
    """The Monitor's reason when its metadata says ``measurable: false``, else None."""
    m = meta.get("measurable")
    if isinstance(m, dict):
        if m.get("value", m.get("measurable", True)) is not False:
            return None
        return str(m.get("reason") or "the Monitor measured no layer")
    if m is not False:
        return None
    for key in ("measurable_reason", "unmeasurable_reason", "reason"):
        if meta.get(key):
            return str(meta[key])
    return "the Monitor measured no layer"


def unmeasurable_reason(ctx: Context) -> str | None:
    """Why the run gives nothing to judge, or None when it gives something (see the module
    docstring)."""
    meta = ctx.trace.meta if isinstance(ctx.trace.meta, dict) else {}
    f = ctx.trace.frame
    signal = f[f["quantity"] == Quantity.SIGNAL_OUT]
    judged = [
        m for m in signal["module"].unique() if module_category(ctx.infos.get(m, {})) in _JUDGED
    ]
    if judged or ctx.present & _EVIDENCE:  # the rows outweigh any verdict in the metadata
        return None
    verdict = _meta_verdict(meta)
    if verdict is not None:
        return verdict
    grads = f[(f["quantity"] == Quantity.GRAD_NORM) & (f["parameter"] != "")]
    bare = sorted(
        {
            p if not m else f"{m}.{p}"
            for m, p in zip(grads["module"], grads["parameter"], strict=True)
        }
    )
    cls = str(meta.get("model_class") or ctx.infos.get("", {}).get("type") or "the model")
    if bare:
        shown = ", ".join(bare[:4]) + (f" and {len(bare) - 4} more" if len(bare) > 4 else "")
        return (
            f"{cls} computes with parameters ({shown}) outside any Linear/Conv, activation, "
            "normalisation or RNN module (functional calls in forward), so no layer's backward "
            "signal or activation statistics could be measured"
        )
    return "the trace holds no backward signal of any layer and no activation statistics"


@rule(slug=NOTHING_MEASURABLE, priority=0)
def rule_measurable(ctx: Context) -> list[Finding]:
    """One warning when :func:`unmeasurable_reason` gives a reason; ``evidence``: the
    quantities the trace holds and the modules with a backward signal."""
    why = unmeasurable_reason(ctx)
    if why is None:
        return []
    f = ctx.trace.frame
    with_signal = sorted(set(f[f["quantity"] == Quantity.SIGNAL_OUT]["module"]))
    return [
        Finding(
            slug=NOTHING_MEASURABLE,
            severity="warning",
            title=f"nothing measurable: {why}",
            cause=(
                f"nothing measurable: {why}. No finding here does not mean healthy: gradient "
                "flow was not judged."
            ),
            layers=[],
            evidence={
                "quantities": sorted(ctx.present),
                "modules_with_signal": [m or "(root)" for m in with_signal],
                "recorded_steps": len(ctx.trace.steps),
            },
        )
    ]
