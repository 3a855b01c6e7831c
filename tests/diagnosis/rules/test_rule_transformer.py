"""attention-logit-growth and output-logit-divergence on synthetic traces (and silent on healthy
ones), plus a real healthy Transformer run."""

from __future__ import annotations

import math

import torch
from torch import nn

from diagnosis_util import event_trace
from gradmedic import Monitor, diagnose
from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.registry import run_rules
from gradmedic.diagnosis.rules.transformer import rule_attention_logits, rule_output_logits

MODS = [
    ("", "Net", None, {}),
    ("attn", "MultiheadAttention", None, {}),
    ("head", "Linear", None, {}),
]


def _trace(attn: list[float], logz: list[float]):
    rows = []
    for s, v in enumerate(attn):
        rows.append((s, "attn", "", "attn_logit_max", None, v))
        rows.append((s, "", "", "grad_norm_total", None, 1.0))  # diagnose needs gradients
    for s, v in enumerate(logz):
        rows.append((s, "", "", "output_logz_max", None, v + 1.0))
        rows.append((s, "", "", "output_logz_mean", None, v))
    return event_trace(MODS, rows)


def test_attention_growth_fires_with_its_numbers():
    t = _trace([5.0, 12.0, 40.0, 80.0, 60.0], [2.3] * 5)
    [f] = rule_attention_logits(Context.build(t))
    assert (f.slug, f.severity, f.step, f.layers) == (
        "attention-logit-growth",
        "warning",
        3,
        ["attn"],
    )
    assert f.evidence["modules"]["attn"] == {"first": 5.0, "peak": 80.0, "growth": 16.0}
    assert str(f.prescriptions[0]) == "qk-layernorm"


def test_attention_silent_when_healthy_or_large_from_the_start():
    assert rule_attention_logits(Context.build(_trace([5.0, 6.0, 7.0, 8.0], [2.3] * 4))) == []
    # large but not growing (a scale the model started with): growth 1.1 < 3
    assert rule_attention_logits(Context.build(_trace([60.0, 62.0, 66.0], [2.3] * 3))) == []


def test_attention_nonfinite_fires():
    [f] = rule_attention_logits(Context.build(_trace([5.0, math.inf], [2.3, 2.3])))
    assert f.step == 1 and f.evidence["modules"]["attn"]["peak"] == "inf"


def test_output_divergence_fires_and_is_silent_when_healthy():
    [f] = rule_output_logits(Context.build(_trace([5.0] * 4, [2.3, 5.0, -20.0, -45.0])))
    assert (f.slug, f.severity, f.step) == ("output-logit-divergence", "warning", 3)
    assert f.evidence["peak_abs_logz"] == 45.0 and f.evidence["drift"] == 47.3
    assert str(f.prescriptions[0]) == "z-loss(coefficient=0.0001)"
    assert rule_output_logits(Context.build(_trace([5.0] * 4, [2.3, 2.1, 1.5, 3.0]))) == []
    # a large vocabulary's log Z (log 1e14 = 32) that does not drift stays silent
    assert rule_output_logits(Context.build(_trace([5.0] * 3, [32.0, 32.5, 31.0]))) == []


def test_registered_and_applies_only_to_attention():
    ran = run_rules(Context.build(_trace([5.0, 80.0], [2.3, 40.0])))
    assert {f.slug for f in ran.findings} >= {"attention-logit-growth", "output-logit-divergence"}
    no_attn = event_trace(
        [("", "Net", None, {}), ("head", "Linear", None, {})],
        [(0, "", "", "output_logz_max", None, 3.0), (0, "", "", "output_logz_mean", None, 2.0)],
    )
    ran = run_rules(Context.build(no_attn))
    assert "rule_attention_logits" not in [n for n, _ in ran.skipped]
    assert not [f for f in ran.findings if f.slug == "output-logit-divergence"]


def test_healthy_adamw_transformer_is_clean():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.Linear(4, 16), layer, nn.Linear(16, 5))
    x, y = torch.randn(8, 6, 4), torch.randint(0, 5, (8, 6))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)

    with Monitor(model, optimizer=opt, every=1) as mon:
        for _ in range(5):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x).reshape(-1, 5), y.reshape(-1))
            loss.backward()
            mon.observe(loss)
            opt.step()
    trace = mon.trace()
    assert "attn_logit_max" in set(trace.frame.quantity)
    slugs = {f.slug for f in diagnose(trace).findings}
    assert not slugs & {"attention-logit-growth", "output-logit-divergence"}


def _tiny_gpt_trace(lr: float):
    from gradmedic.lab.transformer_proxy import TinyGPT, make_text

    torch.manual_seed(0)
    data, model = make_text(256, 17, 32, 0), TinyGPT(32, 32, 1, 2, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    with Monitor(model, optimizer=opt, every=10) as mon:
        for _ in range(100):
            b = data[torch.randint(0, 256, (16,), generator=g)]
            out = model(b[:, :-1])
            loss = nn.functional.cross_entropy(out.reshape(-1, 32), b[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            mon.observe(loss)
            opt.step()
    return mon.trace()


def test_tiny_gpt_at_a_high_lr_gets_the_finding_and_a_low_lr_does_not():
    """AdamW lr 0.3: the largest attention logit grows from 2.2 to ~5.6e4 in 100 steps
    (measured); at lr 3e-3 it stays below 5 and nothing about logits is reported."""
    hot = diagnose(_tiny_gpt_trace(0.3)).findings
    [f] = [f for f in hot if f.slug == "attention-logit-growth"]
    assert f.severity == "warning" and f.evidence["modules"]["blocks.0.attn"]["peak"] > 1e4
    cold = {f.slug for f in diagnose(_tiny_gpt_trace(3e-3)).findings}
    assert not cold & {"attention-logit-growth", "output-logit-divergence"}
