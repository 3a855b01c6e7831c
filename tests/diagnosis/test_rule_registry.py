"""The rule registry: declared slugs are the public list, rules that lack their quantities are
skipped with a reason, and a rule cannot emit a slug it did not declare."""

from __future__ import annotations

import pytest

from diagnosis_util import SPIKE_LOSSES_JUMP, SPIKE_NORMS, spike_trace
from gradmedic.diagnosis import SLUGS, Context
from gradmedic.diagnosis.finding import Finding
from gradmedic.diagnosis.registry import _RULES, missing, registered, rule, run_rules, slugs
from gradmedic.diagnosis.rules.rnn import rule_rnn
from gradmedic.errors import ConfigError
from gradmedic.trace.schema import Quantity


def test_slugs_come_from_the_registered_rules():
    declared = {s for r in registered() for s in r.slugs}
    assert set(SLUGS) == declared
    assert len(SLUGS) == len(set(SLUGS)) == 16  # + divergence, amp-skipped-steps, amp-no-overflow
    assert slugs() == SLUGS
    assert "stalled-learning" not in SLUGS  # never emitted, so not listed
    assert "unstable-loss-pairing" in SLUGS  # the static checks are registered too
    assert [r.name for r in registered("static")] == ["static_checks"]
    assert [r.name for r in registered("trace")] == [
        "rule_measurable",
        "rule_nonfinite",
        "rule_depth",
        "rule_saturation",
        "rule_dead_units",
        "rule_amp",
        "rule_rnn",
        "rule_divergence",
        "rule_spikes",
        "rule_attention_logits",
        "rule_output_logits",
    ]


def test_rules_without_their_quantities_are_skipped_with_the_reason():
    ran = run_rules(Context.build(spike_trace(SPIKE_LOSSES_JUMP, SPIKE_NORMS)))
    # a trace of global norms only: the spike is judged, the layers are not (nothing measurable)
    assert [f.slug for f in ran.findings] == ["nothing-measurable", "gradient-spikes"]
    assert [name for name, _ in ran.skipped] == [
        "rule_depth",
        "rule_saturation",
        "rule_dead_units",
        "rule_output_logits",
    ]  # rule_rnn: the trace has no recurrent module, so the rule does not apply at all
    assert dict(ran.skipped)["rule_depth"] == (
        "the trace has no 'signal_out' rows (backward signal at a module's output, ||dL/dy||)"
    )


def test_any_of_requirement():
    r = rule_rnn.rule
    assert missing(r, {"input_grad_t"}) is None
    assert missing(r, {"hidden_grad_t"}) is None
    assert missing(r, {"signal_out"}).startswith(
        "the trace has no 'hidden_grad_t' or 'input_grad_t' rows"
    )


def test_bad_registrations_raise():
    with pytest.raises(ConfigError, match="must declare the slug"):
        rule()
    with pytest.raises(ConfigError, match="unknown rule kind 'model'"):
        rule(slug="x", kind="model")
    with pytest.raises(ConfigError, match="must be Quantity members"):
        rule(slug="x", requires=("gain",))
    with pytest.raises(ConfigError, match="already registered"):

        @rule(slug="x")
        def rule_rnn(ctx):  # same name as the registered RNN rule
            return []


def test_a_rule_emitting_an_undeclared_slug_is_an_error(monkeypatch):
    @rule(slug="declared", requires=(Quantity.GRAD_NORM_TOTAL,), register=False)
    def rule_liar(ctx):
        return [Finding("other", "info", "t", "c")]

    monkeypatch.setitem(_RULES, "rule_liar", rule_liar.rule)
    ctx = Context.build(spike_trace(SPIKE_LOSSES_JUMP, SPIKE_NORMS))
    with pytest.raises(ConfigError, match="rule 'rule_liar' emitted the slug 'other'"):
        run_rules(ctx)


def test_a_recurrent_model_without_time_profiles_lists_the_rnn_rule_as_skipped():
    import torch
    from torch import nn

    from gradmedic import Monitor

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(3, 4, batch_first=True)
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    torch.manual_seed(0)
    model = Seq()
    with Monitor(model, every=1, rnn_time=False) as mon:
        model(torch.randn(2, 5, 3)).sum().backward()
        mon.step()
        trace = mon.trace()
    ran = run_rules(Context.build(trace))
    assert dict(ran.skipped)["rule_rnn"] == (
        "the trace has no 'hidden_grad_t' or 'input_grad_t' rows (||dL/dh_t|| at each time "
        "step (total, through time); ||dL/dx_t|| at each time step t of an RNN's input sequence)"
    )
