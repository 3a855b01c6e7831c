"""``gradmedic lab list`` and ``gradmedic lab run NAME... | all``: the experiments behind every
claim of the article (:mod:`gradmedic.lab`), each ending with a verdict.

``lab run`` writes ``out/NAME/figure.png``, ``out/NAME/table.csv``, ``out/index.html`` and
``out/results.json``, and exits with status 1 when a claim did not reproduce; an unknown
experiment name is one line on stderr naming the close one, exit status 2.

Example::

    gradmedic lab run depth-chain loss-pairing --quick --out lab-out
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gradmedic.cli.options import JsonOpt
from gradmedic.cli.output import FAIL_EXIT, err_console, out_console, print_json

__all__ = ["lab_list", "lab_run"]


def lab_list(as_json: JsonOpt = False) -> None:
    """List the experiments and the claim each one tests."""
    from rich.table import Table

    from gradmedic.lab import EXPERIMENTS

    if as_json:
        keys = ("name", "title", "claim", "source")
        print_json([{k: getattr(e, k) for k in keys} for e in EXPERIMENTS.values()])
        return
    table = Table("name", "claim", "source", title="gradmedic lab")
    for e in EXPERIMENTS.values():
        table.add_row(e.name, e.claim, e.source)
    out_console.print(table)


def lab_run(
    names: Annotated[list[str], typer.Argument(help="Experiment names, or 'all'.")],
    quick: Annotated[bool, typer.Option("--quick", help="Minutes on a laptop CPU.")] = False,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("gradmedic-lab"),
    seed: Annotated[int, typer.Option()] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Run experiments; each ends with a verdict on the claim it tests (exit 1 if one fails)."""
    from gradmedic.lab import run_lab

    def progress(msg: str) -> None:
        if not as_json:
            err_console.print(f"[dim]{msg}[/dim]", highlight=False)

    run = run_lab(names, quick=quick, out=out, seed=seed, progress=progress)
    if as_json:
        print_json({"results": [r.to_dict() for r in run.results], "page": str(run.page)})
    else:
        _print_lab(run)
    if not run.passed:  # a claim that did not reproduce is a failed check
        raise typer.Exit(FAIL_EXIT)


def _print_lab(run: Any) -> None:
    from rich.table import Table

    table = Table("experiment", "verdict", "criterion", "seconds", title="lab results")
    for r in run.results:
        verdict = {True: "[green]pass[/green]", False: "[red]fail[/red]"}.get(r.passed, "n/a")
        table.add_row(r.name, verdict, str(r.criterion), f"{r.seconds:.1f}")
    out_console.print(table)
    out_console.print(f"results page: {run.page}")
