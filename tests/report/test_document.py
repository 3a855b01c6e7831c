"""report.document: the Report renders the same content as a self-contained, escaped HTML page,
strict JSON and a notebook fragment; findings come first."""

from __future__ import annotations

import base64
import json
import re

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from gradmedic.diagnosis import Diagnosis
from gradmedic.errors import ConfigError
from gradmedic.report import Report
from report_util import EVIL, EVIL_ESCAPED, finding


def _strict(text: str):
    def refuse(name: str):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_user_text_is_escaped_everywhere():
    rep = Report(EVIL, EVIL)
    rep.add_heading(EVIL)
    rep.add_text(EVIL)
    rep.add_table([{EVIL: EVIL}], caption=EVIL)
    rep.add_findings([finding(layers=[EVIL], title=EVIL, cause=EVIL, evidence={EVIL: EVIL})])
    rep.add_verdict(EVIL, EVIL, EVIL, None, EVIL, {EVIL: EVIL})
    rep.add_meta({EVIL: EVIL})
    html = rep.to_html()
    assert "<script" not in html.lower()
    # title tag, h1, subtitle, meta key and value, heading, text, table caption/header/cell,
    # finding title/cause/layer/evidence key/value, verdict name/claim/source/criterion/measured
    assert html.count(EVIL_ESCAPED) >= 18
    frag = rep._repr_html_()
    assert "<script" not in frag.lower()
    assert EVIL_ESCAPED in frag


def test_findings_come_first_and_worst_first():
    rep = Report("R")
    rep.add_heading("Numbers")
    rep.add_table([{"a": 1}])
    rep.add_findings(
        [
            finding("info", title="An info"),
            finding("error", title="An error"),
            finding("warning", title="A warning"),
        ]
    )
    html = rep.to_html()
    assert html.index('id="findings"') < html.index('id="numbers"')
    assert html.index("An error") < html.index("A warning") < html.index("An info")
    assert "3 findings; worst: error" in html
    d = rep.to_dict()
    assert [b["kind"] for b in d["blocks"]] == ["findings", "heading", "table"]
    assert d["worst"] == "error"
    # the contents lists findings first, then the level-2 headings
    toc = re.search(r'<nav class="toc">(.*?)</nav>', html, re.S).group(1)
    assert re.findall(r'href="#([^"]+)"', toc) == ["findings", "numbers"]


def test_repeated_headings_get_distinct_anchors():
    rep = Report("R")
    for _ in range(3):
        rep.add_heading("Figures")
    assert [b["anchor"] for b in rep.blocks] == ["figures", "figures-2", "figures-3"]


def test_finding_card_shows_cause_evidence_and_prescription():
    rep = Report("R")
    rep.add_findings(Diagnosis([finding(layers=[str(i) for i in range(15)])]))
    html = rep.to_html()
    assert "sigmoid saturates; each layer multiplies the signal by 0.25" in html
    assert "<dt>first_last_ratio</dt>\n<dd>5.7e-10</dd>" in html
    assert "<code>swap-activation(to=relu)</code>" in html
    assert "slope 1 on positives" in html
    assert "and 3 more" in html  # 12 of 15 layers shown
    assert "#b3261e" in html  # error colour


def test_no_findings_says_so():
    rep = Report("R")
    rep.add_findings(Diagnosis([]))
    assert "No problems found" in rep.to_html()
    assert rep.to_dict()["worst"] is None


def test_figure_is_embedded_as_png_and_closed():
    rep = Report("R")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3])
    num = fig.number
    assert rep.add_figure(fig, "A line") is True
    assert not plt.fignum_exists(num)
    b64 = re.search(r'src="data:image/png;base64,([^"]+)"', rep.to_html()).group(1)
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(raw[16:20], "big")
    assert width == rep.to_dict()["blocks"][0]["width"]
    assert 300 < width <= 4 * 110  # 4 inches at dpi 110, cropped tight
    assert rep.add_figure(None, "missing") is False
    assert len(rep) == 1


def test_bad_inputs_raise_clear_errors(tmp_path):
    rep = Report("R")
    with pytest.raises(ConfigError) as e:
        rep.add_figure("fig.png", "caption")
    assert str(e.value) == (
        "add_figure takes a matplotlib Figure, got str; "
        "create one with matplotlib.pyplot.subplots()"
    )
    with pytest.raises(ConfigError) as e:
        rep.add_table([1, 2])
    assert str(e.value) == (
        "add_table takes a pandas DataFrame or a list of dicts (one per row); "
        "got a list with non-dict items"
    )
    with pytest.raises(ConfigError) as e:
        rep.add_heading("x", level=1)
    assert str(e.value) == "heading level must be 2, 3 or 4 (the title is level 1), got 1"
    with pytest.raises(ConfigError) as e:
        rep.write(tmp_path)
    assert str(e.value) == (
        f"{tmp_path} is a folder; give the report a file name, e.g. {tmp_path / 'report.html'}"
    )
    with pytest.raises(ConfigError) as e:
        rep.add_findings("vanishing")
    assert str(e.value) == "add_findings takes a Diagnosis or a list of Finding objects, got str"
    with pytest.raises(ConfigError, match="3 is not a Finding"):
        rep.add_findings([3])


def test_table_formats_numbers_and_marks_missing_values():
    df = pd.DataFrame({"module": ["a", "b"], "gain": [0.123456, float("nan")], "n": [3, 4]})
    rep = Report("R")
    rep.add_table(df, caption="gains")
    html = rep.to_html()
    assert '<td class="num">0.1235</td>' in html
    assert '<td class="num">—</td>' in html
    rows = rep.to_dict()["blocks"][0]["rows"]
    assert rows == [
        {"module": "a", "gain": 0.123456, "n": 3},
        {"module": "b", "gain": "nan", "n": 4},
    ]


def test_long_tables_are_cut_in_html_but_complete_in_json():
    rep = Report("R")
    rep.max_table_rows = 5
    rep.add_table([{"i": i} for i in range(12)])
    assert "Showing 5 of 12 rows" in rep.to_html()
    assert len(rep.to_dict()["blocks"][0]["rows"]) == 12


@pytest.mark.parametrize(
    ("passed", "label"), [(True, "pass"), (False, "fail"), (None, "inconclusive")]
)
def test_verdicts(passed, label):
    rep = Report("Lab")
    rep.add_verdict(
        "gain-law", "0.9^20 = 0.12", "article 1.1", passed, "|log ratio| < 0.1", {"ratio": 0.1216}
    )
    html = rep.to_html()
    assert f">{label}</span>gain-law" in html
    assert "<dd>0.1216</dd>" in html
    assert rep.to_dict()["blocks"][0]["passed"] is passed


def test_page_is_self_contained_and_printable():
    rep = Report("R")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    rep.add_figure(fig, "f")
    html = rep.to_html()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    assert "@media print" in html
    assert '<meta charset="utf-8">' in html


def test_write_html_and_json(tmp_path):
    rep = Report("R", "sub")
    rep.add_table([{"x": float("inf"), "y": float("-inf"), "z": float("nan")}])
    rep.add_meta({"lr": float("nan")})
    html_path = rep.write(tmp_path / "deep" / "r.html")
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    data = _strict(rep.write(tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["subtitle"] == "sub"
    assert data["meta"] == {"lr": "nan"}
    assert data["blocks"][0]["rows"] == [{"x": "inf", "y": "-inf", "z": "nan"}]
    assert _strict(rep.to_json(indent=None)) == data
