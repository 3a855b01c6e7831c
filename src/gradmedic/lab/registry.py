"""The experiment registry: what an experiment is, what it gets, and what it returns.

An :class:`Experiment` tests one claim of the article (or of the paper behind it). It is a
name, a one-sentence claim with its source, and a ``run(ctx)`` function. ``run`` receives a
:class:`LabContext` (size: ``tiny`` for tests, ``quick`` for minutes on a laptop CPU, else the
full size of the published figures; the seed; the output folder; a progress callback) and
returns an :class:`ExperimentResult`: the measured numbers, the criterion (a sentence with its
threshold) and the verdict ``passed`` (True/False, None when not applicable). Every experiment
writes ``out/NAME/figure.png`` and ``out/NAME/table.csv``.

Verdicts come from small pure ``judge_*`` functions in each experiment module, so the logic
that turns numbers into PASS/FAIL can be tested on constructed numbers.

Example::

    >>> from gradmedic.lab import EXPERIMENTS
    >>> EXPERIMENTS["depth-chain"].source
    'article 1.1'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gradmedic._json import to_jsonable
from gradmedic.errors import unknown_name

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "ExperimentResult",
    "LabContext",
    "experiment",
    "get_experiment",
]

T = TypeVar("T")


def _silent(msg: str) -> None:
    """The default progress callback: say nothing."""


@dataclass
class LabContext:
    """What an experiment run gets: its size, seed, output folder and a progress callback.

    ``tiny`` (tests, seconds) wins over ``quick`` (the ``--quick`` run, minutes for all ten);
    with neither the experiment runs at the size of the published figures.
    """

    quick: bool = True
    tiny: bool = False
    seed: int = 0
    out: Path = field(default_factory=lambda: Path("gradmedic-lab"))
    progress: Callable[[str], None] = _silent
    keep_figures: bool = False
    name: str = ""

    @property
    def size(self) -> str:
        """``tiny``, ``quick`` or ``full``."""
        return "tiny" if self.tiny else ("quick" if self.quick else "full")

    def pick(self, tiny: T, quick: T, full: T) -> T:
        """The value for this run's size."""
        return {"tiny": tiny, "quick": quick, "full": full}[self.size]

    def folder(self, name: str | None = None) -> Path:
        """``out/name`` (default: this experiment's folder), created."""
        path = Path(self.out) / (name or self.name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def finish(
        self,
        passed: bool | None,
        criterion: str,
        *,
        measured: dict[str, Any],
        fig: Any,
        table: pd.DataFrame | Iterable[dict[str, Any]],
        note: str = "",
    ) -> ExperimentResult:
        """Write this experiment's figure and table and build its result (see :func:`finish`)."""
        return finish(
            self,
            self.name,
            passed=passed,
            measured=measured,
            criterion=criterion,
            fig=fig,
            table=table,
            note=note,
        )


@dataclass
class ExperimentResult:
    """The outcome of one experiment.

    ``passed`` is the verdict (True = the claim reproduced under ``criterion``, False = it did
    not, None = not applicable or the run failed, see ``error``). ``measured`` holds the
    numbers the verdict rests on (JSON-able). ``note`` says what was tried, and why a part of
    the claim did not reproduce.
    """

    name: str
    passed: bool | None
    measured: dict[str, Any]
    criterion: str
    figure: Path | None = None
    table: Path | None = None
    seconds: float = 0.0
    note: str = ""
    title: str = ""
    claim: str = ""
    source: str = ""
    size: str = ""
    error: str | None = None
    figure_obj: Any = field(default=None, repr=False, compare=False)

    @property
    def verdict(self) -> str:
        """``pass``, ``fail`` or ``n/a``."""
        return {True: "pass", False: "fail"}.get(self.passed, "n/a")  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (non-finite floats as strings ``nan``/``inf``/``-inf``)."""
        return {
            "name": self.name,
            "title": self.title,
            "claim": self.claim,
            "source": self.source,
            "size": self.size,
            "verdict": self.verdict,
            "passed": self.passed,
            "criterion": self.criterion,
            "measured": to_jsonable(self.measured),
            "note": self.note,
            "figure": str(self.figure) if self.figure else None,
            "table": str(self.table) if self.table else None,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


@dataclass(frozen=True)
class Experiment:
    """A named, seeded experiment testing ``claim`` (from ``source``)."""

    name: str
    title: str
    claim: str
    source: str
    run: Callable[[LabContext], ExperimentResult]

    def __call__(self, ctx: LabContext) -> ExperimentResult:
        ctx = replace(ctx, name=self.name)
        res = self.run(ctx)
        res.name, res.title, res.claim, res.source = self.name, self.title, self.claim, self.source
        res.size = ctx.size
        return res


#: Every experiment by name, in the order of the article (filled by the experiment modules).
EXPERIMENTS: dict[str, Experiment] = {}


def experiment(
    name: str, *, title: str, claim: str, source: str
) -> Callable[[Callable[[LabContext], ExperimentResult]], Callable[[LabContext], ExperimentResult]]:
    """Register ``run(ctx)`` as the experiment ``name``."""

    def deco(fn: Callable[[LabContext], ExperimentResult]) -> Callable[..., ExperimentResult]:
        EXPERIMENTS[name] = Experiment(name, title, claim, source, fn)
        return fn

    return deco


def get_experiment(name: str) -> Experiment:
    """The experiment ``name``; an unknown name raises UnknownNameError listing the valid ones."""
    if name not in EXPERIMENTS:
        raise unknown_name("experiment", name, [*list(EXPERIMENTS), "all"])
    return EXPERIMENTS[name]


# ---------------------------------------------------------------------------------------------
# helpers shared by the experiments


def write_table(ctx: LabContext, name: str, rows: pd.DataFrame | Iterable[dict[str, Any]]) -> Path:
    """Write ``out/name/table.csv`` and return its path."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    path = ctx.folder(name) / "table.csv"
    df.to_csv(path, index=False)
    return path


def new_figure(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float]
) -> tuple[Figure, Any]:
    """A figure and its axes, like ``pyplot.subplots`` but without pyplot: the figure has its
    own Agg canvas, joins no global registry and never selects a backend, so running the lab
    leaves the caller's matplotlib backend as it was.

    >>> fig, (a1, a2) = new_figure(1, 2, figsize=(8, 3))
    >>> type(fig.canvas).__name__
    'FigureCanvasAgg'
    """
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols)


