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
    }


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
    assert set(payload) == {"findings", "layers", "meta", "skipped"}
    assert payload["findings"][0]["slug"] == "dead-relu"
    assert payload["findings"][0]["step"] is None
    assert payload["skipped"] == [{"rule": "rule_rnn", "reason": "no time profile"}]
    assert Diagnosis([]).to_dict()["skipped"] == []


def test_findings_carry_no_rendering():
    """HTML/notebook views belong to gradmedic.report, not to the data."""
    assert not hasattr(Finding, "_repr_html_")
    assert not hasattr(Diagnosis, "_repr_html_")
