"""Findings are plain data: severities, prescriptions' spec form, the dict/JSON form."""

from __future__ import annotations

import json

import pytest

from gradmedic.diagnosis import SEVERITIES, Diagnosis, Finding, Prescription, headline
from gradmedic.diagnosis.finding import severity_rank
from gradmedic.errors import ConfigError


def _f(slug: str, severity: str) -> Finding:
    return Finding(slug, severity, f"{slug} title", "a cause", layers=["0"])


def test_severity_rank_orders_and_rejects_unknown():
    assert [severity_rank(s) for s in SEVERITIES] == [0, 1, 2]
    with pytest.raises(ConfigError, match="unknown severity 'fatal'; use one of: info, warning"):
        severity_rank("fatal")
    with pytest.raises(ConfigError):
        Finding("x", "fatal", "t", "c")


def test_prescription_spec_form():
    assert str(Prescription("add-residual")) == "add-residual"
    p = Prescription("reinit", {"scheme": "kaiming"}, "critical scale")
    assert str(p) == "reinit(scheme=kaiming)"
    assert p.to_dict() == {
        "remedy": "reinit",
        "params": {"scheme": "kaiming"},
        "spec": "reinit(scheme=kaiming)",
        "reason": "critical scale",
        "predicted": {},
        "manual": False,
    }
    combo = Prescription("replace-rnn", {"to": "lstm"}, plus=(Prescription("forget-bias"),))
    assert str(combo) == combo.to_dict()["spec"] == "replace-rnn(to=lstm)+forget-bias"
    fix = Prescription("loss-epsilon", {"eps": 1e-8}, manual=True)
    assert fix.to_dict()["manual"] is True and str(fix) == "loss-epsilon(eps=1e-08)"


def test_diagnosis_worst_at_least_and_headline():
    d = Diagnosis([_f("poor-init", "warning"), _f("vanishing-gradient", "error"), _f("x", "info")])
    assert d.worst == "error"
    assert [f.slug for f in d.at_least("warning")] == ["poor-init", "vanishing-gradient"]
    assert headline(d) == "error: vanishing-gradient (vanishing-gradient title); 2 more findings"
    assert Diagnosis([]).worst is None


def test_to_dict_lists_findings_and_skipped_rules():
    d = Diagnosis(
        [_f("dead-relu", "info")],
        layers=[{"module": "0", "gain": 0.5}],
        meta={"source": "trace"},
        skipped=[("rule_rnn", "no time profile")],
    )
    payload = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert set(payload) == {"outcome", "findings", "layers", "meta", "skipped"}
    assert payload["outcome"] == "findings"
    assert payload["findings"][0]["slug"] == "dead-relu"
    assert payload["findings"][0]["step"] is None
    assert payload["skipped"] == [{"rule": "rule_rnn", "reason": "no time profile"}]
    assert Diagnosis([]).to_dict()["skipped"] == []


def test_findings_carry_no_rendering():
    """HTML/notebook views belong to gradmedic.report, not to the data."""
    assert not hasattr(Finding, "_repr_html_")
    assert not hasattr(Diagnosis, "_repr_html_")


def test_outcome_and_exit_status_tell_nothing_measurable_from_healthy():
    nothing = Finding(
        "nothing-measurable", "warning", "nothing measurable: x", "nothing measurable: x"
    )
    assert (Diagnosis([]).outcome, Diagnosis([]).exit_status("warning")) == ("healthy", 0)
    d = Diagnosis([nothing])
    assert (d.outcome, d.unmeasurable) == ("nothing-measurable", "nothing measurable: x")
    # 3 whatever --fail-on says: no evidence is not a finding, and not health either
    assert [d.exit_status(s) for s in (None, "info", "warning", "error")] == [3, 3, 3, 3]
    both = Diagnosis([nothing, _f("gradient-spikes", "warning")])
    assert [both.exit_status(s) for s in (None, "warning", "error")] == [3, 1, 3]
    assert Diagnosis([_f("dead-relu", "error")]).exit_status("error") == 1
    assert Diagnosis([_f("dead-relu", "info")]).exit_status("warning") == 0
