"""Sizes beyond what a diagnostic run can hold are refused before anything is allocated, with
what they would cost; ``none`` in a spec stays a word unless the option means no value;
factories that call sys.exit or build on the meta device are one-line errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic._callspec import Options, is_none_text, parse_spec, parse_value
from gradmedic.errors import ConfigError, ModelError
from gradmedic.nn.activations import make_activation
from gradmedic.remedies import parse_remedy
from gradmedic.zoo import build_model, load_data, load_model, make_loss

INFO = load_data("digits").info


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mlp:depth=1e12", "option depth=1e+12 for model 'mlp' is too large (1e+12 layers, each built in Python, would not fit in memory); the built-in models take depth up to 10,000, e.g. mlp:depth=30"),
        ("mlp:width=1e11", "option width=1e+11 for model 'mlp' is too large (one layer that wide holds about 1e+22 weights, 4e+13 GB); the built-in models take width up to 1,048,576, e.g. mlp:width=128"),
        ("mlp:depth=3,width=100000", "model 'mlp:depth=3,width=100000' would have 1e+10 parameters (40 GB of float32 weights, before gradients and optimizer state); the built-in models are limited to 1e+09 parameters: use smaller sizes"),
        ("rnn:hidden=2000000", "option hidden=2e+06 for model 'rnn' is too large (one layer that wide holds about 4e+12 weights, 1.6e+04 GB); the built-in models take hidden up to 1,048,576, e.g. rnn:hidden=128"),
    ],
)  # fmt: skip
def test_model_sizes_beyond_bounds(spec, message):
    info = load_data("adding-20").info if spec.startswith("rnn") else INFO
    with pytest.raises(ConfigError) as exc:
        build_model(spec, info)
    assert str(exc.value) == message


def test_a_model_at_the_bounds_builds():
    net = build_model("mlp:depth=3,width=4096", INFO)
    assert sum(p.numel() for p in net.parameters()) < 1e9


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("random:n=1e12", "data set 'random:n=1e12' would hold 3.2e+13 input values (1.28e+05 GB as float32, 1,000,000,000,000 samples of 32); the built-in data sets are limited to 2e+08 values: use a smaller n (or sequence length)"),
        ("adding-1000000000", "data set 'adding-1000000000' would hold 4e+12 input values (1.6e+04 GB as float32, 2,000 samples of 2,000,000,000); the built-in data sets are limited to 2e+08 values: use a smaller n (or sequence length)"),
    ],
)  # fmt: skip
def test_data_sizes_beyond_bounds(spec, message):
    with pytest.raises(ConfigError) as exc:
        load_data(spec)
    assert str(exc.value) == message


def test_factories_that_exit_or_build_on_meta(tmp_path):
    f = tmp_path / "f.py"
    f.write_text(
        "import sys\nimport torch\n"
        "def exits():\n    sys.exit(0)\n"
        "def meta():\n    return torch.nn.Linear(3, 2, device='meta')\n"
        "def loss():\n    sys.exit('bye')\n"
    )
    with pytest.raises(ModelError) as exc:
        load_model(f"{f}:exits", INFO)
    assert str(exc.value) == (
        f"factory '{f}:exits' called sys.exit(0) instead of returning a model; make it return "
        "the nn.Module (a factory must not end the process)"
    )
    with pytest.raises(ModelError) as exc:
        load_model(f"{f}:meta", INFO)
    assert str(exc.value) == (
        f"model '{f}:meta' has parameters on the meta device (shapes without values), so it "
        "cannot be trained; build it on a real device, or call model.to_empty(device='cpu') "
        "and initialise its weights"
    )
    with pytest.raises(ModelError) as exc:
        make_loss(f"{f}:loss")
    assert str(exc.value) == (
        f"loss factory '{f}:loss' called sys.exit('bye') instead of returning a loss; make it "
        "return the loss (a factory must not end the process)"
    )


def test_none_is_a_word_until_an_option_means_no_value():
    assert parse_value("none") == "none" and parse_value("NULL") == "NULL"
    assert parse_spec("ce:reduction=none") == ("ce", {"reduction": "none"})
    assert make_loss("ce:reduction=none").reduction == "none"
    assert make_loss("mse:reduction=SUM").reduction == "sum"
    with pytest.raises(ConfigError) as exc:
        make_loss("ce:reduction=average")
    assert str(exc.value) == (
        "option reduction='average' for loss 'ce' is invalid. Valid values: mean, sum, none"
    )
    assert make_activation("gelu(approximate=none)").approximate == "none"
    opts = Options("model", "x", {"r": "none", "c": "null", "i": "None"}, valid=["r", "c", "i"])
    assert opts.get_float("r", 1.0, allow_none=True) is None
    assert opts.get_choice("c", "none", ("none", "batch")) == "none"
    assert opts.get_int("i", 3, allow_none=True) is None
    with pytest.raises(ConfigError, match="it must be an integer"):
        opts.get_int("i", 3)
    assert is_none_text(" Null ") and not is_none_text("nothing")
    assert parse_remedy("replace-rnn(to=lstm,forget_bias=none)")[1]["forget_bias"] is None
    assert parse_remedy("fix-loss(to=none)")[1]["to"] is None


def test_lstm_forget_bias_none_builds():
    net = build_model("lstm:forget_bias=none", load_data("adding-20").info)
    assert isinstance(net, nn.Module)
    assert torch.isfinite(next(net.parameters())).all()
