"""The Monitor: hooks that record gradient flow during training."""

from .core import Monitor, NonFiniteError
from .schedule import Schedule

__all__ = ["Monitor", "NonFiniteError", "Schedule"]
