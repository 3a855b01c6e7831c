"""Held-out battery: models written the way practitioners write them, not through gradmedic.zoo.

Each case states the verdict its mechanism predicts before any rule is consulted:

* plain stacks: mean-field theory, the per-layer backward gain is ``sqrt(chi1)`` with
  ``chi1 = sw2 E[phi'(h)^2]`` (Poole et al. 2016; Schoenholz et al. 2017), ``sqrt(sw2)`` for a
  layer without activation (Glorot & Bengio 2010; He et al. 2015 for ReLU's ``sw2 = 2``);
* batch-normalised stacks: a mild backward growth per layer at init (Yang et al. 2019), bounded
  by skip connections;
* residual stacks: ``x + F(x)`` adds the branch's variance to the stream at every block; with
  He-initialised branches and no normalisation it multiplies block after block and the
  gradient grows with it (Zhang, Dauphin & Ma 2019, Fixup); normalised branches grow it only
  linearly;
* recurrences: Pascanu, Mikolov & Bengio (2013); gated cells keep a near-identity path.

Healthy models must raise no warning or error; sick ones must be found with the stated slug and
severity. Tiny widths and a few steps keep the file under a minute on two cores.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch import nn

from diagnosis_util import data, finding, output_grad_ratio
from gradmedic.diagnosis import Diagnosis
from gradmedic.diagnosis.finding import severity_rank
from gradmedic.theory import chi1, critical_sigma_w2
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import TrainConfig
from gradmedic.zoo import load_data
from unseen_models import (
    CustomHardswish,
    FunctionalSigmoid,
    LogSoftmaxNet,
    PostNormTransformer,
    ResNet,
    SeqRNN,
    TiedAutoencoder,
    TokenLSTM,
    VGGish,
    autoencoding,
    big_targets,
    blank_border_images,
    frozen_sick_trunk,
    mlp,
    seeded,
    small_cnn,
    token_data,
)

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")


def cfg(steps: int = 5, **kw) -> TrainConfig:
    return TrainConfig(steps=steps, every=1, batch_size=32, **kw)


def alarms(d: Diagnosis) -> list[tuple[str, str, str]]:
    return [(f.slug, f.severity, f.title) for f in d.at_least("warning")]


# ============================================================================ healthy
# (id, model factory, data factory, loss, config) -> expected: no warning, no error.
HEALTHY = [
    # BN keeps each conv's pre-activation at q = 1: ReLU gain sqrt(1/2), conv gain restored by
    # BN; Yang et al.'s growth over 5 layers is below 2x.
    ("vgg-bn-inplace-relu", lambda: VGGish(), lambda: data("digits:image=true"), None, cfg(4)),
    # BN ResNets: the stream grows linearly (one unit-variance branch per block), gradient
    # polynomially; 3 and 16 blocks both train.
    ("resnet-bn-3", lambda: ResNet(3), lambda: data("digits:image=true"), None, cfg(4)),
    ("resnet-bn-16", lambda: ResNet(16), lambda: data("digits:image=true"), None, cfg(3)),
    # Fixup's explosion is exponential in depth: 3 unnormalised He blocks grow the stream only
    # ~1.5^3 and the gradient ~1.2^3.
    (
        "resnet-nobn-he-3",
        lambda: ResNet(3, norm=False, he=True),
        lambda: data("digits:image=true"),
        None,
        cfg(4),
    ),
    # Post-LN at depth 3: LayerNorm rescales every sublayer's output; nothing compounds.
    ("post-norm-transformer-3", PostNormTransformer, lambda: data("digits"), None, cfg(4)),
    # Integer tokens into an Embedding: LSTM on 12 steps, a near-identity cell path.
    ("embedding-lstm-tokens", TokenLSTM, token_data, None, cfg(4, rnn_hidden=True)),
    # GRU on copy-10 (30 steps): the update gate interpolates with the identity.
    (
        "gru-copy-10",
        lambda: SeqRNN(nn.GRU),
        lambda: load_data("copy-10", n=96),
        None,
        cfg(3, rnn_hidden=True),
    ),
    # Default init ReLU, 3 hidden layers, dropout: sqrt(1/6)^3 ~ 0.07 end to end; dropout's
    # 1/(1-p) rescale is structural.
    (
        "mlp-dropout",
        lambda: mlp([64] * 4 + [10], nn.ReLU, dropout=0.3),
        lambda: data("digits"),
        None,
        cfg(5),
    ),
    # Shallow He nets with activations theory does not tabulate.
    (
        "softplus-he-4",
        lambda: mlp([64] * 4 + [10], nn.Softplus, init="he"),
        lambda: data("digits"),
        None,
        cfg(5),
    ),
    (
        "mish-he-4",
        lambda: mlp([64] * 4 + [10], nn.Mish, init="he"),
        lambda: data("digits"),
        None,
        cfg(5),
    ),
    (
        "hardswish-he-4",
        lambda: mlp([64] * 4 + [10], nn.Hardswish, init="he"),
        lambda: data("digits"),
        None,
        cfg(5),
    ),
    # Frozen sick trunk: parameters that do not train need no gradient.
    ("frozen-trunk", frozen_sick_trunk, lambda: data("digits"), None, cfg(5)),
    # Tied weights: one parameter, two uses; shallow tanh autoencoder.
    ("tied-autoencoder", TiedAutoencoder, autoencoding, None, cfg(5)),
    # MSE on targets ~5000: big gradients everywhere, but the ratio across layers is O(1).
    (
        "mse-large-targets-adam",
        lambda: mlp([64, 32, 1], nn.ReLU),
        big_targets,
        None,
        cfg(5, optimizer="adam", lr=1e-3),
    ),
    (
        "mse-large-targets-sgd",
        lambda: mlp([64, 32, 1], nn.ReLU),
        big_targets,
        None,
        cfg(5, lr=1e-6),
    ),
]


@pytest.mark.parametrize(
    ("name", "model", "dataset", "loss", "config"), HEALTHY, ids=[c[0] for c in HEALTHY]
)
def test_healthy_unseen_models_raise_no_warning(name, model, dataset, loss, config):
    d = diagnose(model=seeded(model), data=dataset(), loss=loss, config=config)
    assert alarms(d) == [], [(f.slug, f.title, f.cause) for f in d.at_least("warning")]
    assert d.layers, "the layer table must not be empty"


def test_log_softmax_into_cross_entropy_is_an_info_note_only():
    """CE(log_softmax(z)) == CE(z): log_softmax is idempotent, gradients are identical; redundant
    but exact, so info only (the softmax-then-log form would be a warning)."""
    d = diagnose(
        model=seeded(LogSoftmaxNet),
        data=data("digits"),
        loss=nn.CrossEntropyLoss(),
        config=cfg(3),
    )
    assert alarms(d) == []
    f = finding(d, "unstable-loss-pairing")
    assert f.severity == "info"
    assert f.evidence["model_output"] == "logprobs"
    # F.log_softmax in forward: no module for fix-loss to fuse, so the fix is the user's
    assert [str(p) for p in f.prescriptions] == ["output-logits(loss=CrossEntropyLoss)"]
    assert f.prescriptions[0].manual


# ============================================================================ sick
def test_unnormalised_he_resnet_explodes_with_depth_fixup():
    """16 BasicBlocks, no BN, He on both convs. Backward per block: the final ReLU halves the
    squared signal and ``I + J_F`` adds ``sw2^2/2 = 2`` to it: ``0.5 (1 + 2) = 1.5`` per block,
    i.e. 1.22x in norm, 1.22^16 ~ 25 (x8 once the 8x8 average pool is taken out); forward, the
    stream's mean square multiplies likewise (Fixup, Zhang et al. 2019). The cure is
    zero-initialising each branch's last layer, not a different weight scale: the convs sit at
    He's critical sw2 = 2, so there is no poor-init."""
    d = diagnose(
        model=seeded(lambda: ResNet(16, norm=False, he=True)),
        data=data("digits:image=true"),
        config=cfg(3),
    )
    f = finding(d, "exploding-gradient")
    assert f.severity == "warning"
    ev = f.evidence
    assert ev["plain_chain"] is False
    # Average pool 8x8 divides the norm by exactly 8: taken out of the judged ratio.
    assert ev["log10_structural"] == pytest.approx(-math.log10(8), abs=1e-3)
    assert ev["judged_ratio"] == pytest.approx(ev["measured_ratio"] * 8, rel=1e-3)
    # 1.22 per block over 16 blocks ~ 25, times the stem's ReLU/pool corrections: 10..1e3.
    assert 10 < ev["measured_ratio"] < 1e3
    assert ev["forward_preact_ms_growth"] > 100
    assert "Fixup" in f.cause
    # its blocks have no .branch gradmedic recognises: zero-init-residual is not printed, the
    # cause names the cure
    assert "zero-init-residual" in f.evidence["not_applicable"]
    assert "zero-initialise the last layer of each branch" in f.cause
    assert "poor-init" not in d.slugs()
    json.dumps(d.to_dict(), allow_nan=False)


