"""What the functional recorder reads from a call (monitor/functional_ops.py): the fan-in and
fan-out of a weight as the op uses it, and an activation call's parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradmedic.monitor.functional_ops import ACTIVATIONS, WEIGHT_OPS, bind_params, fans


def test_weight_ops_and_activations_are_found_by_identity():
    assert WEIGHT_OPS[torch.matmul] == WEIGHT_OPS[torch.Tensor.matmul] == "matmul"
    assert WEIGHT_OPS[F.linear] == "linear" and WEIGHT_OPS[F.conv2d] == "conv2d"
    assert ACTIVATIONS[torch.sigmoid].name == ACTIVATIONS[torch.Tensor.sigmoid].name == "sigmoid"
    assert ACTIVATIONS[F.relu].name == "relu" and torch.exp not in ACTIVATIONS


@pytest.mark.parametrize(
    ("op", "make", "expect"),
    [
        # x (2, 5) @ W.T with W (3, 5): 5 inputs per output, 3 outputs
        ("matmul", lambda w, x: ((x, w.T), 1), (5, 3)),
        # W (3, 5) @ x.T (5, 2): W on the left contracts its columns
        ("matmul", lambda w, x: ((w, x.T), 0), (5, 3)),
        ("linear", lambda w, x: ((x, w), 1), (5, 3)),
        ("addmm", lambda w, x: ((torch.zeros(3), x, w.T), 2), (5, 3)),
        ("einsum", lambda w, x: (("bi,oi->bo", x, w), 2), (5, 3)),
        ("einsum", lambda w, x: (("bi,io->bo", x, w.T), 2), (5, 3)),
    ],
)
def test_fans_follow_the_contracted_dimension(op, make, expect):
    w, x = torch.zeros(3, 5), torch.zeros(2, 5)
    args, pos = make(w, x)
    assert fans(op, args, args[pos]) == expect


def test_conv_fans_follow_torch_init():
    k = torch.zeros(8, 4, 3, 3)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(k)
    assert fans("conv2d", (torch.zeros(1, 4, 5, 5), k), k) == (fan_in, fan_out) == (36, 72)


def test_bind_params_reads_positional_keyword_and_in_place():
    x = torch.zeros(2)
    assert bind_params(F.hardtanh, ACTIVATIONS[F.hardtanh], (x, -2, 2), {}) == (
        {"min_val": -2.0, "max_val": 2.0},
        False,
    )
    assert bind_params(F.elu, ACTIVATIONS[F.elu], (x,), {"alpha": 0.5, "inplace": True}) == (
        {"alpha": 0.5},
        True,
    )
    assert bind_params(F.relu, ACTIVATIONS[F.relu], (x, True), {}) == ({}, True)
    assert bind_params(torch.Tensor.relu_, ACTIVATIONS[torch.Tensor.relu_], (x,), {})[1] is True
    assert bind_params(F.softplus, ACTIVATIONS[F.softplus], (x, 2), {}) == (
        {"beta": 2.0, "threshold": 20.0},
        False,
    )
