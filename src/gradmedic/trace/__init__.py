"""The trace: what the Monitor recorded, on disk (SQLite) and read back.

``schema`` names every quantity, ``sqlite`` writes and reads the file, ``view`` holds the
read-back :class:`Trace` with cached per-layer pivots, ``derived`` is the only place the
end-to-end signal ratio, gradient spikes and the global gradient norm are defined, and
``sinks`` is the protocol for streaming scalars elsewhere (TensorBoard, MLflow).
"""

from gradmedic.trace.schema import COLUMNS, SCHEMA_VERSION, Quantity, Row
from gradmedic.trace.sqlite import TraceWriter, frame_from_rows, read_trace
from gradmedic.trace.view import Trace

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "Quantity",
    "Row",
    "Trace",
    "TraceWriter",
    "frame_from_rows",
    "read_trace",
]
