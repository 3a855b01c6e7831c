"""GradmedicCallback in a real Hugging Face Trainer run on a tiny GPT-2 built from a config
(no download) and generated tokens: norms before max_grad_norm clipping (equal to the
Trainer's own pre-clip grad_norm), one record per optimizer step, the scalars in the
Trainer's log and its TensorBoard reporter equal to the trace, the report, and resume."""

from __future__ import annotations

import pytest
import torch
from integration_expect import expected, float32, tensorboard_scalars
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from gradmedic import read_trace
from gradmedic.errors import ConfigError
from gradmedic.integrations.transformers import STATE_FILE, GradmedicCallback

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def _tokens(n: int = 32, length: int = 16) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (n, length), generator=g)
    return [{"input_ids": row, "labels": row} for row in ids]


def _trainer(out, *, max_steps: int, **kw) -> Trainer:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    )
    args = TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=4,
        gradient_accumulation_steps=2, learning_rate=1e-3, logging_steps=1, use_cpu=True,
        disable_tqdm=True, seed=0, dataloader_num_workers=0, **kw,
    )  # fmt: skip
    return Trainer(model=model, args=args, train_dataset=_tokens())


def test_train_records_before_clipping_and_logs_through_the_trainer(tmp_path):
    trainer = _trainer(tmp_path, max_steps=3, max_grad_norm=0.05, report_to=["tensorboard"],
                       save_strategy="no")  # fmt: skip
    cb = GradmedicCallback.attach(trainer, every=1)
    trainer.train()
    assert cb.trace_path == tmp_path / "gradmedic" / "trace.sqlite"
    trace = read_trace(cb.trace_path)
    want = expected(trace)
    assert trace.steps == [0, 1, 2]
    # the Trainer logs the pre-clip norm of optimizer step s at global_step s + 1
    hf = [(e["step"] - 1, e["grad_norm"]) for e in trainer.state.log_history if "grad_norm" in e]
    assert [s for s, _ in hf] == [0, 1, 2]
    assert [v for _, v in want["grad_norm_total"]] == pytest.approx([v for _, v in hf], rel=1e-5)
    assert min(v for _, v in hf) > 0.05  # clipping was active
    ours = [e for e in trainer.state.log_history if "gradmedic/grad_norm_total" in e]
    assert [(e["step"], e["gradmedic/grad_norm_total"]) for e in ours] == want["grad_norm_total"]
    logged = tensorboard_scalars(tmp_path / "runs")
    for tag, series in want.items():
        assert logged[f"train/gradmedic/{tag}"] == float32(series), tag  # HF adds train/
    f = trace.frame
    assert f[(f.quantity == "calls") & (f.module == "transformer.h.0.mlp.c_fc")].value.tolist() == [
        2.0, 2.0, 2.0
    ]  # fmt: skip
    grads = trace.meta["gradients"]
    assert grads["clipping"] == "recorded before clipping (norm, 0.05)"
    assert (grads["micro_batches"], grads["unscaled"], grads["precision"]) == (2, True, "fp32")
    assert cb.report_path == tmp_path / "gradmedic" / "report.html" and cb.report_path.exists()
    # the step's loss is the Trainer's (micro-batch shares added up, not averaged)
    hf_loss = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert [v for _, v in want["loss"]] == pytest.approx(hf_loss, rel=1e-6)


def test_resume_from_a_checkpoint_continues_the_trace(tmp_path):
    trainer = _trainer(tmp_path, max_steps=2, report_to=[], save_strategy="steps", save_steps=2)
    GradmedicCallback.attach(trainer, every=1, report=False)
    trainer.train()
    assert (tmp_path / "checkpoint-2" / STATE_FILE).read_text().startswith('{"step_index": 2')
    again = _trainer(tmp_path, max_steps=4, report_to=[], save_strategy="no")
    cb = GradmedicCallback.attach(again, every=1, report=False)
    again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    trace = read_trace(cb.trace_path)
    assert trace.steps == [0, 1, 2, 3] and len(trace.meta["runs"]) == 2
    logged = [e["step"] for e in again.state.log_history if "gradmedic/loss" in e]
    assert logged == [0, 1, 2, 3]  # the checkpoint's log history, then the resumed steps


def test_without_attach_the_callback_asks_for_the_trainer(tmp_path):
    trainer = _trainer(tmp_path, max_steps=1, report_to=[], save_strategy="no")
    trainer.add_callback(GradmedicCallback())
    with pytest.raises(ConfigError, match=r"GradmedicCallback.attach\(trainer"):
        trainer.train()
