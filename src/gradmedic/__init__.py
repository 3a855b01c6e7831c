"""gradmedic: diagnose and cure vanishing and exploding gradients in PyTorch models.

The public surface::

    from gradmedic import Monitor, read_trace, GradmedicError

Names are imported lazily, so ``import gradmedic.theory`` works without torch installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_EXPORTS = {
    "Diagnosis": "diagnosis",
    "GradmedicError": "errors",
    "Monitor": "monitor",
    "NonFiniteError": "monitor",
    "Schedule": "monitor",
    "Trace": "trace",
    "TreatmentResult": "workflows.treatment",
    "diagnose": "workflows.checkup",
    "read_trace": "trace",
    "treat": "workflows.treatment",
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
    from gradmedic.diagnosis import Diagnosis
    from gradmedic.errors import GradmedicError
    from gradmedic.monitor import Monitor, NonFiniteError, Schedule
    from gradmedic.trace import Trace, read_trace
    from gradmedic.workflows.checkup import diagnose
    from gradmedic.workflows.treatment import TreatmentResult, treat


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'gradmedic' has no attribute {name!r}")
