"""gradmedic: diagnose and cure vanishing and exploding gradients in PyTorch models.

The public surface::

    from gradmedic import Monitor, read_trace, GradmedicError

Names are imported lazily, so ``import gradmedic.theory`` works without torch installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Diagnosis": "diagnosis",
    "GradmedicError": "errors",
    "Monitor": "monitor",
    "NonFiniteError": "monitor",
    "Schedule": "monitor",
    "Trace": "trace",
    "TreatmentResult": "treatment",
    "diagnose": "diagnosis",
    "read_trace": "trace",
    "treat": "treatment",
}

__all__ = [
    "Diagnosis",
    "GradmedicError",
    "Monitor",
    "NonFiniteError",
    "Schedule",
    "Trace",
    "TreatmentResult",
    "__version__",
    "diagnose",
    "read_trace",
    "treat",
]

if TYPE_CHECKING:
    from .diagnosis import Diagnosis, diagnose
    from .errors import GradmedicError
    from .monitor import Monitor, NonFiniteError, Schedule
    from .trace import Trace, read_trace
    from .treatment import TreatmentResult, treat


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'gradmedic' has no attribute {name!r}")
