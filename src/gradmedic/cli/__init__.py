"""The ``gradmedic`` command line: diagnose | treat | lab | theory | report | demo.

Every command prints bad input as one line (``error: ...``) on stderr, without a traceback,
and exits with status 2. ``--json`` writes one JSON object to stdout and nothing else there.
``diagnose --fail-on warning|error`` exits with status 1 when findings of that severity or
worse exist, so the command can gate a CI job.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gradmedic.errors import GradmedicError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Diagnose and cure vanishing and exploding gradients in PyTorch models.",
    pretty_exceptions_enable=False,
)
lab_app = typer.Typer(no_args_is_help=True, help="Experiments for every claim of the article.")
app.add_typer(lab_app, name="lab")

out_console = Console()
err_console = Console(stderr=True)

FAIL_EXIT = 1


def _one_line(message: str) -> None:
    """``error: message`` on stderr; the message is printed literally (no rich markup)."""
    from rich.text import Text

    err_console.print(Text("error: ", style="red") + Text(message), soft_wrap=True)


def _friendly(fn):
    """Print a GradmedicError as one line on stderr and exit with its code (2), no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GradmedicError as exc:
            _one_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a folder that is a file, no permission, disk full, ...
            where = f" ({exc.filename})" if exc.filename else ""
            _one_line(f"{exc.strerror or exc}{where}; choose another --out path or fix it")
            raise typer.Exit(2) from None

    return wrapper


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Built-in model spec (mlp:depth=30,act=sigmoid,init=xavier | cnn | inception:aux=true "
        "| rnn | lstm | gru | transformer) or path/to/file.py:factory.",
    ),
]
DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="digits | digits-binary | mnist1d | adding-T | copy-T | random, "
        "or path/to/file.py:factory returning (input, target) batches.",
    ),
]
LossOpt = Annotated[
    str | None,
    typer.Option("--loss", help="ce | mse | bce | bce-logits | nll | file.py:factory."),
]


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def _clean(o: Any) -> Any:
    """Replace NaN/Inf by None so the output is strict JSON."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(_clean(obj), default=_json_default, indent=2) + "\n")


def _progress(enabled: bool, total: int, label: str):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )
    task = progress.add_task(label, total=total, loss="-")

    def update(step: int, loss: float) -> None:
        progress.update(task, completed=step + 1, loss=f"{loss:.4g}")

    return progress, update


@app.command()
@_friendly
def diagnose(
    model: ModelOpt = "mlp:depth=30,act=sigmoid",
    data: DataOpt = "digits",
    loss: LossOpt = None,
    steps: Annotated[int, typer.Option(help="Training steps to observe.")] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.01,
    optimizer: Annotated[str, typer.Option(help="sgd | momentum | adam | adamw | rmsprop")] = "sgd",
    seed: Annotated[int, typer.Option(help="Seed for init and batch order.")] = 0,
    every: Annotated[int, typer.Option(help="Record every k-th step.")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "gradmedic-out"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    fail_on: Annotated[
        str | None, typer.Option("--fail-on", help="Exit 1 on findings of this severity or worse.")
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the HTML report.")] = False,
) -> None:
    """Train briefly, record gradient flow, and say what is wrong and how to fix it."""
    from gradmedic.diagnosis.findings import severity_rank
    from gradmedic.workflows.checkup import diagnose as run_diagnosis
    from gradmedic.workflows.train import TrainConfig, resolve_data, train
    from gradmedic.zoo import load_model, loss_for

    if fail_on is not None:
        severity_rank(fail_on)
    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        seed=seed,
        every=every,
    )
    source = resolve_data(data, seed=seed)
    net = load_model(model, source.info, seed=seed)
    cfg.rnn_hidden = _has_rnn(net)
    loss_fn = loss_for(source.info, loss)
    out.mkdir(parents=True, exist_ok=True)
    trace_path = out / "trace.sqlite"
    meta = {"model_spec": model, "data_spec": data, "loss_spec": loss or source.info.default_loss}
    progress, update = _progress(not as_json and steps >= 50, steps, "training")
    with progress:
        run = train(
            net,
            source,
            cfg,
            loss=loss_fn,
            trace_path=trace_path,
            progress=update,
            metadata=meta,
        )
    assert run.trace is not None
    result = run_diagnosis(run.trace, model=net, loss=loss_fn)
    report_path = None
    if not no_report:
        from gradmedic.report import write_diagnosis_report

        report_path = write_diagnosis_report(
            out / "report.html", result, run.trace, title=f"gradmedic diagnose: {model} on {data}"
        )
    if as_json:
        payload = result.to_dict()
        payload.update(
            trace=str(trace_path),
            report=str(report_path) if report_path else None,
            losses=run.losses,
            config=cfg.to_dict(),
        )
        _print_json(payload)
    else:
        from gradmedic.report import print_diagnosis

        print_diagnosis(result, console=out_console)
        out_console.print(f"loss: {run.losses[0]:.4g} -> {run.final_loss:.4g} over {steps} steps")
        out_console.print(f"trace: {trace_path}")
        if report_path:
            out_console.print(f"report: {report_path}")
    if fail_on is not None and result.at_least(fail_on):
        raise typer.Exit(FAIL_EXIT)


def _has_rnn(model: Any) -> bool:
    from torch import nn

    return any(isinstance(m, (nn.RNN, nn.LSTM, nn.GRU)) for m in model.modules())


@app.command()
@_friendly
def theory(
    activation: Annotated[str, typer.Argument(help="tanh, relu, leaky_relu(0.1), gelu, ...")],
    sigma_w2: Annotated[float, typer.Option("--sigma-w2", help="Weight variance x fan-in.")] = 1.0,
    sigma_b2: Annotated[float, typer.Option("--sigma-b2", help="Bias variance.")] = 0.0,
    depth: Annotated[int, typer.Option(help="Number of layers.")] = 30,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Mean-field predictions: q*, chi1, depth scales, phase, gradient ratio, critical sigma_w^2."""
    from gradmedic import theory as th

    summary = th.summary(activation, sigma_w2, sigma_b2, depth)
    if as_json:
        _print_json(summary)
    else:
        out_console.print(th.format_summary(summary), highlight=False)


