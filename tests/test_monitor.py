"""The Monitor against slow references computed with plain autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradmedic import GradmedicError, Monitor, Schedule
from gradmedic.errors import ConfigError, ModelError


def _value(frame, module, quantity, parameter=""):
    f = frame[
        (frame.module == module) & (frame.quantity == quantity) & (frame.parameter == parameter)
    ]
    assert len(f) == 1, (module, quantity, len(f))
    return float(f.value.iloc[0])


def _chain(alpha: float, depth: int = 20, width: int = 8) -> nn.Sequential:
    layers = []
    for _ in range(depth):
        lin = nn.Linear(width, width, bias=False)
        with torch.no_grad():
            lin.weight.copy_(alpha * torch.eye(width))
        layers.append(lin)
    return nn.Sequential(*layers)


@pytest.mark.parametrize(("alpha", "expected"), [(0.9, 0.121577), (1.1, 6.727500)])
def test_chain_gain_is_alpha_and_product_is_alpha_to_the_depth(alpha, expected):
    torch.manual_seed(0)
    model = _chain(alpha)
    x = torch.randn(4, 8)
    with Monitor(model) as mon:
        model(x).sum().backward()
        mon.step()
    f = mon.frame()
    gains = f[f.quantity == "gain"].value.to_numpy()
    assert len(gains) == 20
    assert gains == pytest.approx(alpha, abs=1e-6)
    ratio = _value(f, "0", "signal_in") / _value(f, "19", "signal_out")
    assert ratio == pytest.approx(expected, rel=1e-5)
    assert math.prod(gains) == pytest.approx(expected, rel=1e-5)


def _mlp():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(10, 16),
        nn.Tanh(),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Linear(16, 16),
        nn.Sigmoid(),
        nn.Linear(16, 3),
    )


def test_parameter_norms_match_a_plain_loop():
    model = _mlp()
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    with Monitor(model) as mon:
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
    f = mon.frame()
    for name, p in model.named_parameters():
        mod, pname = name.rsplit(".", 1)
        assert _value(f, mod, "grad_norm", pname) == pytest.approx(float(p.grad.norm()), rel=1e-6)
        assert _value(f, mod, "param_norm", pname) == pytest.approx(
            float(p.detach().norm()), rel=1e-6
        )
    w, b = model[0].weight.grad, model[0].bias.grad
    agg = math.sqrt(float(w.norm()) ** 2 + float(b.norm()) ** 2)
    assert _value(f, "0", "grad_norm") == pytest.approx(agg, rel=1e-6)


def test_backward_signal_matches_autograd_on_retained_outputs():
    model = _mlp()
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    # slow reference: run the layers by hand and differentiate every intermediate
    xs = [x.clone().requires_grad_(True)]
    for layer in model:
        xs.append(layer(xs[-1]))
    loss = nn.functional.cross_entropy(xs[-1], y)
    grads = torch.autograd.grad(loss, xs)
    model.zero_grad()
    with Monitor(model) as mon:
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
    f = mon.frame()
    for i in range(len(model)):
        assert _value(f, str(i), "signal_in") == pytest.approx(float(grads[i].norm()), rel=1e-5)
        assert _value(f, str(i), "signal_out") == pytest.approx(
            float(grads[i + 1].norm()), rel=1e-5
        )
        expected_gain = float(grads[i].norm() / grads[i + 1].norm())
        assert _value(f, str(i), "gain") == pytest.approx(expected_gain, rel=1e-5)


def test_gain_of_a_layer_that_also_feeds_a_skip_is_its_own():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(6, 6, bias=False)

        def forward(self, x):
            return x + self.f(x)

    torch.manual_seed(0)
    block = Block()
    x = torch.randn(5, 6)
    with Monitor(block) as mon:
        block(x).pow(2).sum().backward()
        mon.step()
    f = mon.frame()
    g_out = 2 * block(x).detach()  # dL/dy of the block's output, also dL/d(f(x))
    own_in = g_out @ block.f.weight.detach()  # VJP through f alone, skip excluded
    assert _value(f, "f", "signal_out") == pytest.approx(float(g_out.norm()), rel=1e-5)
    assert _value(f, "f", "signal_in") == pytest.approx(float(own_in.norm()), rel=1e-5)


def test_sigmoid_at_zero_has_mean_derivative_one_quarter():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
    with Monitor(model) as mon:
        model(torch.randn(8, 4)).sum().backward()
        mon.step()
    f = mon.frame()
    assert _value(f, "1", "dphi_mean") == pytest.approx(0.25, abs=1e-7)
    assert _value(f, "1", "dphi_sq_mean") == pytest.approx(0.0625, abs=1e-7)
    assert _value(f, "1", "saturated_frac") == 0.0
    assert _value(f, "1", "act_mean") == pytest.approx(0.5, abs=1e-7)


@pytest.mark.parametrize("inplace", [False, True])
def test_relu_with_negative_preactivations_is_dead(inplace):
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(inplace=inplace), nn.Linear(16, 2))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    x = torch.randn(32, 4)
    with Monitor(model) as mon:
        model(x).sum().backward()
        mon.step()
    f = mon.frame()
    assert _value(f, "1", "dead_frac") == 1.0
    assert _value(f, "1", "saturated_frac") == 1.0
    assert _value(f, "1", "dphi_mean") == 0.0


def test_inplace_relu_after_linear_records_the_right_signal():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(inplace=True), nn.Linear(6, 1))
    x = torch.randn(9, 6)
    h = model[0](x)
    h.retain_grad()
    r = torch.relu(h)
    r.retain_grad()
    model[2](r).sum().backward()
    model.zero_grad()
    with Monitor(model) as mon:
        model(x).sum().backward()
        mon.step()
    f = mon.frame()
    assert _value(f, "0", "signal_out") == pytest.approx(float(h.grad.norm()), rel=1e-6)
    assert _value(f, "1", "signal_in") == pytest.approx(float(h.grad.norm()), rel=1e-6)
    assert _value(f, "1", "signal_out") == pytest.approx(float(r.grad.norm()), rel=1e-6)


def _reference_hidden_grads(rnn: nn.Module, x: torch.Tensor, head: nn.Module):
    """Unroll with nn.*Cell sharing the weights; differentiate every per-step hidden state."""
    cell_cls = {"RNN_TANH": nn.RNNCell, "LSTM": nn.LSTMCell, "GRU": nn.GRUCell}[rnn.mode]
    xs = x.transpose(0, 1) if rnn.batch_first else x
    T, B = xs.shape[:2]
    layer_in = list(xs)
    all_h = []
    for k in range(rnn.num_layers):
        cell = cell_cls(layer_in[0].shape[-1], rnn.hidden_size)
        with torch.no_grad():
            cell.weight_ih.copy_(getattr(rnn, f"weight_ih_l{k}"))
            cell.weight_hh.copy_(getattr(rnn, f"weight_hh_l{k}"))
            cell.bias_ih.copy_(getattr(rnn, f"bias_ih_l{k}"))
            cell.bias_hh.copy_(getattr(rnn, f"bias_hh_l{k}"))
        h = torch.zeros(B, rnn.hidden_size)
        c = torch.zeros(B, rnn.hidden_size)
        hs = []
        for t in range(T):
            if rnn.mode == "LSTM":
                h, c = cell(layer_in[t], (h, c))
            else:
                h = cell(layer_in[t], h)
            hs.append(h)
        all_h.append(hs)
        layer_in = hs
    xin = x.clone().requires_grad_(True)
    loss = head(all_h[-1][-1]).pow(2).sum()
    grads = torch.autograd.grad(loss, [h for hs in all_h for h in hs])
    return [
        torch.stack([g.norm() for g in grads[k * T : (k + 1) * T]]) for k in range(len(all_h))
    ], xin


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_rnn_time_profiles_match_an_unrolled_cell_reference(mode, batch_first):
    torch.manual_seed(0)
    rnn = getattr(nn, mode)(3, 5, num_layers=2, batch_first=batch_first)
    head = nn.Linear(5, 1)
    model = nn.ModuleDict({"rnn": rnn, "head": head})
    x = torch.randn(4, 7, 3) if batch_first else torch.randn(7, 4, 3)
    ref, _ = _reference_hidden_grads(rnn, x, head)
    # input-gradient reference: dL/dx_t with plain autograd
    xr = x.clone().requires_grad_(True)
    out, _ = rnn(xr)
    last = out[:, -1] if batch_first else out[-1]
    (gx,) = torch.autograd.grad(head(last).pow(2).sum(), xr)
    ref_in = gx.norm(dim=(0, 2)) if batch_first else gx.norm(dim=(1, 2))
    model.zero_grad()
    with Monitor(model, rnn_hidden=True) as mon:
        out, _ = rnn(x)
        last = out[:, -1] if batch_first else out[-1]
        head(last).pow(2).sum().backward()
        mon.step()
    f = mon.frame()
    got_in = f[(f.quantity == "input_grad_t") & (f.module == "rnn")].sort_values("idx")
    assert got_in.value.to_numpy() == pytest.approx(ref_in.numpy(), rel=1e-4, abs=1e-12)
    for k in range(2):
        got = f[(f.quantity == "hidden_grad_t") & (f.parameter == f"layer{k}")].sort_values("idx")
        assert list(got.idx) == list(range(7))
        assert got.value.to_numpy() == pytest.approx(ref[k].detach().numpy(), rel=1e-4)


def test_vanilla_rnn_input_gradient_is_zero_before_the_second_marker_is_irrelevant():
    """Direct part of dL/dh_t is zero for t < T when the loss reads the last step, yet the
    input-gradient profile is non-zero there: it carries the recurrence."""
    torch.manual_seed(0)
    rnn = nn.RNN(2, 8, batch_first=True)
    head = nn.Linear(8, 1)
    x = torch.randn(3, 10, 2)
    with Monitor(nn.ModuleList([rnn, head])) as mon:
        out, _ = rnn(x)
        head(out[:, -1]).sum().backward()
        mon.step()
    f = mon.frame()
    prof = f[f.quantity == "input_grad_t"].sort_values("idx").value.to_numpy()
    assert len(prof) == 10
    assert (prof > 0).all()
    assert prof[-1] > prof[0]


class NaNAfter(nn.Module):
    """Identity until ``calls`` reaches ``start``, then NaN."""

    def __init__(self, start: int):
        super().__init__()
        self.start, self.calls = start, 0

    def forward(self, x):
        out = x * float("nan") if self.calls >= self.start else x * 1.0
        self.calls += 1
        return out


def test_module_that_starts_emitting_nan_at_step_3_is_named_at_step_3():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), NaNAfter(3), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, optimizer=opt, every=1) as mon:
        for _ in range(5):
            opt.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            opt.step()
    fwd = [e for e in mon.events if e["kind"] == "nonfinite_forward"]
    assert fwd[0] == {
        "step": 3,
        "kind": "nonfinite_forward",
        "module": "2",
        "detail": "first module whose output is NaN/Inf",
    }
    bwd = [e for e in mon.events if e["kind"] == "nonfinite_backward"]
    assert bwd[0]["step"] == 3 and bwd[0]["module"] == "2"


def test_nan_on_an_unrecorded_step_is_dated_exactly_and_named_at_the_next_record():
    model = nn.Sequential(nn.Linear(4, 4), NaNAfter(3), nn.Linear(4, 1))
    with Monitor(model, every=5) as mon:
        for _ in range(7):
            model.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            mon.step()
    kinds = [(e["step"], e["kind"], e["module"]) for e in mon.events]
    assert kinds[0] == (3, "nonfinite_gradient", None)
    assert (5, "nonfinite_forward", "1") in kinds
    f = mon.frame()
    assert f[f.quantity == "nonfinite_gradient"].step.tolist() == [3]


def test_nan_after_the_last_recorded_step_is_reported_at_detach():
    model = nn.Sequential(nn.Linear(4, 4), NaNAfter(2), nn.Linear(4, 1))
    with Monitor(model, every=100) as mon:
        for _ in range(4):
            model.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            mon.step()
        assert mon.events == []  # nothing read yet: no host sync on unrecorded steps
    assert [(e["step"], e["kind"]) for e in mon.events] == [(2, "nonfinite_gradient")]


def test_unrecorded_steps_run_without_module_hooks():
    model = _mlp()
    with Monitor(model, every=2) as mon:
        assert _hooks_left(model) > 0  # step 0 is recorded
        model(torch.randn(4, 10)).sum().backward()
        mon.step()
        assert _hooks_left(model) == 0  # step 1 is not
        model(torch.randn(4, 10)).sum().backward()
        mon.step()
        assert _hooks_left(model) > 0


def test_halt_on_nonfinite_raises_the_root_error():
    model = nn.Sequential(nn.Linear(4, 4), NaNAfter(0), nn.Linear(4, 1))
    with Monitor(model, halt_on_nonfinite=True) as mon:
        model(torch.randn(2, 4)).sum().backward()
        with pytest.raises(GradmedicError, match="non-finite value at step 0 in 1"):
            mon.step()


def _train(model_fn, monitored: bool, steps: int = 6, **kw):
    torch.manual_seed(0)
    model = model_fn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    losses = []
    mon = Monitor(model, optimizer=opt, every=2, **kw).attach() if monitored else None
    for _ in range(steps):
        x = torch.randn(16, 10, generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if mon is not None:
        mon.detach()
    return losses, [p.detach().clone() for p in model.parameters()]


def _resmlp():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(10, 16)
            self.body = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16), nn.ReLU(inplace=True))
            self.out = nn.Linear(16, 3)

        def forward(self, x):
            h = self.inp(x)
            h = h + self.body(h)
            return self.out(h)

    return Res()


@pytest.mark.parametrize("model_fn", [_mlp, _resmlp])
def test_monitoring_does_not_change_training(model_fn):
    plain_losses, plain_params = _train(model_fn, False)
    mon_losses, mon_params = _train(model_fn, True, rnn_hidden=True)
    assert mon_losses == plain_losses
    for a, b in zip(plain_params, mon_params, strict=True):
        assert torch.equal(a, b)


def _hooks_left(model: nn.Module) -> int:
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        n += len(m._backward_pre_hooks)
    return n


class Boom(nn.Module):
    def __init__(self, where: str):
        super().__init__()
        self.where = where
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        if self.where == "forward":
            raise RuntimeError("forward failed")
        h = self.lin(x)
        if self.where == "backward":

            class Fail(torch.autograd.Function):
                @staticmethod
                def forward(ctx, t):
                    return t.clone()

                @staticmethod
                def backward(ctx, g):
                    raise RuntimeError("backward failed")

            h = Fail.apply(h)
        return h


@pytest.mark.parametrize("where", ["none", "forward", "backward"])
def test_no_hook_left_after_detach_even_when_user_code_raised(where):
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), Boom(where))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert _hooks_left(model) == 0
    kept = {}
    mon = Monitor(model, optimizer=opt)
    try:
        with mon:
            out = model(torch.randn(2, 4))
            kept["out"] = out
            out.sum().backward()
            opt.step()
    except RuntimeError as exc:
        assert str(exc) == f"{where} failed"
    assert _hooks_left(model) == 0
    assert mon._tensor_handles == [] and mon._handles == []
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    if "out" in kept:  # tensor hooks registered during the step are gone too
        assert not kept["out"]._backward_hooks


def test_gradient_accumulation_records_once_per_optimizer_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer=opt, every=1) as mon:
        for _ in range(2):
            for _ in range(3):
                model(torch.randn(8, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
    f = mon.frame()
    assert sorted(f.step.unique()) == [0, 1]
    assert (f[(f.quantity == "update_ratio")].value > 0).all()
    assert _value(f[f.step == 0], "0", "grad_norm", "weight") > 0


def test_update_ratio_is_lr_times_grad_over_weight_for_sgd():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer=opt) as mon:
        model(torch.randn(4, 5)).sum().backward()
        g, w = model.weight.grad.norm().item(), model.weight.norm().item()
        opt.step()
    f = mon.frame()
    assert _value(f, "", "update_ratio", "weight") == pytest.approx(0.1 * g / w, rel=1e-5)


def test_tied_weights_and_frozen_and_unused_parameters():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight  # tied
            self.frozen = nn.Linear(4, 4)
            self.frozen.requires_grad_(False)
            self.unused = nn.Linear(4, 4)

        def forward(self, x):
            return self.b(self.frozen(self.a(x)))

    model = Tied()
    with Monitor(model) as mon:
        out = model(torch.randn(3, 4))
        out = out + model.a(out)  # a is called twice
        out.sum().backward()
        mon.step()
    f = mon.frame()
    g = f[(f.quantity == "grad_norm") & (f.parameter != "")]
    assert sorted(zip(g.module, g.parameter, strict=True)) == [("a", "weight")]
    assert _value(f, "a", "grad_norm", "weight") == pytest.approx(
        float(model.a.weight.grad.norm()), rel=1e-6
    )
    assert _value(f, "a", "calls") == 2.0


def test_schedule_and_module_selection():
    model = _mlp()
    with Monitor(model, every=3, modules=[nn.Linear]) as mon:
        for _ in range(7):
            model(torch.randn(4, 10)).sum().backward()
            mon.step()
    f = mon.frame()
    assert sorted(f.step.unique()) == [0, 3, 6]
    assert set(f[f.quantity == "gain"].module) == {"0", "2", "4", "6"}
    with Monitor(model, modules="4") as mon:
        model(torch.randn(4, 10)).sum().backward()
        mon.step()
    assert set(mon.frame().query("quantity == 'gain'").module) == {"4"}
    assert [s for s in range(9) if Schedule(steps=[1, 4])(s)] == [1, 4]


def test_bad_input_errors_say_what_to_do():
    with pytest.raises(ModelError) as e:
        Monitor(nn.ReLU()).attach()
    assert str(e.value) == (
        "ReLU has no parameters; the Monitor measures gradients of trainable parameters, "
        "so give it a model that has some"
    )
    with pytest.raises(ConfigError, match=r"modules='nope\*' matches no module of Sequential"):
        Monitor(_mlp(), modules="nope*").attach()
    mon = Monitor(_mlp(), optimizer=torch.optim.SGD(_mlp().parameters(), lr=0.1))
    with pytest.raises(ConfigError, match="ends steps by itself"):
        mon.step()
    assert _hooks_left(mon.model) == 0


def test_amp_grad_scaler_signals_are_unscaled():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(8, 4)
    h = model[0](x)
    h.retain_grad()
    model[2](model[1](h)).sum().backward()
    ref = float(h.grad.norm())
    model.zero_grad()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with Monitor(model, optimizer=opt, scaler=scaler) as mon:
        scaler.scale(model(x).sum()).backward()
        scaler.step(opt)
        scaler.update()
    f = mon.frame()
    assert _value(f, "0", "signal_out") == pytest.approx(ref, rel=1e-5)
    assert _value(f, "", "amp_unscaled") == 1.0


def test_vanilla_rnn_on_adding_200_and_exploding_radius_3_profiles():
    """Issue figures: a tanh RNN (hidden 64, default init) on adding-200 has ||dL/dx_t|| about
    6e-3 at the last step, orders of magnitude less ten steps earlier and nothing left at T/2;
    with the recurrent matrix at spectral radius 3 (adding-50) it grows to ~1e4-1e5 at t = 0."""
    from gradmedic.workflows.train import TrainConfig, train
    from gradmedic.zoo import build_model, load_data

    data = load_data("adding-200")
    run = train(build_model("rnn:hidden=64", data.info, seed=0), data, TrainConfig(steps=1))
    f = run.trace.frame
    prof = f[f.quantity == "input_grad_t"].sort_values("idx").value.to_numpy()
    assert len(prof) == 200
    assert 1e-3 < prof[-1] < 1e-2
    assert prof[-11] < 1e-2 * prof[-1]
    assert prof[100] < 1e-20
    data = load_data("adding-50")
    model = build_model("rnn:hidden=64,radius=3", data.info, seed=0)
    run = train(model, data, TrainConfig(steps=1))
    f = run.trace.frame
    prof = f[f.quantity == "input_grad_t"].sort_values("idx").value.to_numpy()
    assert prof[0] > 1e4 * prof[-1]


def test_dead_units_of_a_feature_map_are_channels():
    """A 1x1 conv + ReLU on images that are zero outside a central patch: every channel is
    alive (the patch), although 75% of (channel, position) pairs are zero everywhere."""
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[3].fill_(-1.0)  # channel 3: negative everywhere -> dead
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 1))
    x = torch.zeros(16, 1, 8, 8)
    x[:, :, 2:6, 2:6] = torch.rand(16, 1, 4, 4) + 0.1
    with Monitor(model, every=1) as mon:
        model(x).sum().backward()
        mon.step()
    assert _value(mon.frame(), "1", "dead_frac") == 0.25


def test_hidden_profile_from_the_last_step_with_a_loss_on_every_step():
    """With a loss on every step the full profile ||dL/dh_t|| stays level; the profile of the
    last step's error alone, ||dL_T/dh_t||, shows how far back it reaches."""
    torch.manual_seed(0)
    rnn, head = nn.RNN(3, 6, batch_first=True), nn.Linear(6, 1)
    x = torch.randn(2, 12, 3)
    cell = nn.RNNCell(3, 6)
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, n).copy_(getattr(rnn, f"{n}_l0"))
    h, hs = torch.zeros(2, 6), []
    for t in range(12):
        h = cell(x[:, t], h)
        hs.append(h)
    per_step = [head(hh).pow(2).sum() for hh in hs]
    full = torch.autograd.grad(sum(per_step), hs, retain_graph=True)
    last = torch.autograd.grad(per_step[-1], hs)
    with Monitor(nn.ModuleList([rnn, head]), every=1, rnn_hidden=True) as mon:
        out, _ = rnn(x)
        head(out).pow(2).sum().backward()
        mon.step()
    f = mon.frame()

    def prof(q):
        return f[f.quantity == q].sort_values("idx").value.to_numpy()

    assert prof("hidden_grad_t") == pytest.approx([float(g.norm()) for g in full], rel=1e-4)
    assert prof("hidden_grad_t_last") == pytest.approx([float(g.norm()) for g in last], rel=1e-4)
    assert prof("hidden_grad_t_last")[0] < 1e-2 * prof("hidden_grad_t")[0]


