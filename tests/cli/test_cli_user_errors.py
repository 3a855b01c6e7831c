"""Issue 13's bad inputs through ``gradmedic diagnose``: each is one line on stderr, exit 2, no
traceback, with the exact message (never exit 0 in silence, never exit 1 as if findings)."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from gradmedic.cli import app

runner = CliRunner()

MODELS = """
import sys
import torch
from torch import nn

class Out(nn.Module):
    def __init__(self, what):
        super().__init__()
        self.lin = nn.Linear(20, 4)
        self.what = what

    def forward(self, x):
        out = self.lin(x)
        if self.what == "assert":
            assert x.shape[1] == 21
        return {"dict": {"logits": out}, "none": None, "pair": (None, out),
                "detached": out.detach()}.get(self.what, out)

def dict_out(): return Out("dict")
def none_out(): return Out("none")
def pair_out(): return Out("pair")
def detached(): return Out("detached")
def asserts(): return Out("assert")
def meta(): return nn.Linear(20, 4, device="meta")
def exits(): sys.exit(0)
def linear(): return nn.Linear(20, 4)
"""

DATA = """
import torch
g = torch.Generator().manual_seed(0)
X = torch.randn(32, 20, generator=g)
Y = torch.randint(0, 4, (32,), generator=g)
def good(): return [(X[:16], Y[:16]), (X[16:], Y[16:])]
def too_high(): return [(X, Y), (X, Y + 4)]
def negative(): return [(X, Y - 5)]
def huge(): return [(X, torch.full((32,), 10**9))]
def sizes(): return [(X, Y[:30])]
def raises(): raise ValueError("no such column 'label'")
def missing(): return open("/nonexistent/train.csv")
def midway():
    for i in range(5):
        if i == 2:
            raise RuntimeError("corrupt record 17")
        yield X, Y
def empty(): return [(X, Y), (X[:0], Y[:0])]
_IT = iter([(X, Y)])
def exhausted(): return _IT
"""

LOSSES = """
import torch.nn.functional as F
def nonscalar(out, y): return F.cross_entropy(out, y, reduction="none")
def as_float(out, y): return F.cross_entropy(out, y).item()
def as_none(out, y): F.cross_entropy(out, y)
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("factories")
    for name, text in (("m", MODELS), ("d", DATA), ("l", LOSSES)):
        (root / f"{name}.py").write_text(textwrap.dedent(text))
    return {"m": f"{root}/m.py", "d": f"{root}/d.py", "l": f"{root}/l.py"}


