"""transformer-proxy: the data, the model, the judge on constructed numbers, a tiny run."""

from __future__ import annotations

import csv
import itertools
import math

import torch

from gradmedic.lab import EXPERIMENTS, run_lab
from gradmedic.lab.transformer_proxy import TinyGPT, _final, judge_proxy, make_text
from gradmedic.remedies.transformer import QKNormAttention, qk_layernorm_


def test_text_repeats_its_first_half_and_follows_the_chain():
    x = make_text(50, 9, 16, seed=0)
    assert x.shape == (50, 9) and x.dtype == torch.long
    assert torch.equal(x[:, 5:], x[:, :4])
    assert torch.equal(make_text(50, 9, 16, seed=0), x)
    succ = {}
    for row in x[:, :5].tolist():
        for a, b in itertools.pairwise(row):
            succ.setdefault(a, set()).add(b)
    assert max(len(s) for s in succ.values()) <= 4  # a sparse bigram chain


def test_model_is_causal_and_takes_qk_layernorm():
    torch.manual_seed(0)
    model = TinyGPT(16, 16, 1, 2, 8)
    x = torch.randint(0, 16, (2, 8))
    y = model(x)
    x2 = x.clone()
    x2[:, 5:] = (x2[:, 5:] + 1) % 16
    assert torch.allclose(model(x2)[:, :5], y[:, :5], atol=1e-6)  # the future is not seen
    assert not torch.allclose(model(x2)[:, 5:], y[:, 5:])
    model, rep = qk_layernorm_(model)
    assert isinstance(model.blocks[0]["attn"], QKNormAttention) and len(rep.changes) == 1
    assert model(x).shape == (2, 8, 16)


def test_judge_and_final_loss():
    assert judge_proxy({"baseline": 2, "qk-layernorm": 4}, {"baseline": 1.0, "qk-layernorm": 0.5})[
        0
    ]
    assert not judge_proxy(
        {"baseline": 2, "qk-layernorm": 2}, {"baseline": 1.0, "qk-layernorm": 0.5}
    )[0]
    assert not judge_proxy({"baseline": 2, "z-loss": 3}, {"baseline": 1.0, "z-loss": 1.5})[0]
    assert _final([3.0] * 18 + [1.0, 2.0], 5.0) == 1.5  # mean of the last tenth
    assert _final([3.0, math.nan], 5.0) == 5.0  # non-finite: ln V
    assert _final([9.0], 5.0) == 5.0  # capped at the loss at init


def test_tiny_run_writes_figure_table_and_numbers(tmp_path):
    assert "transformer-proxy" in EXPERIMENTS
    run = run_lab(["transformer-proxy"], quick=True, tiny=True, out=tmp_path)
    [res] = run.results
    assert res.error is None and res.passed in (True, False)
    assert (tmp_path / "transformer-proxy" / "figure.png").stat().st_size > 1000
    with open(tmp_path / "transformer-proxy" / "table.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["variant"] for r in rows} == {"baseline", "qk-layernorm"} and len(rows) == 4
    assert set(res.measured["stable_range"]) == {"baseline", "qk-layernorm"}
    assert math.isclose(res.measured["initial_loss_lnV"], math.log(16))
