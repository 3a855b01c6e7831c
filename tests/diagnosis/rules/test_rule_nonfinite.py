"""The non-finite rule names where a NaN/Inf was born and prescribes what its mechanism needs:
a module's own operation, the loss (kind 3), never "an earlier update" at a run's first step
(kind 4), the initial weight scale (kind 6), or exploding updates."""

from __future__ import annotations

import torch
from torch import nn

from diagnosis_util import LogOfShifted, data, event_trace, finding, linear_stack
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.train import BatchSource, TrainConfig
from gradmedic.zoo import build_model

torch.set_num_threads(1)

_STEP_FIXES = {"clip-grad-norm", "lower-lr"}


def _at_step_0(rows: list[tuple]) -> list[tuple]:
    """``rows`` and the step's (non-finite) global gradient norm, as the Monitor records it."""
    return [(0, "", "", "grad_norm_total", None, float("nan")), *rows]


def _nan(trace_or_diag):
    d = trace_or_diag if hasattr(trace_or_diag, "findings") else diagnose(trace_or_diag)
    return finding(d, "nonfinite-gradient")


def test_module_that_produces_nan_is_named():
    d = data("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), LogOfShifted(), nn.Linear(32, 10))
    f = _nan(diagnose(model=model, data=d, config=TrainConfig(steps=3, every=1)))
    assert (f.severity, f.step, f.layers) == ("error", 0, ["2"])
    assert f.evidence["first_forward_module"] == "2"
    assert f.evidence["born_in_module"] is True and f.evidence["origin"] == "module"
    assert f.evidence["first_nonfinite_loss_step"] == 0
    assert f.cause.startswith(
        "Module '2' (LogOfShifted) produced NaN/Inf in the forward pass at step 0 before any "
        "update, from a finite input"
    )
    assert "earlier update" not in f.cause
    assert f.prescriptions == []  # clipping cannot fix a module that computes NaN


def test_divergence_from_large_steps_lowers_the_rate_and_never_clips_at_a_diverging_norm():
    d = data("digits")
    model = build_model("mlp:depth=4,width=64,act=relu,init=kaiming", d.info, seed=0)
    f = _nan(diagnose(model=model, data=d, config=TrainConfig(steps=15, every=1, lr=50.0)))
    assert f.step > 0 and f.evidence["born_in_module"] is False
    assert f.evidence["origin"] == "updates"
    assert f.evidence["growth_per_step"] >= 2.0
    assert f.cause.startswith("The updates exploded: the global gradient norm grew")
    # four weight layers: no quadratic model, a tenfold cut; the growth began at step 0, so
    # there is no norm to clip at
    assert [str(p) for p in f.prescriptions] == ["lower-lr(factor=0.1)"]


def _poisson(rate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (rate - y * torch.log(rate)).mean()


def _zero_rate_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1), nn.ReLU())
    with torch.no_grad():
        model[2].bias.fill_(-100.0)  # every rate is exactly 0 at step 0
    return model


def _counts() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(32, 4, generator=g), torch.tensor([[0.0], [1.0]] * 16))]


def test_nan_born_in_the_loss_value_gets_an_epsilon_not_clipping():
    """log(0) = -inf, 0 * -inf = NaN: the loss value is NaN, every module output finite."""
    cfg = TrainConfig(steps=3, every=1)
    counts = BatchSource(factory=_counts)
    f = _nan(diagnose(model=_zero_rate_model(), data=counts, loss=_poisson, config=cfg))
    assert f.step == 0 and f.title == "NaN/Inf born in the loss at step 0"
    assert (f.evidence["origin"], f.evidence["loss_operation"]) == ("loss", "value")
    assert f.evidence["first_forward_module"] is None and f.layers == []
    assert "log of 0 is -inf and 0 * -inf is NaN" in f.cause
    assert [p.remedy for p in f.prescriptions] == ["loss-epsilon", "loss-clamp", "fused-loss"]
    assert all(p.manual for p in f.prescriptions)
    assert not _STEP_FIXES & {p.remedy for p in f.prescriptions}


def test_nan_born_in_the_loss_derivative_is_a_boundary_not_a_value():
    """sqrt(0) = 0 is finite, its slope is infinite: an undefined derivative at a boundary."""

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dist = torch.sqrt(((out - out.detach()) ** 2).sum())  # 0, with gradient inf * 0 = NaN
        return dist + nn.functional.cross_entropy(out, y)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 10))
    cfg = TrainConfig(steps=2, every=1)
    f = _nan(diagnose(model=model, data=data("digits"), loss=loss, config=cfg))
    assert (f.step, f.evidence["origin"], f.evidence["loss_operation"]) == (0, "loss", "derivative")
    assert "finite but its gradient with respect to the model output is NaN/Inf" in f.cause
    assert not _STEP_FIXES & {p.remedy for p in f.prescriptions}


