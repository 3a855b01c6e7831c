"""The trace rules, one module per rule; importing this package registers them all.

Every rule is written from a mechanism, with thresholds (:mod:`gradmedic.diagnosis.thresholds`)
on what the mechanism does to learning:

* :mod:`~gradmedic.diagnosis.rules.measurable`: the outcome "nothing measurable" when the run
  yielded too little to judge;
* :mod:`~gradmedic.diagnosis.rules.nonfinite`: the first NaN/Inf, where it was born (a module,
  the loss, the weight scale) and when (:mod:`~gradmedic.diagnosis.rules.origin`);
* :mod:`~gradmedic.diagnosis.rules.depth`: vanishing / exploding backward signal across the
  layers at initialisation (:mod:`~gradmedic.diagnosis.rules.exploding` for the growing half),
  its attribution by cause (:mod:`~gradmedic.diagnosis.rules.attribution`) and poor-init
  (:mod:`~gradmedic.diagnosis.rules.poor_init`);
* :mod:`~gradmedic.diagnosis.rules.saturation`: saturated squashing units;
* :mod:`~gradmedic.diagnosis.rules.dead_units`: dead ReLU units;
* :mod:`~gradmedic.diagnosis.rules.rnn`: vanishing / exploding through time;
* :mod:`~gradmedic.diagnosis.rules.spikes`: gradient-norm spikes during training;
* :mod:`~gradmedic.diagnosis.rules.divergence`: a loss that rises well above its best;
* :mod:`~gradmedic.diagnosis.rules.amp`: GradScaler skipped steps (normal or persistent).

Each registers itself with :func:`gradmedic.diagnosis.registry.rule`;
:func:`gradmedic.diagnosis.registry.run_rules` runs them on a
:class:`~gradmedic.diagnosis.context.Context`.

Example::

    >>> from gradmedic.diagnosis.registry import registered
    >>> [r.name for r in registered("trace")][:3]
    ['rule_measurable', 'rule_nonfinite', 'rule_depth']
"""

from gradmedic.diagnosis.rules import (
    amp,
    dead_units,
    depth,
    divergence,
    measurable,
    nonfinite,
    rnn,
    saturation,
    spikes,
    transformer,
)

__all__ = [
    "amp",
    "dead_units",
    "depth",
    "divergence",
    "measurable",
    "nonfinite",
    "rnn",
    "saturation",
    "spikes",
    "transformer",
]