T = "(batch input (16, 20) float32, output (16, 4) float32, target (16,) int64)"
CASES = {
    "dict": ("m:dict_out", "d:good", None, "the model's forward returned a dict (keys: logits) at step 0 (batch 0); gradmedic needs the output tensor: return it (e.g. out['logits']) or wrap the model so that forward returns one tensor"),
    "none": ("m:none_out", "d:good", None, "the model's forward returned None at step 0 (batch 0); it must return the output tensor (is a return statement missing?)"),
    "none-first": ("m:pair_out", "d:good", None, "the model's forward returned a tuple whose first item is NoneType (at step 0 (batch 0)); gradmedic trains on the first item: put the output tensor first, e.g. return logits, extra"),
    "assert": ("m:asserts", "d:good", None, "the model failed at step 0 (batch 0) in Out: AssertionError (assert x.shape[1] == 21) at m.py:15 (module input (16, 20); batch input (16, 20) float32, target (16,) int64; data 'custom', task classification); an assert in the model failed: check what it expects (shape, dtype) against the data"),
    "detached": ("m:detached", "d:good", None, "the output the model returned at step 0 (batch 0) does not depend on its trainable parameters (no grad_fn): forward cuts the graph (.detach(), .item(), .data, torch.no_grad() or a NumPy round trip); remove that so that gradients can flow"),
    "meta": ("m:meta", "d:good", None, "model '{m}:meta' has parameters on the meta device (shapes without values), so it cannot be trained; build it on a real device, or call model.to_empty(device='cpu') and initialise its weights"),
    "sys-exit": ("m:exits", "d:good", None, "factory '{m}:exits' called sys.exit(0) instead of returning a model; make it return the nn.Module (a factory must not end the process)"),
    "label-too-high": ("m:linear", "d:too_high", None, "class label 7 at step 1 (batch 1) is out of range for the model's 4 outputs (labels 4..7; batch input (32, 20) float32, output (32, 4) float32, target (32,) int64); class labels must be 0..3: give the model's last layer 8 outputs, or relabel the targets"),
    "label-negative": ("m:linear", "d:negative", None, "class label -5 at step 0 (batch 0) is out of range for the model's 4 outputs (labels -5..-2; batch input (32, 20) float32, output (32, 4) float32, target (32,) int64); class labels must be 0..3: negative labels are skipped only when they equal ignore_index (-100)"),
    "label-1e9": ("m:linear", "d:huge", None, "the first batch of data factory '{d}:huge' holds the integer target 1000000000, which is not a class index (at most 999,999); class labels must be 0..C-1 (relabel them), and regression targets must be float tensors"),
    "batch-sizes": ("m:linear", "d:sizes", None, "the loss (CrossEntropyLoss) failed at step 0 (batch 0): ValueError: Expected input batch_size (32) to match target batch_size (30). (batch input (32, 20) float32, output (32, 4) float32, target (30,) int64); the model's output holds 32 samples but the target 30: the inputs and targets of a batch must have the same first (batch) dimension"),
    "bce-on-labels": ("m:linear", "d:good", "bce", "the loss (BCELoss) failed at step 0 (batch 0): ValueError: Using a target size (torch.Size([16])) that is different to the input size (torch.Size([16, 4])) is deprecated. Please ensure they have the same size. " + T + "; BCELoss needs float targets in [0, 1] of the output's shape, but the targets are integer class labels: use --loss ce for class labels"),
    "non-scalar": ("m:linear", "d:good", "l:nonscalar", "the loss (nonscalar) returned a tensor of shape (16,) float32 at step 0 (batch 0), expected a scalar (gradmedic backpropagates one number); reduce it, e.g. with .mean()"),
    "reduction-none": ("m:linear", "d:good", "ce:reduction=none", "the loss (CrossEntropyLoss) returned a tensor of shape (16,) float32 at step 0 (batch 0), expected a scalar (gradmedic backpropagates one number); the loss has reduction='none': use reduction='mean' (the default) or 'sum'"),
    "loss-float": ("m:linear", "d:good", "l:as_float", "the loss (as_float) returned a Python float (1.419) at step 0 (batch 0), expected a scalar tensor: return the torch.Tensor itself (not .item() or float(...)) so that gradients can flow"),
    "loss-none": ("m:linear", "d:good", "l:as_none", "the loss (as_none) returned None at step 0 (batch 0), expected a scalar tensor; is a return statement missing in the loss?"),
    "data-raises": ("m:linear", "d:raises", None, "data factory '{d}:raises' raised ValueError: no such column 'label' when called; fix the factory or what it reads (it is called with no arguments and must return an iterable of (input, target) batches)"),
    "data-file-missing": ("m:linear", "d:missing", None, "data factory '{d}:missing' raised FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/train.csv' when called; fix the factory or what it reads (it is called with no arguments and must return an iterable of (input, target) batches)"),
    "data-midway": ("m:linear", "d:midway", None, "data factory '{d}:midway' raised RuntimeError: corrupt record 17 while yielding batch 2 (the batches before it were read); fix the data pipeline at that batch"),
    "empty-batch": ("m:linear", "d:empty", None, "batch 1 of data factory '{d}:empty' is empty (input shape (0, 20), target shape (0,)); a batch needs at least one sample: drop empty batches"),
    "exhausted": ("m:linear", "d:exhausted", None, "data factory '{d}:exhausted' returned an iterable that yielded no batch when called again (an iterator or generator is used up after one pass); the factory must return a fresh iterable on every call, e.g. a list of batches or a new DataLoader"),
}  # fmt: skip


