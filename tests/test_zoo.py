"""Tests for the model, data and loss zoo and the spec parser; each pins a number, shape or
message."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gradmedic._callspec import is_factory_ref, load_factory, parse_call, parse_spec
from gradmedic.errors import ConfigError, DataError, ModelError, UnknownNameError
from gradmedic.zoo import (
    ACTIVATIONS,
    InceptionNet,
    ResidualBlock,
    SequenceLoss,
    SequenceModel,
    activation_gain,
    adding_baseline,
    build_model,
    copy_baseline,
    load_data,
    load_model,
    loss_for,
    make_activation,
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
        "norm": None,
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
# models


@pytest.mark.parametrize(
    ("data", "model", "out"),
    [
        ("digits", "mlp:depth=4,width=16", (5, 10)),
        ("digits", "mlp:depth=6,width=16,residual=true,norm=layer", (5, 10)),
        ("digits", "transformer", (5, 10)),
        ("digits-binary", "mlp:depth=3,width=8,final_act=sigmoid", (5, 1)),
        ("digits:image=true", "cnn", (5, 10)),
        ("digits:image=true", "plaincnn:depth=3", (5, 10)),
        ("digits:image=true", "inception:aux=true", (5, 10)),
        ("mnist1d:channels=true,n=20", "cnn:norm=batch", (5, 10)),
        ("mnist1d:channels=true,n=20", "inception:blocks=2", (5, 10)),
        ("mnist1d:n=20", "transformer", (5, 10)),
        ("adding-30:n=20", "rnn:act=relu", (5, 1)),
        ("adding-30:n=20", "lstm", (5, 1)),
        ("adding-30:n=20", "gru:layers=2", (5, 1)),
        ("adding-30:n=20", "transformer", (5, 1)),
        ("copy-4:n=20", "lstm:hidden=8", (5, 24, 10)),
        ("copy-4:n=20", "transformer", (5, 24, 10)),
    ],
)
def test_model_output_shapes(data: str, model: str, out: tuple[int, ...]) -> None:
    d = load_data(data)
    net = load_model(model, d.info, seed=0)
    x, _ = d.fixed_batch(5)
    assert tuple(net(x).shape) == out


def test_mlp_structure_and_seed() -> None:
    info = load_data("digits", n=10).info
    m = build_model("mlp:depth=3,width=16,act=tanh,norm=batch", info)
    assert isinstance(m, nn.Sequential)
    assert [type(m[i]).__name__ for i in range(len(m))] == [
        "Linear",
        "BatchNorm1d",
        "Tanh",
        "Linear",
        "BatchNorm1d",
        "Tanh",
        "Linear",
    ]
    assert [n for n, _ in m.named_children()][:3] == ["0", "1", "2"]
    r = build_model("mlp:depth=10,residual=true", info)
    assert sum(isinstance(b, ResidualBlock) for b in r) == 4
    assert sum(isinstance(x, nn.Linear) for x in r.modules()) == 10
    a = build_model("mlp:depth=2", info, seed=7)
    b = build_model("mlp:depth=2", info, seed=7)
    assert torch.equal(a[0].weight, b[0].weight)
    assert isinstance(make_activation("leaky_relu(0.2)"), nn.LeakyReLU)
    assert make_activation("leaky_relu(0.2)").negative_slope == 0.2
    assert set(ACTIVATIONS) >= {"relu", "sigmoid", "tanh", "linear", "relu6"}
    assert activation_gain("relu") == pytest.approx(math.sqrt(2))
    assert activation_gain("relu6") == pytest.approx(math.sqrt(2), rel=1e-3)  # ≈ relu on N(0,1)


def test_mlp_inits_set_the_variance() -> None:
    info = load_data("random:features=512,n=4").info
    m = build_model("mlp:depth=3,width=512,init=normal(sw2=2)", info)
    assert float(m[2].weight.detach().var()) == pytest.approx(2 / 512, rel=0.05)
    assert float(m[2].bias.detach().abs().max()) == 0.0
    k = build_model("mlp:depth=3,width=512,act=relu,init=kaiming,bias_init=-5", info)
    assert float(k[2].weight.detach().var()) == pytest.approx(2 / 512, rel=0.05)
    assert torch.all(k[0].bias == -5) and torch.all(k[2].bias == -5)
    assert not torch.all(k[4].bias == -5)  # the output layer keeps its init
    t = build_model("mlp:depth=3,width=512,act=tanh,init=kaiming", info)
    assert float(t[2].weight.detach().var()) == pytest.approx((5 / 3) ** 2 / 512, rel=0.05)


def test_lstm_forget_bias_and_rnn_radius() -> None:
    info = load_data("adding-10", n=4).info
    lstm = build_model("lstm:hidden=16,layers=2,forget_bias=1.0", info)
    assert isinstance(lstm, SequenceModel)
    for layer in range(2):
        total = getattr(lstm.rnn, f"bias_ih_l{layer}") + getattr(lstm.rnn, f"bias_hh_l{layer}")
        assert torch.all(total[16:32] == 1.0)
    rnn = build_model("rnn:hidden=64,radius=3", info)
    rho = torch.linalg.eigvals(rnn.rnn.weight_hh_l0.detach().double()).abs().max()
    assert float(rho) == pytest.approx(3.0, abs=1e-4)
    irnn = build_model("rnn:act=relu,init=identity,hidden=8", info)
    assert torch.equal(irnn.rnn.weight_hh_l0, torch.eye(8))


def test_inception_aux_outputs() -> None:
    d = load_data("digits:image=true", n=8)
    net = build_model("inception:aux=true", d.info)
    assert isinstance(net, InceptionNet) and len(net.aux_heads) == 2
    x, y = d.fixed_batch(8)
    net.train()
    assert tuple(net(x).shape) == (8, 10)
    assert [tuple(a.shape) for a in net.aux_outputs] == [(8, 10), (8, 10)]
    aux = net.aux_loss(nn.CrossEntropyLoss(), y)
    assert aux.requires_grad and float(aux.detach()) > 0
    net.eval()
    net(x)
    assert net.aux_outputs == []


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


# ---------------------------------------------------------------------------------------------
# error messages

_FACTORY = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x)


def build():
    return Net()


def build_for(info):
    return nn.Linear(info.input_shape[0], info.num_outputs)


def not_a_model():
    return 42


def no_params():
    return nn.ReLU()


SIZE = 3
"""


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    f = tmp_path / "user_models.py"
    f.write_text(_FACTORY)
    return f


