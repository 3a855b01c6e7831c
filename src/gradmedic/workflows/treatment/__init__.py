"""``gradmedic treat``: a verified fix, not a suggestion.

Every candidate remedy (and the untreated model) is trained at its own best learning rate from
one shared grid, compared against the untreated model's noise band over three seeds, and the
verdict says in words whether the model is *cured*, *improved* or has *no cure within N steps*.

- :mod:`~gradmedic.workflows.treatment.runs`: :func:`treat`, the whole procedure;
- :mod:`~gradmedic.workflows.treatment.candidates` and
  :mod:`~gradmedic.workflows.treatment.pairing`: which remedies are tried, each activation
  swap with the init theory makes critical for it;
- :mod:`~gradmedic.workflows.treatment.grid`: the learning-rate grid, pruning and budget;
- :mod:`~gradmedic.workflows.treatment.trials`, :mod:`~gradmedic.workflows.treatment.
  executors` and :mod:`~gradmedic.workflows.treatment.search`: independent trials, where they
  run (this process, worker processes or Ray tasks), and the order they are decided in;
- :mod:`~gradmedic.workflows.treatment.metrics`: the numbers each run is measured by (gradient
  health from :func:`gradmedic.trace.derived.signal_ratio`, or through time for recurrent
  models);
- :mod:`~gradmedic.workflows.treatment.choice`, :mod:`~gradmedic.workflows.treatment.verdict`
  and :mod:`~gradmedic.workflows.treatment.advice`: the rule (:data:`BEST_RULE`), the noise
  band, the verdict line and the lines that apply the verified transform;
- :mod:`~gradmedic.workflows.treatment.result`: :class:`TreatmentResult` and what it saves.

The before/after table and the HTML report are in :mod:`gradmedic.report.treatment`.

Example::

    >>> from gradmedic.workflows.treatment import treat
    >>> from gradmedic.workflows.train import TrainConfig
    >>> res = treat("mlp:depth=20,width=32,act=sigmoid", "digits",     # doctest: +SKIP
    ...             config=TrainConfig(steps=40), remedies=["add-residual"])
    >>> print(res.verdict)                                               # doctest: +SKIP
    cured: add-residual at lr 0.03: loss 2.33 -> 1.12, gradient health 0.3 decades from 1 ...
"""

from __future__ import annotations

from gradmedic.workflows.treatment.choice import BEST_RULE, HEALTHY_DECADES, UNTREATED
from gradmedic.workflows.treatment.grid import LR_FACTORS
from gradmedic.workflows.treatment.metrics import run_metrics
from gradmedic.workflows.treatment.result import TreatmentResult
from gradmedic.workflows.treatment.runs import DEFAULT_BUDGET, treat
from gradmedic.workflows.treatment.verdict import NoiseBand

__all__ = [
    "BEST_RULE",
    "DEFAULT_BUDGET",
    "HEALTHY_DECADES",
    "LR_FACTORS",
    "UNTREATED",
    "NoiseBand",
    "TreatmentResult",
    "run_metrics",
    "treat",
]
