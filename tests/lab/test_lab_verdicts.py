"""The lab's verdict logic on constructed numbers: one pass and at least one fail case per
experiment."""

from __future__ import annotations

import math

from gradmedic.lab import (
    activations_deep,
    chain,
    exploding,
    inception,
    initialisation,
    losses,
    normalisation,
    rnn_gated,
    saturation,
)


def test_judge_depth_chain():
    assert chain.judge_depth_chain(1e-12, 0.9**20, 1e-12)[0] is True
    ok, crit = chain.judge_depth_chain(2e-6, 0.9**20, 1e-12)
    assert ok is False and "relative error <= 1e-06 (max 2e-06)" in crit
    assert chain.judge_depth_chain(0.0, 0.1216, 0.0)[0] is False


def test_judge_activation_derivatives():
    assert chain.judge_activation_derivatives(0.25, 1.0, 3.9)[0] is True
    assert chain.judge_activation_derivatives(0.25, 1.0, 4.1)[0] is False
    assert chain.judge_activation_derivatives(0.2500001, 1.0, 0.0)[0] is False


def test_judge_saturation():
    assert saturation.judge_saturation(0.12, 0.50, 0.01, 0.0)[0] is True
    assert saturation.judge_saturation(0.25, 0.50, 0.01, 0.0)[0] is False
    assert saturation.judge_saturation(0.12, 0.40, 0.01, 0.0)[0] is False
    ok, crit = saturation.judge_saturation(0.12, 0.50, 0.01, 0.3)
    assert ok is False and "saturated fraction < 0.05 (measured 0.3)" in crit


def _deep(sig=2.30, fam=0.4, dead_relu=0.1, dead_leaky=0.0):
    loss = {a: 1.0 for a in activations_deep.DEEP_ACTS}
    loss.update(sigmoid=sig, relu=fam, leaky_relu=fam, elu=fam)
    dead = {a: 0.0 for a in activations_deep.DEEP_ACTS}
    dead.update(relu=dead_relu, leaky_relu=dead_leaky)
    return loss, dead


def test_judge_activations_deep():
    assert activations_deep.judge_activations_deep(*_deep())[0] is True
    assert activations_deep.judge_activations_deep(*_deep(sig=1.5))[0] is False  # sigmoid trains
    assert activations_deep.judge_activations_deep(*_deep(fam=1.2))[0] is False  # margin missed
    ok, crit = activations_deep.judge_activations_deep(*_deep(dead_relu=0.0))
    assert ok is False and "ReLU's is > 0 (measured 0)" in crit
    assert activations_deep.judge_activations_deep(*_deep(dead_leaky=0.01))[0] is False


def _init_numbers(worst=0.05, he=0.3, default=2.3, crit=0.1):
    final = dict(default=default, xavier=2.3, kaiming=he, orthogonal=0.3, lsuv=0.3)
    return {"kaiming": worst, "default": 0.01}, final, dict(ordered=0.4, critical=crit, chaotic=0.2)


def test_judge_init():
    assert initialisation.judge_init(*_init_numbers())[0] is True
    assert initialisation.judge_init(*_init_numbers(worst=0.2))[0] is False
    assert initialisation.judge_init(*_init_numbers(he=1.5))[0] is False
    assert initialisation.judge_init(*_init_numbers(default=1.9))[0] is False
    assert initialisation.judge_init(*_init_numbers(crit=0.3))[0] is False


def test_judge_norm_residual():
    good = {"plain": 2.3, "batchnorm": 0.2, "layernorm": 0.3, "residual": 0.1,
            "zero-init-residual": 0.1}  # fmt: skip
    ok, crit = normalisation.judge_norm_residual(1e-9, good)
    assert ok is True
    assert crit.startswith("each net at its best learning rate of the common grid {0.001, 0.01}")
    assert normalisation.judge_norm_residual(1e-2, good)[0] is False
    assert normalisation.judge_norm_residual(1e-9, {**good, "layernorm": 1.2})[0] is False
    assert normalisation.judge_norm_residual(1e-9, {**good, "plain": 1.0})[0] is False


def test_judge_loss_pairing():
    assert losses.judge_loss_pairing(1e-7, 20.0, 60.0)[0] is True
    assert losses.judge_loss_pairing(1e-4, 20.0, 60.0)[0] is False
    assert losses.judge_loss_pairing(1e-7, math.nan, 60.0)[0] is False
    assert losses.judge_loss_pairing(1e-7, 20.0, 300.0)[0] is False


def test_judge_rnn_vs_gated():
    mse = {"rnn": 0.17, "lstm": 0.01, "gru": 0.02}
    mem = {"rnn": 1e-4, "lstm": 0.05, "gru": 0.5}
    assert rnn_gated.judge_rnn_vs_gated(mse, mem)[0] is True
    assert rnn_gated.judge_rnn_vs_gated({**mse, "rnn": 0.05}, mem)[0] is False
    assert rnn_gated.judge_rnn_vs_gated({**mse, "lstm": 0.12}, mem)[0] is False
    ok, crit = rnn_gated.judge_rnn_vs_gated(mse, {**mem, "lstm": 5e-3})
    assert ok is False and "LSTM 0.005" in crit


def test_judge_exploding():
    spike, div = {"rnn": math.inf, "mlp": 50.0}, {"rnn": True, "mlp": True}
    fin = {"rnn/agc": True, "mlp/agc": True}
    assert exploding.judge_exploding(spike, div, fin)[0] is True
    assert exploding.judge_exploding({**spike, "mlp": 3.0}, div, fin)[0] is False
    assert exploding.judge_exploding(spike, {**div, "rnn": False}, fin)[0] is False
    ok, crit = exploding.judge_exploding(spike, div, {**fin, "mlp/agc": False})
    assert ok is False and "non-finite: mlp/agc" in crit


def test_judge_inception():
    assert inception.judge_inception(1e-6, 1e-3, 4e-3)[0] is True
    assert inception.judge_inception(1e-6, 1e-3, 1.5e-3)[0] is False
    assert inception.judge_inception(5e-4, 1e-3, 4e-3)[0] is False
