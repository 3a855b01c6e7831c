"""Sinks: stream a few scalars of every recorded step elsewhere (TensorBoard, MLflow, a log).

A sink is any object with ``write(step, scalars)`` and ``close()`` (:class:`Sink`); pass a list
of them to ``Monitor(..., sinks=[...])``. After each recorded step the Monitor calls ``write``
with the step's scalars, and ``close`` once at detach. The trace stays the full record; a sink
gets this compact dict (the tags, :data:`TAGS`; a tag is left out when the step lacks its data):

* ``grad_norm_total``: the global gradient norm of the step (loss / weight);
* ``loss``: the mean observed loss (``Monitor.observe`` or ``step(loss)``), when one was;
* ``nonfinite``: the number of non-finite events dated to the step (0.0 when none), the count
  of its ``nonfinite_forward`` / ``nonfinite_backward`` / ``nonfinite_gradient`` rows. A NaN
  caught by the sentinel on an unrecorded step is written, when it is read, as its own call
  ``write(that_step, {"nonfinite": 1.0})``;
* ``signal_ratio``: the first/last backward-signal ratio of the step,
  :func:`gradmedic.trace.derived.end_to_end_rows` (the same number as ``signal_ratio(trace,
  step)``);
* ``worst_gain``: the backward gain farthest from 1 (largest ``|log10 gain|``, a gain of 0
  first) over the step's modules outside auxiliary branches;
* ``worst_dead_frac`` / ``worst_saturated_frac``: the largest ``dead_frac`` /
  ``saturated_frac`` of any activation layer at the step (the worst layer for each);
* ``signal_out/<module>``: ``||dL/dy||`` of every module, only for a sink whose attribute
  ``per_layer`` is true.

Values are Python floats equal to the trace's. A sink that raises never stops training: the
error is caught, reported once per sink as a ``RuntimeWarning``, and the sink keeps being
called. Ready-made sinks: ``gradmedic.integrations.tensorboard.TensorBoardSink`` and
``gradmedic.integrations.mlflow.MlflowSink``.

Example::

    >>> class Printer:
    ...     def write(self, step, scalars):
    ...         print(step, sorted(scalars))
    ...     def close(self):
    ...         print("closed")
    >>> sinks = Sinks([Printer()])
    >>> sinks.write_rows([(0, "", "", "grad_norm_total", None, 1.5)])
    0 ['grad_norm_total', 'nonfinite']
    >>> sinks.close()
    closed
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from gradmedic.errors import ConfigError
from gradmedic.nn.taxonomy import module_category
from gradmedic.trace.derived import end_to_end_rows, is_auxiliary
from gradmedic.trace.schema import COLUMNS, Quantity, Row
from gradmedic.trace.view import Trace

__all__ = ["LAYER_TAG", "TAGS", "Sink", "Sinks", "module_infos", "step_scalars"]

#: the scalar names a sink receives (besides the per-layer ``signal_out/<module>``)
TAGS = (
    "grad_norm_total",
    "loss",
    "nonfinite",
    "signal_ratio",
    "worst_gain",
    "worst_dead_frac",
    "worst_saturated_frac",
)
#: the per-layer tag: ``LAYER_TAG + module name``
LAYER_TAG = "signal_out/"

_EVENTS = frozenset(
    q.value
    for q in (Quantity.NONFINITE_FORWARD, Quantity.NONFINITE_BACKWARD, Quantity.NONFINITE_GRADIENT)
)
_PLAIN = {Quantity.GRAD_NORM_TOTAL.value: "grad_norm_total", Quantity.LOSS.value: "loss"}
_LAYER = frozenset(("signal_out", "signal_in", "gain", "dead_frac", "saturated_frac"))
_MODULE_COLUMNS = ["ord", "name", "type", "activation", "n_params", "info"]


@runtime_checkable
class Sink(Protocol):
    """Receives the scalars of each recorded step (see the module docstring for the tags)."""

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Called once per recorded step, in step order, after the step's rows are written."""

    def close(self) -> None:
        """Called once when the Monitor detaches."""


def module_infos(modules: Iterable[tuple]) -> dict[str, dict[str, Any]]:
    """``name -> info`` from rows of the trace's modules table (``ord, name, type, activation,
    n_params, info``), read exactly as :meth:`Trace.module_infos` reads them."""
    mods = pd.DataFrame(list(modules), columns=_MODULE_COLUMNS)
    return Trace(frame=pd.DataFrame(columns=COLUMNS), modules=mods, meta={}).module_infos()


def _log_distance(g: float) -> float:
    """``|log10 g|``: inf for a gain of 0 or inf, -1 (never the worst) for NaN."""
    if math.isnan(g) or g < 0:
        return -1.0
    return math.inf if g == 0 or math.isinf(g) else abs(math.log10(g))