def test_sentinel_catches_a_nan_loss_with_observed_losses():
    model = nn.Sequential(nn.Linear(4, 4), NaNAfter(1), nn.Linear(4, 1))
    with Monitor(model, every=100) as mon:
        for _ in range(3):
            model.zero_grad()
            loss = model(torch.randn(8, 4)).sum()
            loss.backward()
            mon.step(loss)
    assert [(e["step"], e["kind"]) for e in mon.events] == [(1, "nonfinite_gradient")]


def test_large_finite_gradients_are_not_called_nonfinite():
    """Exploding is not non-finite: norms above float32's sum-of-squares range (~1e19) stay
    finite (float64 where needed), on recorded and unrecorded steps alike."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 300), nn.Linear(300, 1))
    with Monitor(model, every=2) as mon:
        for _ in range(3):
            model.zero_grad()
            (model(torch.randn(4, 300)).sum() * 1e18).backward()
            mon.step()
    assert mon.events == []
    f = mon.frame()
    total = f[f.quantity == "grad_norm_total"].value.to_numpy()
    ref = float(torch.linalg.vector_norm(model[0].weight.grad.double()))
    assert np.isfinite(total).all() and total.max() > 1e19
    assert _value(f[f.step == 2], "0", "grad_norm", "weight") == pytest.approx(ref, rel=1e-6)


def test_half_precision_outputs_with_a_large_sum_are_finite():
    lin = nn.Linear(64, 2048).half()
    with torch.no_grad():
        lin.weight.fill_(0.05)
        lin.bias.zero_()
    model = nn.Sequential(lin)
    with Monitor(model, every=1) as mon:
        out = model(torch.ones(16, 64, dtype=torch.half))
        assert float(out.detach().float().sum()) > 65504  # a half-precision sum overflows
        out.float().mean().backward()
        mon.step()
    assert mon.events == []


def test_nan_in_a_middle_parameter_on_an_unrecorded_step_is_caught():
    """A NaN born in backward inside the body reaches no end parameter: every gradient is
    checked, not only the first and last."""

    class Poison(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.body = nn.Linear(4, 4)
            self.head = nn.Linear(4, 1)
            self.calls = 0

        def forward(self, x):
            h = self.body(x)
            if self.calls == 2:
                h = Poison.apply(h)  # NaN reaches body's gradients only
            self.calls += 1
            return self.head(h.detach() + h - h.detach()) * self.scale

    model = Net()
    with Monitor(model, every=10) as mon:
        for _ in range(4):
            model.zero_grad()
            model(torch.randn(2, 4)).sum().backward()
            mon.step()
    assert [(e["step"], e["kind"]) for e in mon.events] == [(2, "nonfinite_gradient")]


def test_rnn_time_profile_with_an_explicit_initial_state():
    torch.manual_seed(0)
    rnn, head = nn.GRU(3, 5, batch_first=True), nn.Linear(5, 1)
    x, h0 = torch.randn(2, 6, 3), torch.randn(1, 2, 5)
    xr = x.clone().requires_grad_(True)
    out, _ = rnn(xr, h0)
    (gx,) = torch.autograd.grad(head(out[:, -1]).sum(), xr)
    with Monitor(nn.ModuleList([rnn, head]), every=1) as mon:
        out, _ = rnn(x, h0)
        head(out[:, -1]).sum().backward()
        mon.step()
    f = mon.frame()
    prof = f[f.quantity == "input_grad_t"].sort_values("idx").value.to_numpy()
    assert prof == pytest.approx(gx.norm(dim=(0, 2)).numpy(), rel=1e-5)
