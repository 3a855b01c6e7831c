"""The Monitor: hooks that record gradient flow during training."""

from gradmedic.monitor.core import Monitor, NonFiniteError
from gradmedic.monitor.schedule import Schedule

__all__ = ["Monitor", "NonFiniteError", "Schedule"]
