"""Where a NaN/Inf is born (probes/nonfinite.py): in the loss, inside a module that computes
beyond its children, in a block's own code, in the data, and overflow judged in the model's
dtype. Each case is checked against a plain forward (the reference twin)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic import Monitor
from gradmedic.monitor.probes.nonfinite import LOSS_DETAIL, LOSS_GRAD_DETAIL

BORN = "first module whose output is NaN/Inf"
EARLIER = (
    "first module whose output is NaN/Inf; its parameters are already non-finite, "
    "so an earlier update (a NaN gradient or an exploding step) put them there"
)


def _events(mon: Monitor) -> list[tuple]:
    return [(e["step"], e["kind"], e["module"], e["detail"]) for e in mon.events]


def _train(model, batches, loss_fn, steps: int, observe: bool = True, lr: float = 0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with Monitor(model, optimizer=opt, every=1) as mon:
        for x, y in batches[:steps]:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            if observe:
                mon.observe(loss)
            opt.step()
    return mon


def _poisson(rate, target):
    return (rate - target * torch.log(rate)).mean()


def _count_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1), nn.ReLU())
    with torch.no_grad():
        model[2].bias.fill_(-100.0)  # every predicted rate is exactly 0
    x, y = torch.randn(6, 3), torch.zeros(6, 1)
    return model, [(x, y)]


def test_a_nan_loss_on_a_finite_forward_is_born_in_the_loss():
    model, data = _count_model()
    out = model(data[0][0])
    assert torch.isfinite(out).all() and torch.isnan(_poisson(out, data[0][1]))  # reference
    mon = _train(model, data, _poisson, 1)
    assert _events(mon) == [(0, "nonfinite_loss", None, LOSS_DETAIL)]
    f = mon.frame()
    assert f[f.quantity.str.startswith("nonfinite")][["module", "quantity"]].values.tolist() == [
        ["", "nonfinite_loss"],
        ["", "nonfinite"],
    ]


def test_a_finite_loss_with_an_undefined_derivative_at_the_output():
    """sqrt at 0: the value is 0, its derivative w.r.t. the output is 0 * inf = NaN."""
    model, data = _count_model()

    def norm_loss(out, y):
        return torch.sqrt(out.pow(2).sum(-1)).mean()

    out = model(data[0][0]).detach().requires_grad_(True)
    norm_loss(out, None).backward()
    assert torch.isnan(out.grad).all()  # reference: plain autograd
    for observe in (True, False):
        model, data = _count_model()
        mon = _train(model, data, norm_loss, 1, observe=observe)
        assert _events(mon) == [(0, "nonfinite_loss", None, LOSS_GRAD_DETAIL)]


def test_attention_over_an_all_padded_row_is_named_at_step_0_without_an_update_story():
    torch.manual_seed(0)

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.norm = nn.LayerNorm(8)
            self.head = nn.Linear(8, 2)

        def forward(self, h):
            pad = torch.zeros(h.shape[:2], dtype=torch.bool)
            pad[0] = True  # the first row is all padding
            a, _ = self.attn(h, h, h, key_padding_mask=pad)
            return self.head(self.norm(h + a).mean(1))

    model = Enc()
    x, y = torch.randn(3, 5, 8), torch.tensor([0, 1, 0])
    a, _ = model.attn(x, x, x, key_padding_mask=torch.arange(3).unsqueeze(1).expand(3, 5) == 0)
    assert torch.isnan(a[0]).all() and torch.isfinite(a[1:]).all()  # reference
    mon = _train(model, [(x, y)] * 2, nn.functional.cross_entropy, 2)
    fwd = [e for e in _events(mon) if e[1] == "nonfinite_forward"]
    assert fwd == [
        (0, "nonfinite_forward", "attn", BORN),
        (1, "nonfinite_forward", "attn", EARLIER),
    ]


def test_a_nan_made_by_a_blocks_own_code_between_its_children_is_born_in_the_block():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.log(self.a(x)))  # log of negative entries: NaN

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), Block())
    mon = _train(model, [(torch.randn(5, 4), torch.randn(5, 2))], nn.functional.mse_loss, 1)
    assert _events(mon)[0] == (0, "nonfinite_forward", "1", BORN)


def test_nan_in_the_data_is_told_as_such():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(5, 4)
    x[2, 1] = float("nan")
    mon = _train(model, [(x, torch.randn(5, 1))], nn.functional.mse_loss, 1)
    step, kind, module, detail = _events(mon)[0]
    assert (step, kind, module) == (0, "nonfinite_forward", "0")
    assert detail.endswith("its input was already NaN/Inf (the model's input data, or an "
                           "operation outside the hooked modules)")  # fmt: skip


def test_float32_overflow_names_the_layer_whose_float32_output_is_inf():
    torch.manual_seed(0)
    layers = [nn.Linear(256, 256, bias=False) for _ in range(40)]
    for lin in layers:
        nn.init.normal_(lin.weight, std=1.0)
    model = nn.Sequential(*layers)
    x = torch.randn(4, 256)
    h, first = x, None
    with torch.no_grad():  # reference: the first layer whose float32 output is not finite
        for i, lin in enumerate(layers):
            prev, h = h, lin(h)
            if first is None and not torch.isfinite(h).all():
                first, before = i, float(prev.abs().max())
    assert first == 31 and 1e36 < before < 3.4e38  # the layer before is finite, but huge
    mon = _train(model, [(x, torch.zeros(4, 256))], nn.functional.mse_loss, 1)
    assert _events(mon)[0] == (0, "nonfinite_forward", str(first), BORN)


def test_a_huge_but_finite_backward_signal_is_not_non_finite():
    """Signals of 1e39 exceed float32 in norm though every entry is finite: no event."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 100))
    nn.init.constant_(model[0].weight, 1e-3)  # dL/dx = 100 * 1e38 * 1e-3 per entry: finite
    x = torch.full((1, 3), 1e-3)
    with Monitor(model, every=1) as mon:
        (model(x) * 1e38).sum().backward()
        mon.step()
    assert mon.events == []
    f = mon.frame()
    so = f[(f.quantity == "signal_out") & (f.module == "0")].value.item()
    assert so == pytest.approx(1e39, rel=1e-6)


def test_parameters_bad_before_the_forward_are_an_earlier_update():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    with torch.no_grad():
        model[1].weight[0, 0] = float("inf")
    mon = _train(model, [(torch.randn(4, 3), torch.randn(4, 1))], nn.functional.mse_loss, 1)
    assert _events(mon)[0] == (0, "nonfinite_forward", "1", EARLIER)


def test_output_rms_is_the_rms_of_the_models_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5))
    x = torch.randn(7, 3)
    ref = float(model(x).detach().double().square().mean().sqrt())
    with Monitor(model, every=1) as mon:
        model(x).sum().backward()
        mon.step()
    f = mon.frame()
    assert f[f.quantity == "output_rms"].value.item() == pytest.approx(ref, rel=1e-12)


def test_a_nan_made_in_place_on_a_childs_output_is_born_in_the_block():
    """The block returns its child's output tensor, changed in place after the child ran: the
    child's sum is stale (its version moved), so the block's output is summed anew."""

    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            h = self.lin(x)
            h.log_()  # negative entries: NaN, in the child's own output tensor
            return h

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), InPlace(), nn.Linear(4, 1))
    with Monitor(model, every=1) as mon:
        model(torch.randn(5, 4))
        mon.step()
    assert _events(mon)[0] == (0, "nonfinite_forward", "1", BORN)
