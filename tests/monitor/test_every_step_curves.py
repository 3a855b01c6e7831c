"""Every-step curves (issue 12, item 1): the global gradient norm, the loss, the AMP scale and
whether the GradScaler skipped the step are in the trace for every iteration, while module
hooks run only on recorded steps, with no host synchronisation of their own; a skipped
iteration counts as a step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic import Monitor
from gradmedic.trace import Quantity
from gradmedic.workflows.checkup import diagnose


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def _train(every: int, steps: int = 12) -> tuple[Monitor, list[float]]:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    losses = []
    with Monitor(model, optimizer=opt, every=every) as mon:
        for _ in range(steps):
            x, y = torch.randn(16, 8, generator=g), torch.randn(16, 1, generator=g)
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            mon.observe(loss)
            opt.step()
            losses.append(loss.item())
    return mon, losses


def _series(mon: Monitor, q: Quantity) -> dict[int, float]:
    return dict(mon.trace().series(q))


def test_every_iteration_has_norm_and_loss_equal_to_recording_every_step():
    sparse, losses = _train(every=5)
    dense, _ = _train(every=1)
    norm, loss = _series(sparse, Quantity.GRAD_NORM_TOTAL), _series(sparse, Quantity.LOSS)
    assert sorted(norm) == sorted(loss) == list(range(12))
    assert [loss[s] for s in range(12)] == pytest.approx(losses, rel=1e-12)
    ref = _series(dense, Quantity.GRAD_NORM_TOTAL)
    assert [norm[s] for s in range(12)] == pytest.approx([ref[s] for s in range(12)], rel=1e-5)
    # module quantities only on recorded steps
    gains = sparse.frame().query("quantity == 'gain'")["step"].unique().tolist()
    assert sorted(gains) == [0, 5, 10]


def test_curves_are_written_at_detach_when_nothing_else_records():
    mon, _ = _train(every=100, steps=7)
    assert sorted(_series(mon, Quantity.GRAD_NORM_TOTAL)) == list(range(7))


class _Count:
    """Counts host transfers (``.item()``, ``.cpu()``, ``.tolist()``, ``bool``/``float``)."""

    NAMES = ("item", "cpu", "tolist", "__bool__", "__float__")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        self.on = False
        for name in self.NAMES:
            orig = getattr(torch.Tensor, name)

            def wrapped(t, *a, _orig=orig, **k):
                if self.on:
                    self.n += 1
                return _orig(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, wrapped)


def test_unrecorded_steps_make_no_host_transfer_and_a_recorded_one_makes_one(monkeypatch):
    model = _mlp()
    counter = _Count(monkeypatch)
    per_step = []
    with Monitor(model, every=4) as mon:
        for _ in range(8):
            loss = model(torch.randn(4, 8)).pow(2).mean()
            loss.backward()
            mon.observe(loss)
            counter.on, counter.n = True, 0
            mon.step()
            counter.on = False
            per_step.append(counter.n)
    # steps 0 and 4 record: one .cpu() each (with its .tolist()); the others none at all
    assert per_step == [2, 0, 0, 0, 2, 0, 0, 0]
    assert sorted(_series(mon, Quantity.LOSS)) == list(range(8))


# ---------------------------------------------------------------- GradScaler skipped steps
def _amp_run(monitor: bool, every: int = 5, steps: int = 20, target: float = 50.0):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(32, 16, generator=g), None) for _ in range(4)]
    losses, scales = [], []
    mon = Monitor(model, optimizer=opt, scaler=scaler, every=every) if monitor else None
    if mon is not None:
        mon.attach()
    for i in range(steps):
        x, _ = data[i % 4]
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = nn.functional.mse_loss(model(x), torch.full((32, 1), target))
        scaler.scale(loss).backward()
        if mon is not None:
            mon.observe(loss)
        scales.append(scaler.get_scale())
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    if mon is not None:
        mon.detach()
    return mon, scaler, losses, scales, [p.detach().clone() for p in model.parameters()]


def test_skipped_iterations_count_and_the_trace_says_which():
    mon, scaler, _, scales, _ = _amp_run(True)
    skipped = _series(mon, Quantity.STEP_SKIPPED)
    amp = _series(mon, Quantity.AMP_SCALE)
    assert sorted(skipped) == sorted(amp) == list(range(20))  # one step per iteration
    assert [amp[s] for s in range(20)] == scales
    # a skip halves the scale: the skipped iterations are those before each reduction
    expect = [float(scales[i + 1] < scales[i]) for i in range(19)]
    assert [skipped[s] for s in range(19)] == expect
    assert sum(expect) >= 3
    assert mon.events == []  # the scaler's overflow probe is no non-finite event
    assert mon.step_index == 20
    assert "update" not in scaler.__dict__  # nothing of ours is left on the scaler


def test_a_recorded_skipped_step_names_where_it_overflowed():
    mon, *_ = _amp_run(True, every=1, steps=6)
    f = mon.frame()
    over = f[f["quantity"] == Quantity.AMP_OVERFLOW.value]
    skipped = _series(mon, Quantity.STEP_SKIPPED)
    assert sorted(over["step"]) == [s for s, v in skipped.items() if v == 1.0]
    assert len(over) >= 3 and set(over["module"]) <= {"", "0", "1", "2"}
    assert not (f["quantity"] == Quantity.NONFINITE.value).any()


def test_training_with_a_scaler_is_bit_identical_with_the_monitor():
    _, _, loss_a, scale_a, params_a = _amp_run(True, every=3)
    _, _, loss_b, scale_b, params_b = _amp_run(False)
    assert loss_a == loss_b and scale_a == scale_b
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))


def test_every_step_skipped_still_gives_a_trace():
    mon, *_ = _amp_run(True, every=50, steps=4, target=6e4)
    skipped = _series(mon, Quantity.STEP_SKIPPED)
    assert skipped == {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}
    (f,) = [f for f in diagnose(mon.trace()).findings if f.slug == "amp-skipped-steps"]
    assert f.severity == "warning" and "never updated" in f.cause