@app.command()
@_friendly
def report(
    trace: Annotated[Path, typer.Argument(help="A trace.sqlite file or the run's --out folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Rebuild the report from a saved trace, without the model."""
    from gradmedic.report import diagnosis_json, print_diagnosis, write_diagnosis_report
    from gradmedic.trace import read_trace
    from gradmedic.workflows.checkup import diagnose as run_diagnosis

    tr = read_trace(trace)
    result = run_diagnosis(tr)
    path = write_diagnosis_report(output, result, tr, title=f"gradmedic report: {tr.path}")
    if as_json:
        _print_json(diagnosis_json(result, tr))
    else:
        print_diagnosis(result, console=out_console)
        out_console.print(f"report: {path}")


@app.command()
@_friendly
def treat(
    model: ModelOpt = "mlp:depth=30,act=sigmoid",
    data: DataOpt = "digits",
    loss: LossOpt = None,
    remedy: Annotated[
        list[str] | None,
        typer.Option("--remedy", "-r", help="Remedy to try (repeatable); default: prescribed."),
    ] = None,
    steps: Annotated[int, typer.Option(help="Training steps per candidate.")] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    lr: Annotated[float, typer.Option()] = 0.01,
    optimizer: Annotated[str, typer.Option()] = "sgd",
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("gradmedic-treat"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Apply each prescribed remedy to a copy, retrain, and show before/after side by side."""
    from gradmedic.workflows.train import TrainConfig
    from gradmedic.workflows.treatment import print_treatment
    from gradmedic.workflows.treatment import treat as run_treat

    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed)
    result = run_treat(model, data, loss=loss, config=cfg, remedies=remedy or None, out=out)
    if as_json:
        _print_json(result.to_dict())
    else:
        print_treatment(result, console=out_console)


@lab_app.command("list")
@_friendly
def lab_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the experiments and the claim each one tests."""
    from gradmedic.lab import EXPERIMENTS

    if as_json:
        _print_json(
            [
                {"name": e.name, "title": e.title, "claim": e.claim, "source": e.source}
                for e in EXPERIMENTS.values()
            ]
        )
        return
    from rich.table import Table

    table = Table("name", "claim", "source", title="gradmedic lab")
    for e in EXPERIMENTS.values():
        table.add_row(e.name, e.claim, e.source)
    out_console.print(table)


@lab_app.command("run")
@_friendly
def lab_run(
    names: Annotated[list[str], typer.Argument(help="Experiment names, or 'all'.")],
    quick: Annotated[bool, typer.Option("--quick", help="Minutes on a laptop CPU.")] = False,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("gradmedic-lab"),
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run experiments; each ends with a verdict on the claim it tests (exit 1 if one fails)."""
    from gradmedic.lab import EXPERIMENTS, run_lab

    wanted = list(EXPERIMENTS) if names == ["all"] or "all" in names else names
    run = run_lab(wanted, quick=quick, out=out, seed=seed, progress=_lab_progress(as_json))
    if as_json:
        _print_json({"results": [_result_dict(r) for r in run.results], "page": str(run.page)})
    else:
        _print_lab(run)
    if not run.passed:  # a claim that did not reproduce is a failed check
        raise typer.Exit(FAIL_EXIT)


def _lab_progress(quiet: bool):
    def progress(msg: str) -> None:
        if not quiet:
            err_console.print(f"[dim]{msg}[/dim]", highlight=False)

    return progress


def _result_dict(r: Any) -> dict[str, Any]:
    if hasattr(r, "to_dict"):
        return r.to_dict()
    return dict(vars(r))


def _print_lab(run: Any) -> None:
    from rich.table import Table

    table = Table("experiment", "verdict", "criterion", "seconds", title="lab results")
    for r in run.results:
        verdict = {True: "[green]pass[/green]", False: "[red]fail[/red]"}.get(r.passed, "n/a")
        table.add_row(r.name, verdict, str(r.criterion), f"{r.seconds:.1f}")
    out_console.print(table)
    out_console.print(f"results page: {run.page}")


@app.command()
@_friendly
def demo(
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("gradmedic-demo"),
) -> None:
    """Diagnose a 30-layer sigmoid MLP on digits, treat it, and write a report to open."""
    from gradmedic.report import print_diagnosis, write_diagnosis_report
    from gradmedic.workflows.checkup import diagnose as run_diagnosis
    from gradmedic.workflows.train import TrainConfig, train
    from gradmedic.zoo import build_model, load_data

    data = load_data("digits")
    spec = "mlp:depth=30,act=sigmoid"
    net = build_model(spec, data.info, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    err_console.print(f"[bold]1/2[/bold] diagnosing {spec} on digits (20 steps)")
    run = train(
        net,
        data,
        TrainConfig(steps=20, lr=0.1, seed=0, every=1),
        trace_path=out / "trace.sqlite",
        metadata={"model_spec": spec, "data_spec": "digits"},
    )
    assert run.trace is not None
    result = run_diagnosis(run.trace, model=net)
    print_diagnosis(result, console=out_console)
    report_path = write_diagnosis_report(
        out / "report.html", result, run.trace, title=f"gradmedic demo: {spec} on digits"
    )
    try:
        from gradmedic.workflows.treatment import print_treatment
        from gradmedic.workflows.treatment import treat as run_treat
    except ImportError:  # pragma: no cover - treat not installed
        run_treat = None
    if run_treat is not None:
        err_console.print("[bold]2/2[/bold] treating it: each prescription on a copy, retrained")
        res = run_treat(
            spec, "digits", config=TrainConfig(steps=150, lr=0.1, seed=0), out=out / "treat"
        )
        print_treatment(res, console=out_console)
    out_console.print(f"\nReport: {report_path.resolve()}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``gradmedic``)."""
    app(args=argv, prog_name="gradmedic")


if __name__ == "__main__":  # pragma: no cover
    main()
