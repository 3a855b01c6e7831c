"""report.notebook: the HTML of findings, a diagnosis or a report for Jupyter (diagnosis objects
are plain data and have no HTML of their own)."""

from __future__ import annotations

import pytest

from gradmedic.diagnosis import Diagnosis
from gradmedic.errors import ConfigError
from gradmedic.report import Report, findings_html, html_of, show
from report_util import EVIL, EVIL_ESCAPED, finding


def test_html_of_a_finding_is_a_scoped_escaped_card():
    html = html_of(finding(layers=[EVIL]))
    assert html.startswith("<style>.gm{")
    assert html.count('<article class="finding"') == 1
    assert EVIL_ESCAPED in html and "<script" not in html


def test_html_of_a_diagnosis_shows_its_layer_table():
    diag = Diagnosis([finding()], layers=[{"module": EVIL, "type": "Linear", "gain": 0.25}])
    html = html_of(diag)
    assert "Per-layer numbers" in html and '<td class="num">0.25</td>' in html
    assert EVIL_ESCAPED in html and "<script" not in html
    assert html.index('<article class="finding"') < html.index("Per-layer numbers")


def test_findings_are_worst_first_and_none_says_so():
    html = findings_html([finding("info", title="An info"), finding("error", title="An error")])
    assert html.index("An error") < html.index("An info")
    assert "No problems found." in html_of(Diagnosis([]))
    assert "<article" not in html_of(Diagnosis([]))


def test_html_of_a_report_is_its_fragment():
    rep = Report("R")
    rep.add_text("hello")
    assert html_of(rep) == rep._repr_html_()
    assert "<p>hello</p>" in html_of(rep)


def test_show_displays_in_jupyter():
    view = show(finding())
    assert view._repr_html_() == html_of(finding()) == str(view)


def test_non_findings_are_refused():
    with pytest.raises(ConfigError, match="cannot show 3 as a finding"):
        html_of([3])
