"""Tests of the zoo's data sets, losses and the spec parser; each pins a number, shape or
message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gradmedic._callspec import is_factory_ref, parse_call, parse_spec
from gradmedic.errors import ConfigError, UnknownNameError
from gradmedic.zoo import (
    SequenceLoss,
    adding_baseline,
    copy_baseline,
    load_data,
    loss_for,
    make_loss,
)

# ---------------------------------------------------------------------------------------------
# spec strings


def test_parse_spec_coerces_values_and_keeps_calls_whole() -> None:
    name, opts = parse_spec(
        "MLP:depth=30,width=128,act=leaky_relu(0.2),init=normal(sw2=2,sb2=0.05),"
        "bias=false,bias_init=-5,lr=1e-3,norm=None,residual"
    )
    assert name == "mlp"
    assert opts == {
        "depth": 30,
        "width": 128,
        "act": "leaky_relu(0.2)",
        "init": "normal(sw2=2,sb2=0.05)",
        "bias": False,
        "bias_init": -5,
        "lr": 0.001,
        "norm": "None",  # a word: Options turns it into None only where None is meant
        "residual": True,
    }
    assert parse_spec("adding-200") == ("adding-200", {})
    assert parse_call("normal(sw2=2, sb2=0.05)") == ("normal", [], {"sw2": 2, "sb2": 0.05})
    assert parse_call("leaky_relu(0.2)") == ("leaky_relu", [0.2], {})
    assert is_factory_ref("models/net.py:build") and not is_factory_ref("mlp:depth=3")


def test_parse_spec_errors() -> None:
    with pytest.raises(ConfigError, match="option 'depth' is given twice"):
        parse_spec("mlp:depth=3,depth=4", kind="model")
    with pytest.raises(ConfigError) as exc:
        parse_spec("mlp:act=leaky_relu(0.2", kind="model")
    assert str(exc.value) == (
        "unbalanced '(' in model spec 'mlp:act=leaky_relu(0.2'; check the parentheses, "
        "e.g. act=leaky_relu(0.2)"
    )


# ---------------------------------------------------------------------------------------------
# data


def test_digits_standardised() -> None:
    d = load_data("digits")
    assert tuple(d.x.shape) == (1797, 64) and d.x.dtype == torch.float32
    assert d.y.dtype == torch.int64 and set(d.y.tolist()) == set(range(10))
    x = d.x.double()
    std = x.std(dim=0, unbiased=False)
    live = std > 0
    assert int((~live).sum()) >= 1  # some border pixels are constant: they stay 0
    assert torch.all(x[:, ~live] == 0)
    assert x[:, live].mean(dim=0).abs().max() < 1e-5
    assert (std[live] - 1).abs().max() < 1e-5
    info = d.info
    assert (info.input_shape, info.task, info.num_outputs, info.default_loss) == (
        (64,),
        "classification",
        10,
        "ce",
    )
    img = load_data("digits:image=true")
    assert tuple(img.x.shape) == (1797, 1, 8, 8) and img.info.input_shape == (1, 8, 8)
    assert torch.equal(img.x.reshape(1797, 64), d.x)


def test_digits_binary_is_parity() -> None:
    d = load_data("digits")
    b = load_data("digits-binary")
    assert tuple(b.y.shape) == (1797, 1) and b.y.dtype == torch.float32
    assert torch.equal(b.y[:, 0], (d.y % 2).float())
    assert (b.info.task, b.info.num_outputs, b.info.default_loss) == ("binary", 1, "bce-logits")


def test_adding_baseline_is_one_sixth() -> None:
    d = load_data("adding-20", n=100_000, seed=1)
    mse = float(((d.y - 1.0) ** 2).mean())
    assert adding_baseline() == pytest.approx(1 / 6)
    assert abs(mse - 1 / 6) < 0.003


def test_adding_markers_and_targets() -> None:
    T = 9
    d = load_data(f"adding-{T}", n=500, seed=3)
    assert tuple(d.x.shape) == (500, T, 2) and tuple(d.y.shape) == (500, 1)
    assert (d.info.input_shape, d.info.seq_len, d.info.task) == ((T, 2), T, "regression")
    values, marker = d.x[..., 0], d.x[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    assert torch.all(marker.sum(dim=1) == 2)
    assert torch.all(marker[:, : T // 2].sum(dim=1) == 1)
    assert torch.all(marker[:, T // 2 :].sum(dim=1) == 1)
    assert torch.allclose((values * marker).sum(dim=1, keepdim=True), d.y)
    assert torch.equal(load_data("adding-9", n=500, seed=3).x, d.x)


def test_copy_layout_and_baseline() -> None:
    assert copy_baseline(100) == pytest.approx(0.173287, abs=1e-6)
    T = 5
    d = load_data(f"copy-{T}", n=64, seed=0)
    L = T + 20
    assert tuple(d.x.shape) == (64, L, 10) and tuple(d.y.shape) == (64, L)
    assert d.y.dtype == torch.int64 and torch.all(d.x.sum(dim=-1) == 1)
    assert (d.info.task, d.info.num_outputs, d.info.seq_len) == ("seq-classification", 10, L)
    inp = d.x.argmax(dim=-1)
    symbols = inp[:, :10]
    assert symbols.max() <= 7
    assert torch.all(inp[:, 10 : T + 9] == 8)  # T-1 blanks
    assert torch.all(inp[:, T + 9] == 9)  # the delimiter
    assert torch.all(inp[:, T + 10 :] == 8)
    assert torch.all(d.y[:, : T + 10] == 8)
    assert torch.equal(d.y[:, T + 10 :], symbols)
    # the memoryless strategy (blank, then uniform over 0..7) scores exactly the baseline
    logits = torch.full((64, L, 10), -1e4)
    logits[:, : T + 10, 8] = 0.0
    logits[:, T + 10 :, :8] = 0.0
    loss = loss_for(d.info)
    assert isinstance(loss, SequenceLoss)
    assert float(loss(logits, d.y)) == pytest.approx(copy_baseline(T), rel=1e-5)


def test_mnist1d_shapes_determinism_and_linear_accuracy() -> None:
    from sklearn.linear_model import LogisticRegression

    d = load_data("mnist1d")
    assert tuple(d.x.shape) == (4000, 40) and d.x.dtype == torch.float32
    assert tuple(d.y.shape) == (4000,) and set(d.y.tolist()) == set(range(10))
    again = load_data("mnist1d", seed=0, n=300)
    assert torch.equal(again.x, load_data("mnist1d", seed=0, n=300).x)
    assert not torch.equal(again.x, load_data("mnist1d", seed=1, n=300).x)
    assert tuple(load_data("mnist1d:channels=true", n=10).x.shape) == (10, 1, 40)
    x, y = d.x.numpy(), d.y.numpy()
    clf = LogisticRegression(max_iter=2000).fit(x[:3000], y[:3000])
    assert clf.score(x[3000:], y[3000:]) > 0.3


def test_random_and_batches() -> None:
    d = load_data("random:features=8,classes=3,n=50", seed=2)
    assert tuple(d.x.shape) == (50, 8) and int(d.y.max()) <= 2 and d.info.num_outputs == 3
    a = d.batches(16, seed=5)
    b = d.batches(16, seed=5)
    first = [next(a) for _ in range(7)]  # 3 batches per epoch: crosses two epoch boundaries
    for (xa, ya), (xb, yb) in zip(first, [next(b) for _ in range(7)], strict=True):
        assert xa.shape == (16, 8) and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(d.fixed_batch(16, seed=5)[0], first[0][0])
    assert not torch.equal(d.fixed_batch(16, seed=6)[0], first[0][0])


# ---------------------------------------------------------------------------------------------
# losses


def test_losses() -> None:
    assert isinstance(make_loss("ce"), nn.CrossEntropyLoss)
    assert isinstance(make_loss("bce-logits"), nn.BCEWithLogitsLoss)
    assert make_loss("ce:label_smoothing=0.1").label_smoothing == 0.1
    assert isinstance(loss_for(load_data("digits-binary", n=4).info), nn.BCEWithLogitsLoss)
    with pytest.raises(UnknownNameError) as exc:
        make_loss("cee")
    assert str(exc.value) == (
        "unknown loss 'cee'; did you mean 'ce'? Valid names: bce, bce-logits, ce, mse, nll"
    )


def test_loss_factory_function(tmp_path: Path) -> None:
    f = tmp_path / "myloss.py"
    f.write_text("def l1(output, target):\n    return (output - target).abs().mean()\n")
    loss = make_loss(f"{f}:l1")
    assert float(loss(torch.ones(3), torch.zeros(3))) == 1.0


def test_shipped_digits_equal_scikit_learns():
    """The packaged digits.npz is scikit-learn's load_digits, bit for bit (labels and pixels)."""
    from sklearn.datasets import load_digits

    from gradmedic.zoo.data import load_digits_arrays

    x, y = load_digits_arrays()
    xs, ys = load_digits(return_X_y=True)
    assert x.shape == (1797, 64) and np.array_equal(x, xs) and np.array_equal(y, ys)
