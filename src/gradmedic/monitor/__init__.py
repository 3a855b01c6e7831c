"""The Monitor: hooks that record gradient flow during training."""

from gradmedic.monitor.monitor import Monitor
from gradmedic.monitor.probes.nonfinite import NonFiniteError
from gradmedic.monitor.schedule import Schedule

__all__ = ["Monitor", "NonFiniteError", "Schedule"]