def _spec(ref: str | None, files: dict[str, str]) -> str | None:
    if ref is None or ":" not in ref or ref.split(":")[0] not in files:
        return ref
    key, name = ref.split(":")
    return f"{files[key]}:{name}"


@pytest.mark.parametrize("case", list(CASES))
def test_user_code_errors_are_one_line_exit_2(case, files, tmp_path):
    model, data, loss, message = CASES[case]
    args = ["diagnose", "--model", _spec(model, files), "--data", _spec(data, files)]
    args += ["--loss", _spec(loss, files)] if loss else []
    res = runner.invoke(app, [*args, "--steps", "4", "--out", str(tmp_path), "--no-report"])
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert lines == ["error: " + message.format(**files)]
    assert "Traceback" not in res.stderr


SIZES = {
    "lr": (["--lr", "1e39"], "learning rate 1e+39 is too large: above 1e+06 each step moves every weight by more than a million times its gradient (above 3.4e38 the rate is infinite in float32); to see an exploding run use e.g. --lr 10"),
    "seed": (["--seed", str(2**70)], "seed must be from 0 to 2**63 - 1, got 1180591620717411303424; e.g. --seed 0"),
    "depth": (["--model", "mlp:depth=1e12"], "option depth=1e+12 for model 'mlp' is too large (1e+12 layers, each built in Python, would not fit in memory); the built-in models take depth up to 10,000, e.g. mlp:depth=30"),
    "width": (["--model", "mlp:width=1e11"], "option width=1e+11 for model 'mlp' is too large (one layer that wide holds about 1e+22 weights, 4e+13 GB); the built-in models take width up to 1,048,576, e.g. mlp:width=128"),
    "params": (["--model", "mlp:depth=5000,width=4096"], "model 'mlp:depth=5000,width=4096' would have 8.39e+10 parameters (335 GB of float32 weights, before gradients and optimizer state); the built-in models are limited to 1e+09 parameters: use smaller sizes"),
    "steps-1e12": (["--steps", "1e12"], "steps=1000000000000 is more than the 1,000,000 a run may take: a diagnosis needs tens to hundreds of steps, and even at 1 ms per step this run would take 31.7 years; e.g. --steps 50"),
    "steps-10**12": (["--steps", str(10**12)], "steps=1000000000000 is more than the 1,000,000 a run may take: a diagnosis needs tens to hundreds of steps, and even at 1 ms per step this run would take 31.7 years; e.g. --steps 50"),
    "lr-text": (["--lr", "abc"], "learning rate must be a number, got 'abc'; e.g. --lr 0.01"),
    "steps-2.5": (["--steps", "2.5"], "steps must be a whole number, got 2.5; e.g. --steps 50"),
    "seed-text": (["--seed", "2**70"], "seed must be a whole number, got '2**70'; e.g. --seed 0"),
    "data-n": (["--data", "random:n=1e12"], "data set 'random:n=1e12' would hold 3.2e+13 input values (1.28e+05 GB as float32, 1,000,000,000,000 samples of 32); the built-in data sets are limited to 2e+08 values: use a smaller n (or sequence length)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(SIZES))
def test_sizes_beyond_bounds_say_what_they_would_cost(case, tmp_path):
    args, message = SIZES[case]
    base = ["diagnose", "--model", "mlp:depth=2,width=8", *args]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "o"), "--no-report"])
    assert (res.exit_code, res.stderr.strip()) == (2, "error: " + message), res.output
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_an_oserror_not_about_out_does_not_blame_out(tmp_path, monkeypatch):
    from gradmedic.workflows import checkup_run

    def broken(*_a, **_k):
        raise PermissionError(13, "Permission denied", "/etc/gradmedic.cfg")

    monkeypatch.setattr(checkup_run, "load_model", broken)
    res = runner.invoke(app, ["diagnose", "--steps", "1", "--out", str(tmp_path)])
    assert (res.exit_code, res.stderr.strip()) == (
        2,
        "error: Permission denied (/etc/gradmedic.cfg); that file is not gradmedic's output: "
        "check the path and its permissions",
    )
