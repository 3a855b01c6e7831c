"""TensorBoardSink: the event file read back with tensorboard's reader equals the trace; the
integrations package and its sinks import no optional library until used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from integration_expect import expected, float32, tensorboard_scalars, train_mlp

from gradmedic.integrations import TensorBoardSink


def test_event_file_holds_the_traces_scalars_under_gradmedic(tmp_path):
    sink = TensorBoardSink(tmp_path / "tb", per_layer=True)
    trace = train_mlp([sink], steps=6, every=2)
    want = expected(trace, per_layer=True)
    got = tensorboard_scalars(tmp_path / "tb")
    assert sorted(got) == sorted(f"gradmedic/{tag}" for tag in want)
    assert "gradmedic/signal_out/2" in got and "gradmedic/signal_ratio" in got
    for tag, series in want.items():
        assert [s for s, _ in series] == [0, 2, 4]
        assert got[f"gradmedic/{tag}"] == float32(series), tag  # stored as float32
    assert got["gradmedic/grad_norm_total"][0][1] > 0


def test_a_given_writer_is_flushed_not_closed(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    sink = TensorBoardSink(writer=writer, prefix="gm/")
    assert sink.log_dir == str(tmp_path) and not sink.per_layer
    trace = train_mlp([sink], steps=2, every=1)
    writer.add_scalar("mine", 1.0, 7)  # still open after the Monitor closed the sink
    writer.close()
    got = tensorboard_scalars(tmp_path)
    assert got["mine"] == [(7, 1.0)]
    assert got["gm/loss"] == float32(expected(trace)["loss"])
    assert not any(t.startswith("gm/signal_out/") for t in got)


def test_missing_tensorboard_says_how_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ModuleNotFoundError("No module named 'tensorboard'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ImportError, match=r"pip install 'gradmedic\[tensorboard\]'"):
        TensorBoardSink("unused")


OPTIONAL = ("lightning", "transformers", "mlflow", "tensorboard", "accelerate")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json; {code}; print(json.dumps(sorted(m for m in {OPTIONAL!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_package_and_the_sinks_import_no_framework():
    assert _loaded_after("import gradmedic.integrations") == []
    # the TensorBoard sink loads tensorboard only when it builds its SummaryWriter
    assert _loaded_after("from gradmedic.integrations import TensorBoardSink, MlflowSink") == []
    assert _loaded_after("from gradmedic.integrations import tensorboard") == []
