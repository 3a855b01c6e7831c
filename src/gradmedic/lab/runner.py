"""Run experiments and write the results page (``index.html``) and ``results.json``.

The runner fixes what makes CPU runs bit-reproducible: one torch thread (reductions split over
several threads sum in a different order, so losses differ in the last bits and chaotic runs
drift apart) and a seed per experiment. It restores the caller's thread count afterwards.
"""

from __future__ import annotations

import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradmedic._json import dumps
from gradmedic._version import __version__
from gradmedic.errors import ConfigError
from gradmedic.lab.registry import EXPERIMENTS, ExperimentResult, LabContext, get_experiment

__all__ = ["LabRun", "run_lab", "write_page"]


@dataclass
class LabRun:
    """What :func:`run_lab` produced: one result per experiment and the results page."""

    results: list[ExperimentResult]
    page: Path
    json_path: Path
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no experiment failed or errored."""
        return all(r.passed is not False and r.error is None for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "seconds": round(self.seconds, 2),
            "results": [r.to_dict() for r in self.results],
            "page": str(self.page),
        }


def _names(names: list[str] | tuple[str, ...]) -> list[str]:
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ConfigError(
            "no experiment given; name one or more (see `gradmedic lab list`) or 'all'"
        )
    if "all" in names:
        return list(EXPERIMENTS)
    out: list[str] = []
    for n in names:
        get_experiment(n)  # raises UnknownNameError with suggestions
        if n not in out:
            out.append(n)
    return out


def run_lab(
    names: list[str],
    *,
    quick: bool,
    out: Path,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    tiny: bool = False,
    threads: int = 1,
) -> LabRun:
    """Run the named experiments (``["all"]`` for every one) and write the results page.

    Args:
        names: experiment names from :data:`EXPERIMENTS`, or ``"all"``.
        quick: the ``--quick`` size (all ten in a few minutes on 2 CPU cores).
        out: output folder; each experiment writes ``out/NAME/figure.png`` and
            ``out/NAME/table.csv``, the run writes ``out/index.html`` and ``out/results.json``.
        seed: seed of every model init, data draw and batch order.
        progress: called with one-line messages while experiments run.
        tiny: seconds-sized runs for tests (verdicts at this size are not meaningful).
        threads: torch intra-op threads during the run (1 keeps CPU runs bit-reproducible).

    An experiment that raises is recorded with ``passed=None`` and its ``error``; the others
    still run and the page is still written.
    """
    wanted = _names(names)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {out}: {exc}; pass --out DIR") from exc
    say = progress or (lambda msg: None)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    results: list[ExperimentResult] = []
    t_all = time.perf_counter()
    try:
        for i, name in enumerate(wanted, start=1):
            exp = EXPERIMENTS[name]
            say(f"[{i}/{len(wanted)}] {name}: {exp.title}")
            ctx = LabContext(
                quick=quick, tiny=tiny, seed=seed, out=out, progress=say, keep_figures=True
            )
            torch.manual_seed(seed)
            t0 = time.perf_counter()
            try:
                res = exp(ctx)
            except Exception as exc:  # keep the other experiments and the page
                res = ExperimentResult(
                    name=name,
                    passed=None,
                    measured={},
                    criterion="",
                    title=exp.title,
                    claim=exp.claim,
                    source=exp.source,
                    size=ctx.size,
                    error=f"{type(exc).__name__}: {exc}",
                    note=traceback.format_exc(limit=3),
                )
            res.seconds = time.perf_counter() - t0
            verdict = res.verdict.upper() if res.error is None else "ERROR"
            say(f"[{i}/{len(wanted)}] {name}: {verdict} in {res.seconds:.1f} s")
            results.append(res)
    finally:
        torch.set_num_threads(prev_threads)
    seconds = time.perf_counter() - t_all
    meta = {
        "gradmedic_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "size": "tiny" if tiny else ("quick" if quick else "full"),
        "seed": seed,
        "threads": threads,
        "seconds": round(seconds, 2),
    }
    run = LabRun(results=results, page=out / "index.html", json_path=out / "results.json")
    run.seconds = seconds
    run.meta = meta
    run.json_path.write_text(dumps(run.to_dict(), indent=2))
    write_page(run)
    return run


def write_page(run: LabRun) -> Path:
    """Write the self-contained results page: a summary table, then per experiment its claim,
    verdict, note, figure and table."""
    import pandas as pd

    from gradmedic.report import Report

    size = run.meta.get("size", "")
    rep = Report(
        "gradmedic lab",
        f"{len(run.results)} experiment(s), {size} size, seed {run.meta.get('seed')}, "
        f"{run.seconds:.0f} s",
    )
    rep.add_meta(run.meta)
    rep.add_heading("Summary")
    rep.add_table(
        [
            {
                "experiment": r.name,
                "source": r.source,
                "verdict": r.verdict if r.error is None else "error",
                "seconds": round(r.seconds, 1),
            }
            for r in run.results
        ],
        caption="One row per experiment; details below.",
    )
    for r in run.results:
        rep.add_heading(f"{r.name}: {r.title}")
        rep.add_verdict(r.name, r.claim, r.source, r.passed, r.criterion, r.measured)
        if r.error:
            rep.add_text(f"The experiment raised {r.error}.")
        if r.note:
            rep.add_text(r.note)
        if r.figure_obj is not None:
            rep.add_figure(r.figure_obj, f"{r.name}: {r.title}")
            r.figure_obj = None
        if r.table is not None and Path(r.table).exists():
            rep.add_table(pd.read_csv(r.table), caption=f"{r.name}: {Path(r.table).name}")
    return rep.write(run.page)