def save_figure(ctx: LabContext, name: str, fig: Figure) -> tuple[Path, Figure | None]:
    """Save ``out/name/figure.png``; return the path and the figure (kept only when the runner
    will embed it in the results page; a pyplot-free figure needs no closing)."""
    path = ctx.folder(name) / "figure.png"
    if fig.get_layout_engine() is None:  # keep titles and axis labels from overlapping
        fig.set_layout_engine("constrained")
    fig.savefig(path, dpi=110, bbox_inches="tight", facecolor="white")
    return path, (fig if ctx.keep_figures else None)


def finish(
    ctx: LabContext,
    name: str,
    *,
    passed: bool | None,
    measured: dict[str, Any],
    criterion: str,
    fig: Any,
    table: pd.DataFrame | Iterable[dict[str, Any]],
    note: str = "",
) -> ExperimentResult:
    """Write the figure and table of ``name`` and build its result."""
    table_path = write_table(ctx, name, table)
    fig_path, fig_obj = save_figure(ctx, name, fig)
    return ExperimentResult(
        name=name,
        passed=passed,
        measured=to_jsonable(measured),
        criterion=criterion,
        figure=fig_path,
        table=table_path,
        note=note,
        figure_obj=fig_obj,
    )


def geo_mean(values: Iterable[float]) -> float:
    """Geometric mean of positive finite values (nan when there are none)."""
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    if not vals:
        return math.nan
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def fmt(x: float, digits: int = 3) -> str:
    """A number for a verdict sentence: ``0.1216``, ``4.3e-05``, ``nan``."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return str(x)
    return f"{x:.{digits}g}"