def test_deep_tanh_at_pytorch_default_init_vanishes_ordered_phase():
    """nn.Linear default: U(+-1/sqrt(fan_in)) -> sw2 = 1/3, sb2 = 1/(3 fan_in). Tanh near q* ~ 0
    has phi' ~ 1, so chi1 = sw2 E[tanh'^2] ~ 0.32 < 1 (ordered phase), per-layer factor
    sqrt(chi1) = 0.569, ~1e-5 over 20 crossings. The weights are to blame: the critical sw2 at
    this sb2 is 1.43 (Schoenholz et al. 2017)."""
    d = diagnose(
        model=seeded(lambda: mlp([64] + [32] * 20 + [10], nn.Tanh)),
        data=data("digits"),
        config=cfg(5),
    )
    v = finding(d, "vanishing-gradient")
    assert severity_rank(v.severity) >= severity_rank("warning")
    sb2 = 1 / (3 * 32)
    # Width 32: ~1/sqrt(32) = 18 % per-layer noise, ~4 % on the geometric mean of 20 layers.
    assert v.evidence["per_layer_factor"] == pytest.approx(
        math.sqrt(chi1("tanh", 1 / 3, sb2)), rel=0.08
    )
    assert v.evidence["share"]["weights"] > 0.8
    p = finding(d, "poor-init")
    assert p.evidence["critical_sigma_w2"] == pytest.approx(
        critical_sigma_w2("tanh", sb2), rel=0.05
    )
    assert str(p.prescriptions[0]) == "reinit(scheme=xavier)"


