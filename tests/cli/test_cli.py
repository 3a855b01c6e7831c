"""The command line: the end-to-end diagnose run, JSON output, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradmedic.cli import app
from gradmedic.trace import read_trace

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_diagnose_deep_sigmoid_mlp_shows_vanished_signal(tmp_path):
    out = tmp_path / "run"
    res = _run(
        "diagnose",
        "--model",
        "mlp:depth=30,act=sigmoid",
        "--data",
        "digits",
        "--steps",
        "20",
        "--out",
        str(out),
        "--json",
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    layers = [r for r in payload["layers"] if r.get("signal_out") is not None]
    first, last = layers[0], layers[-1]
    assert first["module"] == "0" and last["module"] == "58"
    assert first["signal_in"] / last["signal_out"] < 1e-6
    tr = read_trace(out / "trace.sqlite")
    assert tr.steps == list(range(20))
    assert tr.meta["model_spec"] == "mlp:depth=30,act=sigmoid"
    assert "vanishing-gradient" in [f["slug"] for f in payload["findings"]]
    assert (out / "report.html").exists()


def test_diagnose_table_in_the_terminal(tmp_path):
    res = _run(
        "diagnose",
        "--model",
        "mlp:depth=6,act=tanh,width=16",
        "--steps",
        "3",
        "--out",
        str(tmp_path),
        "--no-report",
    )
    assert res.exit_code == 0, res.output
    assert "trace: " in res.stdout
    assert "signal" in res.stdout.lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "mpl"],
            "error: unknown model 'mpl'; did you mean 'mlp'?",
        ),
        (
            ["--data", "digitz"],
            "error: unknown data set 'digitz'; did you mean 'digits'?",
        ),
        (
            ["--model", "missing_file.py:build"],
            "error: factory file 'missing_file.py' not found; check the path",
        ),
        (
            ["--model", "lstm"],
            "error: model 'lstm' needs sequence inputs of shape (T, F), but data set 'digits' "
            "gives samples of shape (64,); use --data adding-200 or --data copy-100",
        ),
        (
            ["--optimizer", "adamm"],
            "error: unknown optimizer 'adamm'; did you mean 'adam'?",
        ),
        (
            ["--steps", "0"],
            "error: steps must be >= 1, got 0; e.g. --steps 50",
        ),
        (
            ["--fail-on", "fatal"],
            "error: unknown severity 'fatal'; use one of: info, warning, error",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    extra = [] if "--steps" in args else ["--steps", "1"]
    res = _run("diagnose", *args, *extra, "--out", str(tmp_path))
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.stderr.split())
    assert "Traceback" not in res.output


def test_factory_returning_the_wrong_thing(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def build():\n    return 42\n")
    res = _run("diagnose", "--model", f"{f}:build", "--steps", "1", "--out", str(tmp_path))
    assert res.exit_code == 2
    assert "returned int, expected torch.nn.Module" in " ".join(res.stderr.split())


def test_data_that_does_not_fit_the_model(tmp_path):
    f = tmp_path / "d.py"
    f.write_text(
        textwrap.dedent(
            """
            import torch
            def batches():
                return [(torch.randn(8, 5), torch.randint(0, 3, (8,)))]
            """
        )
    )
    res = _run(
        "diagnose", "--model", "mlp:depth=3", "--data", f"{f}:batches", "--steps", "1",
        "--out", str(tmp_path / "a"),
    )  # fmt: skip
    assert res.exit_code == 0, res.output  # the built-in MLP is built for the data's shape
    g = tmp_path / "m.py"
    g.write_text("import torch\ndef build():\n    return torch.nn.Linear(7, 3)\n")
    res = _run(
        "diagnose", "--model", f"{g}:build", "--data", f"{f}:batches", "--steps", "1",
        "--out", str(tmp_path / "b"),
    )  # fmt: skip
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "error: the model cannot run on this data at step 0 (batch 0) in Linear: RuntimeError: "
        "mat1 and mat2 shapes cannot be multiplied (8x5 and 7x3) (module input (8, 5); batch "
        "input (8, 5) float32, target (8,) int64; data 'custom', task classification); pick a "
        "model that fits the data (e.g. --model mlp for flat data, --model lstm for adding-T) "
        "or change its options"
    )


def test_theory_json():
    res = _run("theory", "relu", "--sigma-w2", "1", "--depth", "30", "--json")
    assert res.exit_code == 0
    d = json.loads(res.stdout)
    assert d["chi1"] == pytest.approx(0.5)
    assert d["phase"] == "ordered"
    assert d["norm_ratio"] == pytest.approx(0.5**14.5, rel=1e-6)


def _entry_points() -> list[list[str]]:
    """The ``gradmedic`` console script, ``python -m gradmedic`` and ``python -m gradmedic.cli``."""
    script = Path(sys.executable).with_name("gradmedic")
    assert script.is_file(), f"console script not installed next to {sys.executable}"
    return [
        [str(script)],
        [sys.executable, "-m", "gradmedic"],
        [sys.executable, "-m", "gradmedic.cli"],
    ]


@pytest.mark.parametrize("args", [["theory", "tanh"], ["theory", "tanhh"]])
def test_python_m_gradmedic_behaves_exactly_like_the_script(args, tmp_path):
    runs = [
        subprocess.run(cmd + args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        for cmd in _entry_points()
    ]
    outcomes = [(p.returncode, p.stdout, p.stderr) for p in runs]
    assert outcomes[1] == outcomes[0] and outcomes[2] == outcomes[0]
    code, stdout, stderr = outcomes[0]
    if args[1] == "tanh":
        assert code == 0 and stderr == ""
        assert stdout.splitlines()[:2] == [
            "activation         tanh   sigma_w2=1  sigma_b2=0  depth=30",
            "phase              critical",
        ]
    else:  # bad input: one line on stderr, exit 2, no traceback
        assert code == 2 and stdout == ""
        assert len(stderr.strip().splitlines()) == 1
        assert stderr.startswith("error: unknown activation 'tanhh'; did you mean 'tanh'?")
        assert "Traceback" not in stderr


def test_treat_with_an_explicit_remedy_writes_the_transform(tmp_path):
    res = _run(
        "treat", "--model", "mlp:depth=12,act=sigmoid,width=16", "--remedy", "add-residual",
        "--steps", "15", "--lr", "0.1", "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    names = [r["name"] for r in payload["rows"]]
    assert names[0] == "untreated" and "add-residual" in names
    transform = json.loads((tmp_path / "transform.json").read_text())
    assert "add-residual" in json.dumps(transform)
    assert (tmp_path / "best_model.pt").exists()


def test_treat_with_a_remedy_that_does_not_apply(tmp_path):
    res = _run(
        "treat", "--model", "mlp:depth=3", "--remedy", "replace-rnn(to=lstm)", "--steps", "2",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert res.exit_code == 2
    msg = " ".join(res.stderr.split())
    assert msg.startswith("error: remedy 'replace-rnn' does not apply to Sequential")
    assert "remedies that apply:" in msg


def test_every_zero_is_refused_rather_than_reported_healthy(tmp_path):
    res = _run("diagnose", "--every", "0", "--steps", "2", "--out", str(tmp_path))
    assert res.exit_code == 2
    assert " ".join(res.stderr.split()) == (
        "error: every must be >= 1 (record every k-th step), got 0; e.g. --every 1"
    )


def test_out_path_that_is_a_file_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    res = _run("diagnose", "--model", "mlp:depth=2", "--steps", "1", "--out", str(f))
    assert res.exit_code == 2
    assert " ".join(res.stderr.split()) == (
        f"error: File exists ({f}); choose another --out path or fix it"
    )
    assert "Traceback" not in res.output


def test_report_of_a_trace_without_records_is_refused(tmp_path):
    import torch
    from torch import nn

    from gradmedic import Monitor

    model = nn.Linear(2, 1)
    with Monitor(model, trace=tmp_path / "trace.sqlite", every=0):
        model(torch.randn(3, 2)).sum().backward()
    res = _run("report", str(tmp_path / "trace.sqlite"), "-o", str(tmp_path / "r.html"))
    assert res.exit_code == 2
    assert "holds no recorded step with gradients, so there is nothing to diagnose" in " ".join(
        res.stderr.split()
    )


def test_treat_bad_input_in_a_pipe_is_exactly_one_line(tmp_path):
    """stderr is not a terminal: no progress bar, so nothing before the error line."""
    p = subprocess.run(
        [sys.executable, "-m", "gradmedic", "treat", "--executor", "nosuch"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == "error: unknown executor 'nosuch'. Valid names: auto, process, ray, serial\n"
