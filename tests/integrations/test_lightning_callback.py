"""GradmedicCallback in real Lightning fits: one record per optimizer step (accumulation),
norms before gradient_clip_val, bf16-mixed, scalars through the logger equal to the trace,
the report, fail_on, and resume from a checkpoint."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from integration_expect import expected, float32, tensorboard_scalars
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gradmedic import read_trace
from gradmedic.integrations.lightning import FindingsError, GradmedicCallback

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


class Tiny(pl.LightningModule):
    """An MLP that notes each micro-batch's loss and its own measure of the global gradient
    norm where Lightning lets it look, after the callbacks and before clipping."""

    def __init__(self, depth: int = 2, act: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers: list[nn.Module] = [nn.Linear(8, 16), act()]
        for _ in range(depth - 1):
            layers += [nn.Linear(16, 16), act()]
        self.net = nn.Sequential(*layers, nn.Linear(16, 1))
        self.losses: list[torch.Tensor] = []
        self.pre_clip: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x).float(), y)
        self.losses.append(loss.detach())
        return loss

    def on_before_optimizer_step(self, optimizer):
        grads = [p.grad.double().flatten() for p in self.parameters()]
        self.pre_clip.append(torch.linalg.vector_norm(torch.cat(grads)).item())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(64, 8, generator=g)
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def _trainer(tmp_path, cb, **kw):
    kw.setdefault("logger", TensorBoardLogger(tmp_path, name="tb"))
    return pl.Trainer(
        accelerator="cpu", callbacks=[cb], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=tmp_path, **kw,
    )  # fmt: skip


def test_accumulation_and_clipping_record_the_norm_before_clipping(tmp_path):
    module, cb = Tiny(), GradmedicCallback(every=1)
    trainer = _trainer(tmp_path, cb, max_steps=4, accumulate_grad_batches=2, gradient_clip_val=0.01)
    trainer.fit(module)
    assert cb.trace_path == tmp_path / "tb" / "version_0" / "gradmedic" / "trace.sqlite"
    trace = read_trace(cb.trace_path)
    assert trace.steps == [0, 1, 2, 3]  # one record per optimizer step, not per micro-batch
    norms = expected(trace)["grad_norm_total"]
    assert [v for _, v in norms] == pytest.approx(module.pre_clip, rel=1e-12)
    assert min(module.pre_clip) > 0.01  # clipping was active: after it the norm is 0.01
    f = trace.frame
    calls = f[(f.quantity == "calls") & (f.module == "net.0")]
    assert calls.value.tolist() == [2.0] * 4  # two micro-batches summed into each step
    losses = [(module.losses[2 * s].item() + module.losses[2 * s + 1].item()) / 2 for s in range(4)]
    # the mean of the undivided micro-batch losses (to float32 rounding of the Monitor's mean)
    assert [v for _, v in expected(trace)["loss"]] == pytest.approx(losses, rel=1e-7)
    grads = trace.meta["gradients"]
    assert grads["clipping"] == "recorded before clipping (norm, 0.01)"
    assert (grads["per"], grads["micro_batches"], grads["unscaled"]) == ("optimizer step", 2, True)
    logged = tensorboard_scalars(trainer.logger.log_dir)
    for tag, series in expected(trace).items():
        assert logged[f"gradmedic/{tag}"] == float32(series), tag
    assert cb.report_path == cb.trace_path.with_name("report.html") and cb.report_path.exists()
    assert cb.diagnosis is not None


def test_bf16_mixed_records_finite_unclipped_norms(tmp_path):
    module, cb = Tiny(), GradmedicCallback(every=1, log=False)
    _trainer(tmp_path, cb, max_steps=3, precision="bf16-mixed", logger=False).fit(module)
    trace = read_trace(cb.trace_path)
    assert cb.trace_path.parent == tmp_path / "gradmedic"  # no logger: default_root_dir
    norms = [v for _, v in expected(trace)["grad_norm_total"]]
    assert norms == pytest.approx(module.pre_clip, rel=1e-12) and min(norms) > 0
    assert trace.meta["gradients"]["precision"] == "bf16-mixed"
    assert trace.meta["gradients"]["clipping"] == "none configured"
    f = trace.frame
    assert f[f.quantity == "signal_out"].value.gt(0).all()


def test_fp16_with_a_grad_scaler_records_unscaled_gradients_signals_and_losses(tmp_path):
    """16-mixed with Lightning's GradScaler (forced on CPU through the plugin, scale 1024):
    gradients and losses as the module sees them unscaled, signals divided by the scale."""
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    module, cb = Tiny(), GradmedicCallback(tmp_path / "amp.sqlite", every=1, log=False)
    plugin = MixedPrecision("16-mixed", "cpu", scaler)
    _trainer(tmp_path, cb, max_steps=2, logger=False, plugins=[plugin]).fit(module)
    plain, ref = Tiny(), GradmedicCallback(tmp_path / "fp32.sqlite", every=1, log=False)
    _trainer(tmp_path, ref, max_steps=1, logger=False).fit(plain)
    trace, fp32 = read_trace(cb.trace_path), read_trace(ref.trace_path)
    norms = [v for _, v in expected(trace)["grad_norm_total"]]
    assert norms == pytest.approx(module.pre_clip, rel=1e-12)
    assert [v for _, v in expected(trace)["loss"]] == pytest.approx(
        [x.item() for x in module.losses], rel=1e-7
    )
    f = trace.frame
    assert f[f.quantity == "amp_unscaled"].value.tolist() == [1.0, 1.0]
    at0 = trace.layer_rows(0)[-1]["signal_out"]  # unscaled it is the fp32 run's, to fp16 noise
    assert at0 == pytest.approx(fp32.layer_rows(0)[-1]["signal_out"], rel=1e-2)
    assert trace.meta["gradients"]["unscaled"] is True


def test_fail_on_error_fails_the_fit_with_the_report(tmp_path):
    cb = GradmedicCallback(tmp_path / "sick" / "trace.sqlite", every=1, fail_on="error")
    with pytest.raises(FindingsError, match=r"finding\(s\) at 'error' or worse: .*vanishing") as e:
        _trainer(tmp_path, cb, max_steps=2, logger=False).fit(Tiny(depth=24, act=nn.Sigmoid))
    assert e.value.exit_code == 1 and e.value.report == tmp_path / "sick" / "report.html"
    assert e.value.report.exists() and "vanishing-gradient" in e.value.diagnosis.slugs()
    with pytest.raises(Exception, match="unknown severity 'fatal'"):
        GradmedicCallback(fail_on="fatal")


def test_resume_from_a_checkpoint_continues_the_trace(tmp_path):
    path, ckpt = tmp_path / "trace.sqlite", tmp_path / "mid.ckpt"
    module, first = Tiny(), GradmedicCallback(path, every=1, report=False)
    trainer = _trainer(tmp_path, first, max_steps=3, logger=False)
    trainer.fit(module)
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=False)["callbacks"]
    assert [s["monitor"]["step_index"] for s in saved.values()] == [3]
    second = GradmedicCallback(path, every=1, report=False)
    _trainer(tmp_path, second, max_steps=5, logger=False).fit(Tiny(), ckpt_path=ckpt)
    trace = read_trace(path)
    assert trace.steps == [0, 1, 2, 3, 4] and len(trace.meta["runs"]) == 2
    assert second.session.state_dict()["step_index"] == 5
