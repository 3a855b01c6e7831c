"""``gradmedic treat``: apply each prescribed remedy to a copy, retrain, compare, pick the best.

A fix is verified, not just suggested. :func:`treat`

1. trains the untreated model for a short, seeded run with the Monitor on;
2. diagnoses that run and collects its prescriptions and the combination it recommends, or
   takes the remedy specs you pass (:mod:`~gradmedic.workflows.treatment.candidates`);
3. for each candidate: deep-copies the untreated model, applies the remedy, retrains the same
   way (:mod:`~gradmedic.workflows.treatment.runs`);
4. measures every run the same way (:mod:`~gradmedic.workflows.treatment.metrics`: gradient
   health is ``|log10|`` of the end-to-end backward-signal ratio, the one
   :func:`gradmedic.trace.derived.signal_ratio`, or of the ratio through time for a recurrent
   model) and picks the best (:mod:`~gradmedic.workflows.treatment.choice`, :data:`BEST_RULE`);
5. returns a :class:`TreatmentResult` and, given ``out=``, saves the best weights, the
   re-appliable transform and the JSON (:mod:`~gradmedic.workflows.treatment.result`).

The before/after table and the HTML report are in :mod:`gradmedic.report.treatment`.

Example::

    >>> from gradmedic.workflows.treatment import treat
    >>> from gradmedic.workflows.train import TrainConfig
    >>> res = treat("mlp:depth=20,width=32,act=sigmoid", "digits",
    ...             config=TrainConfig(steps=40), remedies=["swap-activation(to=leaky_relu)"])
    >>> res.best
    'swap-activation(to=leaky_relu)'
"""

from __future__ import annotations

from gradmedic.workflows.treatment.choice import BEST_RULE, UNTREATED
from gradmedic.workflows.treatment.metrics import run_metrics
from gradmedic.workflows.treatment.result import TreatmentResult
from gradmedic.workflows.treatment.runs import treat

__all__ = ["BEST_RULE", "UNTREATED", "TreatmentResult", "run_metrics", "treat"]