def _layer_scalars(
    layers: dict[str, dict[str, float]],
    infos: Mapping[str, dict[str, Any]] | None,
    step: int,
    per_layer: bool,
) -> dict[str, float]:
    out: dict[str, float] = {}
    main = {m: q for m, q in layers.items() if not is_auxiliary(m)}
    gains = [(m, q["gain"]) for m, q in main.items() if "gain" in q]
    scored = [(_log_distance(g), -i, g) for i, (_, g) in enumerate(gains)]
    scored = [s for s in scored if s[0] >= 0]
    if scored:
        out["worst_gain"] = max(scored)[2]
    for key in ("dead_frac", "saturated_frac"):
        vals = [q[key] for q in main.values() if key in q and not math.isnan(q[key])]
        if vals:
            out[f"worst_{key}"] = max(vals)
    if infos is not None:
        order = sorted(layers, key=lambda n: (infos.get(n, {}).get("ord", 10**9), n))
        rows = [
            {
                "module": name,
                "category": module_category(infos.get(name, {"type": "?"})),
                **{k: layers[name].get(k) for k in ("signal_out", "signal_in", "gain")},
                "dead_frac": layers[name].get("dead_frac"),
            }
            for name in order
        ]
        e2e = end_to_end_rows(rows, step)
        if e2e is not None:
            out["signal_ratio"] = e2e.ratio
    if per_layer:
        for name, q in layers.items():
            if "signal_out" in q:
                out[LAYER_TAG + name] = q["signal_out"]
    return out


def step_scalars(
    rows: Iterable[Row],
    infos: Mapping[str, dict[str, Any]] | None = None,
    *,
    per_layer: bool = False,
) -> dict[int, dict[str, float]]:
    """The sink scalars of each step that ``rows`` hold, in order of first appearance.

    ``infos`` (:func:`module_infos` of the modules table) is needed for ``signal_ratio``;
    without it that tag is left out. ``per_layer`` adds ``signal_out/<module>``.

    >>> step_scalars([(3, "", "", "loss", None, 0.5), (3, "a", "", "nonfinite_forward", None, 1.0)])
    {3: {'nonfinite': 1.0, 'loss': 0.5}}
    """
    out: dict[int, dict[str, float]] = {}
    layers: dict[int, dict[str, dict[str, float]]] = {}
    for step, module, parameter, quantity, _idx, value in rows:
        scalars = out.setdefault(step, {"nonfinite": 0.0})
        tag = _PLAIN.get(quantity)
        if tag is not None and not module and not parameter:
            scalars[tag] = float(value)
        elif quantity in _EVENTS:
            scalars["nonfinite"] += 1.0
        elif quantity in _LAYER and module and not parameter:
            layers.setdefault(step, {}).setdefault(module, {})[quantity] = float(value)
    for step, by_module in layers.items():
        out[step].update(_layer_scalars(by_module, infos, step, per_layer))
    return out


class Sinks:
    """A list of sinks, each shielded: an exception is caught and warned about once per sink.

    Args:
        sinks: objects following :class:`Sink`; one with a true ``per_layer`` attribute also
            gets ``signal_out/<module>``.

    Raises:
        ConfigError: when an element lacks a callable ``write`` or ``close``.
    """

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self.sinks = list(sinks)
        for s in self.sinks:
            if not (callable(getattr(s, "write", None)) and callable(getattr(s, "close", None))):
                raise ConfigError(
                    f"sinks= takes objects with write(step, scalars) and close() methods "
                    f"(gradmedic.trace.sinks.Sink); got {type(s).__name__}"
                )
        self._warned: set[int] = set()
        self.infos: dict[str, dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.sinks)

    def set_modules(self, modules: Iterable[tuple]) -> None:
        """Take the model's structure (rows of the trace's modules table), which
        ``signal_ratio`` needs to find the first and last weighted layers."""
        if self.sinks:
            self.infos = module_infos(modules)

    def write_rows(self, rows: Iterable[Row]) -> None:
        """Pass each sink the scalars of every step in ``rows``."""
        if not self.sinks:
            return
        wide = any(getattr(s, "per_layer", False) for s in self.sinks)
        for step, scalars in step_scalars(rows, self.infos, per_layer=wide).items():
            narrow = {k: v for k, v in scalars.items() if not k.startswith(LAYER_TAG)}
            for sink in self.sinks:
                got = scalars if getattr(sink, "per_layer", False) else narrow
                self._call(sink, "write", step, got)

    def close(self) -> None:
        """Close every sink (each once; errors are warned about, not raised)."""
        for sink in self.sinks:
            self._call(sink, "close")

    def _call(self, sink: Sink, method: str, *args: object) -> None:
        try:
            getattr(sink, method)(*args)
        except Exception as exc:
            if id(sink) not in self._warned:
                self._warned.add(id(sink))
                warnings.warn(
                    f"gradmedic sink {type(sink).__name__}.{method} raised {exc!r}; training "
                    "goes on and further errors of this sink are not reported",
                    RuntimeWarning,
                    stacklevel=4,
                )