def test_factory_models(factory_file: Path) -> None:
    info = load_data("digits", n=4).info
    assert isinstance(load_model(f"{factory_file}:build", info), nn.Module)
    assert load_model(f"{factory_file}:build_for", info).out_features == 10
    assert callable(load_factory(f"{factory_file}:Net"))


def test_unknown_names_messages() -> None:
    info = load_data("digits", n=4).info
    with pytest.raises(UnknownNameError) as exc:
        build_model("mlpp:depth=3", info)
    assert str(exc.value) == (
        "unknown model 'mlpp'; did you mean 'mlp'? Valid names: cnn, gru, inception, lstm, mlp, "
        "plaincnn, rnn, transformer"
    )
    with pytest.raises(UnknownNameError) as exc:
        load_data("digitz")
    assert str(exc.value) == (
        "unknown data set 'digitz'; did you mean 'digits'? Valid names: adding-T, copy-T, "
        "digits, digits-binary, mnist1d, random"
    )
    with pytest.raises(ConfigError) as exc:
        build_model("mlp:depht=3", info)
    assert str(exc.value) == (
        "unknown option 'depht' for model 'mlp'; did you mean 'depth'? Valid options: act, bias, "
        "bias_init, depth, final_act, init, norm, residual, width"
    )
    for bad in ("adding-0", "adding-x"):
        with pytest.raises(ConfigError) as exc:
            load_data(bad)
        assert str(exc.value) == (
            f"invalid sequence length in data spec '{bad}': adding-T needs an integer T >= 2; "
            "use e.g. --data adding-200"
        )


