"""The lab: every claim of the article as a named, seeded, reproducible experiment.

Each experiment writes ``out/NAME/figure.png`` and ``out/NAME/table.csv`` and ends with a
verdict: the claim in one sentence with its source, the measured numbers, the criterion with its
threshold, and pass or fail. :func:`run_lab` runs several and writes one self-contained results
page (``out/index.html``) and ``out/results.json``.

Run time with one torch thread on the 2-core lab machine (shared with other jobs, load ~1.5-2):
``--quick`` runs all ten in about 2 minutes (measured 129 s wall, 123 s inside run_lab); the
full size (the published figures) in about 23 minutes, 15 of them in rnn-vs-gated (estimated by
timing a tenth, for rnn-vs-gated a twentieth, of the training steps). Each experiment's run
function states its own times.

Example::

    >>> from gradmedic.lab import EXPERIMENTS, run_lab
    >>> list(EXPERIMENTS)[:2]
    ['depth-chain', 'activation-derivatives']
    >>> run = run_lab(["depth-chain"], quick=True, out="lab-out")  # doctest: +SKIP
    >>> run.results[0].passed                                    # doctest: +SKIP
    True
"""

from __future__ import annotations

from gradmedic.lab import (  # noqa: F401  (each module registers its experiments)
    activations_deep,
    chain,
    exploding,
    inception,
    initialisation,
    losses,
    normalisation,
    rnn_gated,
    saturation,
    transformer_proxy,
)
from gradmedic.lab.registry import (
    EXPERIMENTS,
    Experiment,
    ExperimentResult,
    LabContext,
    get_experiment,
)
from gradmedic.lab.runner import LabRun, run_lab

ORDER = (
    "depth-chain",
    "activation-derivatives",
    "saturation-over-training",
    "activations-deep",
    "loss-pairing",
    "rnn-vs-gated",
    "inception-aux",
    "init",
    "exploding-and-clipping",
    "normalisation-and-residual",
    "transformer-proxy",
)
_registered = dict(EXPERIMENTS)
EXPERIMENTS.clear()
EXPERIMENTS.update({n: _registered[n] for n in ORDER if n in _registered})
EXPERIMENTS.update({n: e for n, e in _registered.items() if n not in EXPERIMENTS})

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "ExperimentResult",
    "LabContext",
    "LabRun",
    "get_experiment",
    "run_lab",
]