def test_functional_sigmoid_is_measured_between_the_linear_layers():
    """torch.sigmoid in forward is no module, but the Monitor measures the functional call
    between two Linear layers: the backward signal falls by sqrt(sw2 E[s'^2]) =
    sqrt(chi1(sigmoid, 1/3, ~0)) = 0.141 per layer, ~1e-17 over 20 crossings, and the decay is
    the sigmoid derivative's, not the weights' nor an unexplained loss between modules."""
    d = diagnose(model=seeded(FunctionalSigmoid), data=data("digits"), config=cfg(4))
    v = finding(d, "vanishing-gradient")
    assert v.severity == "error"
    ev = v.evidence
    assert ev["plain_chain"] is True
    assert ev["per_layer_factor"] == pytest.approx(
        math.sqrt(chi1("sigmoid", 1 / 3, 1 / 96)), rel=0.05
    )
    # Weights: 20 x log10 sqrt(1/3) = -4.77; the sigmoid derivative: the rest (~ -12.2).
    assert ev["log10_weights"] == pytest.approx(20 * math.log10(math.sqrt(1 / 3)), abs=0.4)
    assert ev["share"]["activation"] > 0.6 and ev["log10_between_modules"] == 0.0
    assert "the sigmoid derivative (at most 0.25)" in v.cause
    # The parts add up to the measured ratio (telescoping over the junctions).
    parts = sum(
        ev[k]
        for k in (
            "log10_weights",
            "log10_activation_derivative",
            "log10_dead_units",
            "log10_normalisation",
            "log10_structural",
            "log10_other",
            "log10_between_modules",
        )
    )
    assert parts == pytest.approx(ev["log10_ratio"], abs=0.01)
    # theory's cure for a sigmoid stack, not xavier alone (kind 7)
    assert str(v.prescriptions[0]) == "swap-activation(to=leaky_relu)+reinit(scheme=kaiming)"
    json.dumps(d.to_dict(), allow_nan=False)


def test_unknown_activation_decay_is_not_mistaken_for_pooling():
    """An activation module gradmedic does not know (here a user's own hardswish: slope 1/2 at
    0, E[phi'^2] ~ 0.3 at q ~ 1) is real decay. Taking it out of the judged ratio as if it were
    pooling turned a 2e-3 decay into a 1e3 'explosion'."""
    d = diagnose(
        model=seeded(lambda: mlp([64] + [32] * 20 + [10], CustomHardswish, init="he")),
        data=data("digits"),
        config=cfg(5),
    )
    assert "exploding-gradient" not in d.slugs()
    v = finding(d, "vanishing-gradient")
    assert v.severity == "info"  # 1e-3 < r < 1e-2: He keeps the weights at gain sqrt(2)
    assert v.evidence["judged_ratio"] == pytest.approx(v.evidence["measured_ratio"], rel=1e-6)
    assert v.evidence["log10_other"] < -3
    assert "Hardswish" in v.cause


