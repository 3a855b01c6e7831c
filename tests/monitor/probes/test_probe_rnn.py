"""RNN gradients through time against nn.*Cell references (probes/rnn.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic import Monitor


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


def test_rnn_schedules_select_among_the_recorded_steps():
    """rnn_time=False: no input profile at all; rnn_hidden=[1]: the unrolled profile only at
    step 1, while every step records its gradient norms."""
    torch.manual_seed(0)
    rnn, head = nn.LSTM(3, 4, batch_first=True), nn.Linear(4, 1)
    model = nn.ModuleList([rnn, head])
    with Monitor(model, every=1, rnn_time=False, rnn_hidden=[1]) as mon:
        for _ in range(3):
            model.zero_grad()
            out, _ = rnn(torch.randn(2, 6, 3))
            head(out[:, -1]).sum().backward()
            mon.step()
    f = mon.frame()
    assert sorted(f[f.quantity == "grad_norm_total"].step) == [0, 1, 2]
    assert f[f.quantity == "input_grad_t"].empty
    hidden = f[f.quantity == "hidden_grad_t"]
    assert sorted(hidden.step.unique()) == [1] and sorted(hidden.idx) == list(range(6))
