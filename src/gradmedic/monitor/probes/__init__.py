"""Probes: one family of recorded quantities each, behind the small :class:`Probe` interface.

``params`` (gradient, parameter norms and update ratios), ``signal`` (backward signal and
gains), ``activations`` (slope and output statistics), ``rnn`` (gradients through time),
``nonfinite`` (the first NaN/Inf module and the unrecorded-step sentinel) and ``step`` (loss,
calls, AMP flag). ``base`` holds the interface and the fused-norm helpers.
"""

from gradmedic.monitor.probes.activations import ActivationProbe
from gradmedic.monitor.probes.base import Probe
from gradmedic.monitor.probes.nonfinite import NonFiniteError, NonFiniteProbe
from gradmedic.monitor.probes.params import ParamsProbe
from gradmedic.monitor.probes.rnn import RnnProbe
from gradmedic.monitor.probes.signal import SignalProbe
from gradmedic.monitor.probes.step import StepProbe, amp_scale

__all__ = [
    "ActivationProbe",
    "NonFiniteError",
    "NonFiniteProbe",
    "ParamsProbe",
    "Probe",
    "RnnProbe",
    "SignalProbe",
    "StepProbe",
    "amp_scale",
]
