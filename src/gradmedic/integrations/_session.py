"""What the Lightning and Hugging Face callbacks share, apart from the framework's hooks.

A :class:`Session` owns one :class:`~gradmedic.monitor.Monitor` for the length of a fit. The
callback tells it where the framework's gradients are final and not yet clipped
(:meth:`Session.end_step`, once per optimizer step), hands it each micro-batch's loss
(:meth:`Session.observe`) and a function that logs a step's scalars through the framework's
own logger. At the end it detaches, diagnoses the trace, writes the HTML report beside the
trace and, with ``fail_on``, raises :class:`FindingsError` so that the fit fails.

The trace's ``meta["gradients"]`` says what the recorded gradients are (see
:func:`gradient_facts`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from gradmedic.diagnosis import Diagnosis, headline, severity_rank
from gradmedic.errors import GradmedicError
from gradmedic.integrations import PREFIX
from gradmedic.monitor import Monitor
from gradmedic.report.diagnosis import write_diagnosis_report
from gradmedic.trace import read_trace
from gradmedic.trace.sinks import Sink
from gradmedic.workflows.checkup import diagnose

__all__ = ["FindingsError", "Session", "SessionCallback", "gradient_facts"]

log = logging.getLogger("gradmedic")


class FindingsError(GradmedicError):
    """The fit ended with findings at the callback's ``fail_on`` severity or worse.

    ``diagnosis`` holds the findings and ``report`` the HTML report's path (or None).
    """

    exit_code = 1  # as `gradmedic diagnose --fail-on`

    def __init__(self, message: str, diagnosis: Diagnosis, report: Path | None) -> None:
        super().__init__(message)
        self.diagnosis = diagnosis
        self.report = report


def gradient_facts(
    *, framework: str, clip: float | None, clip_algorithm: str | None, scaled: bool,
    micro_batches: int, precision: str,
) -> dict[str, Any]:  # fmt: skip
    """What the recorded gradients are, for the trace's ``meta["gradients"]``.

    >>> gradient_facts(framework="lightning 2.6", clip=0.5, clip_algorithm="norm", scaled=False,
    ...                micro_batches=2, precision="bf16-mixed")["clipping"]
    'recorded before clipping (norm, 0.5)'
    """
    clipped = clip is not None and clip > 0
    return {
        "framework": framework,
        "per": "optimizer step",
        "micro_batches": int(micro_batches),
        "accumulated": f"sum over {int(micro_batches)} micro-batches"
        if micro_batches > 1
        else "one batch",
        "clipping": f"recorded before clipping ({clip_algorithm or 'norm'}, {clip:g})"
        if clipped
        else "none configured",
        "clip_value": float(clip) if clipped else None,
        "unscaled": not scaled,
        "loss_scale": "gradients still multiplied by the AMP loss scale"
        if scaled
        else "none in the gradients",
        "precision": precision,
    }


class _LogSink:
    """Passes each step's scalars, tagged ``gradmedic/...``, to a framework's log function."""

    def __init__(self, log_fn: Callable[[int, dict[str, float]], None]) -> None:
        self.log_fn = log_fn
        self.per_layer = False

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        self.log_fn(step, {PREFIX + k: float(v) for k, v in scalars.items()})

    def close(self) -> None:
        pass


class Session:
    """One Monitor over one fit, then diagnosis, report and ``fail_on``.

    Args:
        trace: the trace path; None puts ``trace.sqlite`` in the folder given to :meth:`start`.
            An existing trace is appended to, step numbers continuing.
        every: record every k-th optimizer step (the Monitor's ``every``).
        fail_on: ``"warning"`` or ``"error"``: raise :class:`FindingsError` at the end when
            findings of that severity or worse exist; None never fails.
        report: write ``report.html`` beside the trace.
        sinks: more sinks for the Monitor (e.g. ``TensorBoardSink``).
        per_layer: log ``signal_out/<module>`` through the framework too.
        monitor_options: other ``Monitor`` keyword arguments (``modules``, ``activations``, ...).

    Raises:
        ConfigError: an unknown ``fail_on`` severity.
    """

    def __init__(
        self, trace: str | Path | None, *, every: int, fail_on: str | None, report: bool,
        sinks: Iterable[Sink], per_layer: bool, monitor_options: dict[str, Any],
    ) -> None:  # fmt: skip
        if fail_on is not None:
            severity_rank(fail_on)
        self.trace_path = Path(trace) if trace is not None else None
        self.every, self.fail_on, self.report = every, fail_on, report
        self.sinks, self.per_layer = list(sinks), per_layer
        self.options = dict(monitor_options)
        self.metadata = dict(self.options.pop("metadata", None) or {})
        self.monitor: Monitor | None = None
        self.state: dict[str, Any] = {}
        self.diagnosis: Diagnosis | None = None
        self.report_path: Path | None = None

    def start(
        self, model: nn.Module, *, folder: Path, scaler: Any, gradients: dict[str, Any],
        log_fn: Callable[[int, dict[str, float]], None] | None, first_step: int,
    ) -> Monitor:  # fmt: skip
        """Attach a Monitor to ``model``; its first step is numbered ``first_step`` or later
        (never before the trace's last step, nor the state loaded by :meth:`load_state_dict`)."""
        self.stop()
        if self.trace_path is None:
            self.trace_path = Path(folder) / "trace.sqlite"
        sinks = list(self.sinks)
        if log_fn is not None:
            framework = _LogSink(log_fn)
            framework.per_layer = self.per_layer
            sinks.insert(0, framework)
        meta = {"gradients": gradients, **self.metadata}
        mon = Monitor(
            model, trace=self.trace_path, every=self.every, scaler=scaler, metadata=meta,
            sinks=sinks, **self.options,
        )  # fmt: skip
        mon.load_state_dict({"step_index": max(first_step, self.state.get("step_index", 0))})
        self.monitor = mon.attach()
        return mon

    def observe(self, loss: Any) -> None:
        """The loss of one micro-batch (a tensor stays on its device)."""
        if self.monitor is not None:
            self.monitor.observe(loss)

    def end_step(self) -> None:
        """End the Monitor's step: call where the step's gradients are final, before clipping."""
        if self.monitor is not None:
            self.monitor.step()

    def state_dict(self) -> dict[str, Any]:
        """The Monitor's :meth:`~gradmedic.monitor.Monitor.state_dict` (the loaded one before
        :meth:`start`)."""
        return self.monitor.state_dict() if self.monitor is not None else dict(self.state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the step numbering of a checkpointed run."""
        self.state = dict(state)

    def stop(self) -> None:
        """Detach the Monitor (idempotent); the trace stays complete on disk."""
        if self.monitor is not None:
            self.state = self.monitor.state_dict()
            self.monitor.detach()
            self.monitor = None

    def finish(self) -> Diagnosis | None:
        """Stop, diagnose the trace, write the report; raise :class:`FindingsError` per
        ``fail_on``. None when the fit recorded no step."""
        self.stop()
        if self.trace_path is None or not self.trace_path.exists():
            return None
        trace = read_trace(self.trace_path)
        try:
            self.diagnosis = diagnose(trace)
        except GradmedicError as exc:
            warnings.warn(f"gradmedic could not diagnose {self.trace_path}: {exc}", stacklevel=2)
            return None
        if self.report:
            out = self.trace_path.with_name("report.html")
            self.report_path = write_diagnosis_report(out, self.diagnosis, trace)
        where = f"; report: {self.report_path}" if self.report_path else ""
        log.info("gradmedic: %s%s", headline(self.diagnosis), where)
        if self.fail_on is not None:
            found = self.diagnosis.at_least(self.fail_on)
            if found:
                slugs = ", ".join(f"{f.slug} ({f.severity})" for f in found)
                raise FindingsError(
                    f"gradmedic: {len(found)} finding(s) at '{self.fail_on}' or worse: "
                    f"{slugs}{where}; fix them or pass fail_on=None",
                    self.diagnosis,
                    self.report_path,
                )
        return self.diagnosis


class SessionCallback:
    """What both training-framework callbacks share: the constructor (a :class:`Session` with
    the Monitor's options) and the results (``diagnosis``, ``trace_path``, ``report_path``).
    A subclass sets up its own fields in :meth:`_init_state`."""

    def __init__(
        self,
        trace: str | Path | None = None,
        *,
        every: int = 20,
        fail_on: str | None = None,
        report: bool = True,
        log: bool = True,
        per_layer: bool = False,
        sinks: Iterable[Sink] = (),
        **monitor_options: Any,
    ) -> None:
        self.session = Session(
            trace, every=every, fail_on=fail_on, report=report, sinks=sinks,
            per_layer=per_layer, monitor_options=monitor_options,
        )  # fmt: skip
        self.log = log
        self._init_state()

    def _init_state(self) -> None:
        """Set up the framework-specific fields (called at the end of ``__init__``)."""

    @property
    def diagnosis(self) -> Diagnosis | None:
        return self.session.diagnosis

    @property
    def trace_path(self) -> Path | None:
        return self.session.trace_path

    @property
    def report_path(self) -> Path | None:
        return self.session.report_path
