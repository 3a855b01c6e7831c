"""gradmedic: diagnose and cure vanishing and exploding gradients in PyTorch models.

The public surface::

    from gradmedic import Monitor, read_trace, GradmedicError
"""

__version__ = "0.1.0"

from .errors import GradmedicError  # noqa: E402
from .monitor import Monitor, NonFiniteError, Schedule  # noqa: E402
from .trace import Trace, read_trace  # noqa: E402

__all__ = [
    "GradmedicError",
    "Monitor",
    "NonFiniteError",
    "Schedule",
    "Trace",
    "__version__",
    "read_trace",
]
