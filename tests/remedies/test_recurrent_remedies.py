"""Recurrent remedies: RNN -> LSTM/GRU, forget-gate bias, orthogonal recurrent weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic.remedies import apply, orthogonal_recurrent_, replace_rnn, set_forget_bias_
from gradmedic.zoo import build_model, load_data


@pytest.fixture(scope="module")
def adding():
    return load_data("adding-20", n=64)


def test_replace_rnn_keeps_path_and_sizes_and_sets_forget_bias(adding):
    m = build_model("rnn:hidden=12", adding.info, seed=0)
    new, rep = replace_rnn(m, "lstm")
    assert isinstance(m.rnn, nn.RNN) and isinstance(new.rnn, nn.LSTM)
    assert (new.rnn.input_size, new.rnn.hidden_size, new.rnn.batch_first) == (2, 12, True)
    assert rep.changes[0] == (
        "rnn: RNN(2, 12, layers=1, nonlinearity=tanh) -> LSTM(2, 12, layers=1) (fresh PyTorch init)"
    )
    b = new.rnn.bias_ih_l0 + new.rnn.bias_hh_l0  # PyTorch's two vectors: the gate bias is the sum
    assert b[12:24].tolist() == [1.0] * 12
    assert float(torch.sigmoid(b[12].detach())) == pytest.approx(0.731059, abs=1e-6)  # case 20
    x, _ = adding.fixed_batch(4)
    assert new(x).shape == (4, 1)
    gru, _ = replace_rnn(m, "gru")
    assert isinstance(gru.rnn, nn.GRU) and gru(x).shape == (4, 1)


def test_replace_rnn_spec_with_no_forget_bias_keeps_pytorch_init(adding):
    m = build_model("rnn:hidden=12", adding.info, seed=0)
    _, rep = apply(m, "replace-rnn(to=lstm,forget_bias=none)")
    assert len(rep.changes) == 1  # no forget-gate line


def test_forget_bias_and_orthogonal_recurrent(adding):
    m = build_model("lstm:hidden=8", adding.info, seed=0)
    rep = set_forget_bias_(m, 2.0)
    assert rep.changes == [
        "rnn.bias_ih_l0[8:16] = 2, rnn.bias_hh_l0[8:16] = 0 (forget-gate bias 2)"
    ]
    assert (m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0)[8:16].tolist() == [2.0] * 8
    r = build_model("rnn:hidden=16,radius=3", adding.info, seed=0)
    rho = float(torch.linalg.eigvals(r.rnn.weight_hh_l0.detach().double()).abs().max())
    assert rho == pytest.approx(3.0, rel=1e-6)
    orthogonal_recurrent_(r)
    sv = torch.linalg.svdvals(r.rnn.weight_hh_l0.detach().double())
    torch.testing.assert_close(sv, torch.ones(16, dtype=torch.float64), atol=1e-5, rtol=0)
    orthogonal_recurrent_(m, gain=1.0)
    for g in range(4):
        block = m.rnn.weight_hh_l0.detach()[g * 8 : (g + 1) * 8].double()
        torch.testing.assert_close(
            block @ block.T, torch.eye(8, dtype=torch.float64), atol=1e-5, rtol=0
        )