def test_vanilla_rnn_on_copy_task_gets_the_theory_note():
    """A loss on every time step feeds each h_t directly, so ||dL/dh_t|| stays level; yet with
    PyTorch's default W_hh (spectral radius ~0.6) a gradient sent back over 69 steps shrinks
    like 0.6^69 ~ 1e-15 (Pascanu et al. 2013). Reported as an info note from theory."""
    model = seeded(lambda: SeqRNN(nn.RNN))
    rho = float(torch.linalg.eigvals(model.rnn.weight_hh_l0.detach()).abs().max())
    d = diagnose(model=model, data=load_data("copy-50", n=64), config=cfg(2, rnn_hidden=True))
    f = finding(d, "rnn-long-range-vanishing")
    assert f.severity == "info"
    assert f.evidence["basis"] == "theory"
    assert f.evidence["seq_len"] == 70
    assert f.evidence["predicted_log10_decay"] == pytest.approx(69 * math.log10(rho), rel=1e-3)
    assert str(f.prescriptions[0]) == "replace-rnn(to=lstm)"


# ============================================================================ Monitor numbers
@pytest.mark.parametrize(
    ("name", "factory", "first", "last"),
    [
        ("vgg-inplace-relu", lambda: VGGish(), "features.0", "classifier.5"),
        ("resnet-shared-relu-inplace-add", lambda: ResNet(3), "stem", "fc"),
    ],
)
def test_in_place_ops_do_not_bend_the_measured_signal(name, factory, first, last):
    """In-place ReLU after BN, one ReLU module called twice per block and ``out += identity``:
    the end-to-end ratio the diagnosis judges equals plain autograd's on the same batch."""
    img = data("digits:image=true")
    model = seeded(factory)
    x, y = next(img.batches(32, 0))
    ref = output_grad_ratio(model, x, y, first, last)
    d = diagnose(model=model, data=img, config=cfg(1))
    e = d.meta["end_to_end"]
    assert (e["first"], e["last"]) == (first, last)
    assert e["ratio"] == pytest.approx(ref, rel=1e-5)
    # BN hands each ReLU q = 1 and zero mean: where the next layer is a conv (its gradient is
    # independent of the ReLU's mask) the gain is sqrt(P(x > 0)) = sqrt(1/2); 32 x 8 x 64
    # entries put the sampling noise near 1 %. (Before a max pool it is larger: the pool
    # routes the gradient to the window's maximum, nearly always a unit with x > 0.)
    if name.startswith("vgg"):
        rows = {r["module"]: r for r in d.layers}
        for relu in ("features.2", "features.9"):
            assert rows[relu]["type"] == "ReLU"
            assert rows[relu]["gain"] == pytest.approx(0.5**0.5, abs=0.03)


def test_integer_inputs_reach_the_rules():
    """Embedding input is int64: no dL/dx exists there, but the Embedding's output signal, the
    LSTM's time profile and the head all come through."""
    d = diagnose(model=seeded(TokenLSTM), data=token_data(), config=cfg(2, rnn_hidden=True))
    rows = {r["module"]: r for r in d.layers}
    assert rows["emb"]["signal_in"] is None
    assert rows["emb"]["signal_out"] > 0
    assert rows["emb"]["grad_norm"] > 0
    assert rows["lstm"]["signal_out"] > 0
    e = d.meta["end_to_end"]
    assert (e["first"], e["last"]) == ("lstm", "fc")


# ============================================================================ dead units in convs
def test_conv_positions_with_constant_input_are_not_dead_channels():
    """A conv unit is a channel (its weights are shared over positions). Bias-free convs output
    exactly 0 wherever the receptive field is blank in every sample (62 % of the entries here),
    yet every channel is positive somewhere: nothing is dead in the Maas et al. 2013 sense, so
    at most a note."""
    ds = blank_border_images()
    model = seeded(lambda: small_cnn(None))
    with torch.no_grad():
        h1 = model[1](model[0](ds.x))
    assert float((h1.amax(dim=(0, 2, 3)) == 0).float().mean()) == 0.0  # no dead channel
    d = diagnose(model=model, data=ds, config=cfg(4))
    assert alarms(d) == []
    assert "dead-relu" not in d.slugs()
    dead = {r["module"]: r["dead_frac"] for r in d.layers if r.get("dead_frac") is not None}
    assert dead["1"] == 0.0 and dead["3"] == 0.0


def test_conv_relus_behind_a_large_negative_bias_are_dead():
    """Bias -5 against pre-activations of scale ~1: every ReLU entry is 0 for every sample,
    no gradient reaches the convs (Maas et al. 2013)."""
    d = diagnose(model=seeded(lambda: small_cnn(-5.0)), data=blank_border_images(), config=cfg(3))
    f = finding(d, "dead-relu")
    assert f.severity == "error"
    assert f.evidence["dead_frac"]["1"] == 1.0
