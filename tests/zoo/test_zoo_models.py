"""Tests of the zoo's models: output shapes, structure, inits, factories and error
messages; each pins a number, shape or message."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gradmedic._callspec import load_factory
from gradmedic.errors import ConfigError, DataError, ModelError, UnknownNameError
from gradmedic.nn.init_gain import activation_gain
from gradmedic.zoo import (
    InceptionNet,
    ResidualBlock,
    SequenceModel,
    build_model,
    load_data,
    load_model,
)

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
    # activations come from the one registry (gradmedic.nn.activations), parameters included
    soft = build_model("mlp:depth=2,act=softplus(beta=2)", info)
    assert isinstance(soft[1], nn.Softplus) and soft[1].beta == 2.0
    assert isinstance(build_model("mlp:depth=2,act=leaky_relu(0.2)", info)[1], nn.LeakyReLU)
    assert build_model("mlp:depth=2,act=leaky_relu(0.2)", info)[1].negative_slope == 0.2
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