def _small(extra_rows: list[tuple], meta: dict | None = None):
    mods = [
        ("", "Net", None, {}),
        ("0", "Linear", None, {"fan_in": 4, "fan_out": 4, "sw2": 1.0, "sb2": 0.0}),
        ("1", "Tanh", "tanh", {}),
        ("2", "Linear", None, {"fan_in": 4, "fan_out": 1, "sw2": 1.0, "sb2": 0.0}),
    ]
    rows = [(s, "", "", "loss", None, 1.0) for s in range(6)]
    rows += [(s, "", "", "grad_norm_total", None, 1.0) for s in range(6)]
    return diagnose(event_trace(mods, rows + extra_rows, meta))


def test_the_monitor_s_nonfinite_loss_row_tells_value_from_derivative():
    # contract: a nonfinite_loss row at a step whose recorded loss is finite -> derivative
    f = _nan(_small([(0, "", "", "nonfinite_loss", None, 1.0)]))
    assert (f.evidence["origin"], f.evidence["loss_operation"]) == ("loss", "derivative")
    bad = [(1, "", "", "loss", None, float("nan")), (1, "", "", "nonfinite_loss", None, 1.0)]
    f = _nan(_small(bad))
    assert (f.step, f.evidence["loss_operation"]) == (1, "value")


def test_nan_at_an_appended_run_s_first_step_is_never_an_earlier_update():
    runs = {"runs": [{"run": 0, "first_step": 0}, {"run": 1, "first_step": 3}]}
    rows = [(s, "2", "weight", "param_norm", None, 1.5) for s in range(6)]
    f = _nan(_small([*rows, (3, "2", "", "nonfinite_forward", None, 1.0)], runs))
    assert (f.step, f.evidence["origin"], f.evidence["born_in_module"]) == (3, "module", True)
    assert "before any update" in f.cause and "earlier update" not in f.cause


def test_finite_weights_later_in_a_run_are_still_the_module_s_own_nan():
    rows = [(s, "2", "weight", "param_norm", None, 1.5) for s in range(6)]
    f = _nan(_small([*rows, (4, "2", "", "nonfinite_forward", None, 1.0)]))
    assert (f.evidence["origin"], f.evidence["born_in_module"]) == ("module", True)
    assert "with finite weights" in f.cause and "earlier update" not in f.cause


def test_weights_made_non_finite_by_an_update_are_blamed_on_the_update():
    rows = [(s, "2", "weight", "param_norm", None, 1.5) for s in range(3)]
    rows.append((3, "2", "weight", "param_norm", None, float("nan")))
    f = _nan(_small([*rows, (4, "2", "", "nonfinite_forward", None, 1.0)]))
    assert (f.evidence["origin"], f.evidence["born_in_module"]) == ("weights", False)
    assert "an earlier update" in f.cause
    assert [p.remedy for p in f.prescriptions] == ["clip-grad-norm", "lower-lr"]


def test_overflow_from_the_weight_scale_names_the_init_and_prescribes_reinit():
    """40 Linear(256, 256) at sw2 = 256 (std 1): x16 per layer, float32's 3.4e38 passed after
    32 layers: log10 16^32 + log10 4 = 39.1 >= 38.5 (theory), so 'linears.31' (field case 11)."""
    rows = _at_step_0([(0, "linears.31", "", "nonfinite_forward", None, 1.0)])
    f = _nan(event_trace(linear_stack(40, 256.0), rows))
    assert f.evidence["origin"] == "weight-scale" and f.title.startswith("Weight-scale overflow")
    assert f.evidence["predicted_first_overflow"] == "linears.31"
    assert f.evidence["predicted_growth_per_layer"] == 16.0
    assert "log or sqrt" not in f.cause and "sigma_w^2 = fan_in Var(W) = 256" in f.cause
    (p,) = f.prescriptions
    assert str(p) == "reinit(scheme=xavier)" and p.predicted["log10_growth_per_layer"] == 0.0
    # a measurement one layer early (the float32 cast of a float64 probe) is still explained
    rows = _at_step_0([(0, "linears.30", "", "nonfinite_forward", None, 1.0)])
    assert _nan(event_trace(linear_stack(40, 256.0), rows)).evidence["origin"] == "weight-scale"


def test_the_same_nan_at_the_critical_scale_is_not_blamed_on_the_weights():
    rows = _at_step_0([(0, "linears.31", "", "nonfinite_forward", None, 1.0)])
    f = _nan(event_trace(linear_stack(40, 1.0), rows))
    assert f.evidence["origin"] == "module"


def test_a_loss_that_overflows_at_step_0_from_the_weight_scale_is_the_weights():
    """16 layers at x16 (field case 11's control): outputs 16^16 = 1.8e19, their square 3e38."""
    rows = _at_step_0(
        [(0, "", "", "loss", None, float("inf")), (0, "", "", "nonfinite", None, 1.0)]
    )
    f = _nan(event_trace(linear_stack(16, 256.0), rows))
    assert f.evidence["origin"] == "weight-scale"
    assert "in the loss (its square)" in f.cause
    assert [str(p) for p in f.prescriptions] == ["reinit(scheme=xavier)"]