def test_factory_error_messages(factory_file: Path, tmp_path: Path) -> None:
    info = load_data("digits", n=4).info
    missing = tmp_path / "nope.py"
    with pytest.raises(ConfigError) as exc:
        load_model(f"{missing}:build", info)
    assert str(exc.value) == (
        f"factory file '{missing}' not found; check the path (relative paths start from "
        f"{Path.cwd()})"
    )
    with pytest.raises(ConfigError) as exc:
        load_model(f"{factory_file}:buidl", info)
    assert str(exc.value) == (
        f"factory file '{factory_file}' has no attribute 'buidl'; did you mean 'build'? "
        "Callables defined there: Net, build, build_for, no_params, not_a_model"
    )
    with pytest.raises(ModelError) as exc:
        load_model(f"{factory_file}:not_a_model", info)
    assert str(exc.value) == (
        f"factory '{factory_file}:not_a_model' returned int, expected torch.nn.Module; "
        "make it return the model instance"
    )
    with pytest.raises(ModelError) as exc:
        load_model(f"{factory_file}:no_params", info)
    assert str(exc.value) == (
        f"model '{factory_file}:no_params' has no trainable parameters; gradmedic needs a model "
        "with trainable parameters (requires_grad=True) to measure gradients"
    )
    with pytest.raises(ConfigError) as exc:
        load_model(f"{factory_file}:SIZE", info)
    assert str(exc.value) == (
        f"'SIZE' in factory file '{factory_file}' is not callable (it is of type int); "
        "point to a function or class that builds the object"
    )
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom\\nmore detail')\n")
    with pytest.raises(ConfigError) as exc:
        load_model(f"{broken}:build", info)
    assert str(exc.value) == (
        f"factory file '{broken}' failed to import (RuntimeError: boom); fix the error in that "
        "file and try again"
    )


def test_shape_mismatch_messages() -> None:
    digits = load_data("digits", n=4).info
    with pytest.raises(DataError) as exc:
        build_model("cnn", digits)
    assert str(exc.value) == (
        "model 'cnn' needs image (C, H, W) or channel-first 1-D (C, L) inputs, but data set "
        "'digits' gives flat samples of shape (64,); use --data digits:image=true"
    )
    with pytest.raises(DataError) as exc:
        build_model("lstm", digits)
    assert str(exc.value) == (
        "model 'lstm' needs sequence inputs of shape (T, F), but data set 'digits' gives "
        "samples of shape (64,); use --data adding-200 or --data copy-100"
    )
    with pytest.raises(DataError) as exc:
        build_model("mlp", load_data("copy-5", n=4).info)
    assert str(exc.value) == (
        "model 'mlp' gives one output per sample, but data set 'copy-5' needs one per time "
        "step; use --model lstm, gru, rnn or transformer"
    )


def test_bad_option_values() -> None:
    info = load_data("digits", n=4).info
    with pytest.raises(ConfigError, match=r"option depth=0 for model 'mlp' is invalid"):
        build_model("mlp:depth=0", info)
    with pytest.raises(UnknownNameError, match="unknown activation 'relu7'; did you mean 'relu'"):
        build_model("mlp:act=relu7", info)
    with pytest.raises(UnknownNameError, match="unknown init 'kaimin'; did you mean 'kaiming'"):
        build_model("mlp:init=kaimin", info)
    with pytest.raises(ConfigError, match="batch size must be a positive integer"):
        load_data("digits", n=4).fixed_batch(0)
    assert np.isclose(activation_gain("tanh"), 5 / 3)


def test_shipped_digits_equal_scikit_learns():
    """The packaged digits.npz is scikit-learn's load_digits, bit for bit (labels and pixels)."""
    from sklearn.datasets import load_digits

    from gradmedic.zoo.data import load_digits_arrays

    x, y = load_digits_arrays()
    xs, ys = load_digits(return_X_y=True)
    assert x.shape == (1797, 64) and np.array_equal(x, xs) and np.array_equal(y, ys)
