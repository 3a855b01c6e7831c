"""report.blocks: tables from frames and dicts, anchors, finding cards, PNGs, and the HTML and
JSON views of each block kind."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from gradmedic.errors import ConfigError
from gradmedic.report.blocks import (
    Block,
    figure_png,
    finding_dict,
    findings_view,
    html_view,
    json_view,
    slug,
    table_from,
)
from report_util import finding


def test_table_from_a_frame_keeps_a_named_index():
    df = pd.DataFrame({"gain": [0.5, 2.0]}, index=pd.Index(["a", "b"], name="module"))
    assert table_from(df) == (["module", "gain"], [["a", 0.5], ["b", 2.0]])
    plain = pd.DataFrame({"x": [1]})
    assert table_from(plain) == (["x"], [[1]])


def test_table_from_dicts_unions_columns_and_finds_non_str_keys():
    columns, rows = table_from([{"a": 1, 2: "two"}, {"b": 3.5}])
    assert columns == ["a", "2", "b"]
    assert rows == [[1, "two", None], [None, None, 3.5]]


def test_table_from_refuses_other_data():
    with pytest.raises(ConfigError, match="got a list with non-dict items"):
        table_from([{"a": 1}, 2])
    with pytest.raises(ConfigError, match=r"a list of dicts \(one per row\), got str"):
        table_from("a,b")


@pytest.mark.parametrize(
    ("text", "anchor"),
    [
        ("Per-layer numbers", "per-layer-numbers"),
        ("  Raw  numbers! ", "raw-numbers"),
        ("∂", "section"),
    ],
)
def test_slug(text, anchor):
    assert slug(text) == anchor


def test_findings_view_sorts_worst_first_and_cuts_layers():
    cards = findings_view(
        [
            finding_dict(finding("info", title="i")),
            finding_dict(finding("error", title="e1", layers=[str(i) for i in range(20)])),
            finding_dict(finding("warning", title="w")),
            finding_dict(finding("error", title="e2")),
        ],
        max_layers=5,
    )
    assert [c["title"] for c in cards] == ["e1", "e2", "w", "i"]  # stable within a severity
    assert cards[0]["layers_shown"] == ["0", "1", "2", "3", "4"]
    assert cards[0]["layers_more"] == 15
    assert cards[0]["evidence_items"] == [("first_last_ratio", "5.7e-10"), ("depth", "12")]
    assert cards[0]["colour"] == ("#b3261e", "#fdecea")


def test_finding_dict_is_strict_json_data():
    d = finding_dict(finding(evidence={"ratio": math.inf}))
    assert d["evidence"] == {"ratio": "inf"}
    assert d["prescriptions"][0]["spec"] == "swap-activation(to=relu)"


def test_figure_png_renders_and_closes():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1])
    raw, width, height = figure_png(fig, dpi=50)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert (width, height) == (int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big"))
    assert 150 < width < 200 and 100 < height < 150  # cropped tight inside 4 x 3 inches
    assert not plt.fignum_exists(fig.number)
    # a constrained layout already fits its labels: saved whole, 2 x 1 inches at 50 dpi
    fig, ax = plt.subplots(figsize=(2, 1), layout="constrained")
    assert figure_png(fig, dpi=50)[1:] == (100, 50)


def test_html_view_of_a_table_formats_and_cuts():
    block = Block(
        "table", {"caption": "c", "columns": ["a"], "rows": [[0.123456], [math.nan], [3]]}
    )
    view = html_view(block, max_table_rows=2)
    assert view["cells"] == [[("0.1235", True)], [("—", True)]]
    assert view["n_rows"] == 3 and view["truncated"] is True


@pytest.mark.parametrize(
    ("passed", "label", "colour"),
    [(True, "pass", "#1b7a3d"), (False, "fail", "#b3261e"), (None, "inconclusive", "#9a5b00")],
)
def test_html_view_of_a_verdict(passed, label, colour):
    data = {"name": "n", "claim": "c", "source": "s", "passed": passed, "criterion": "k"}
    view = html_view(Block("verdict", {**data, "measured": {"r": 0.5}}), max_table_rows=1)
    assert view["label"] == label and view["colour"][0] == colour
    assert view["measured_items"] == [("r", "0.5")]


def test_json_view_keeps_figures_small_and_tables_whole():
    fig = Block(
        "figure",
        {"caption": "c", "alt": "a", "png": "AAAA", "width": 1, "pixel_width": 300,
         "pixel_height": 200, "bytes": 3},
    )  # fmt: skip
    assert json_view(fig) == {"kind": "figure", "caption": "c", "width": 300, "height": 200}
    table = Block("table", {"caption": "", "columns": ["a", "b"], "rows": [[1, 2], [3, 4]]})
    assert json_view(table)["rows"] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    heading = Block("heading", {"text": "H", "level": 2, "anchor": "h"})
    assert json_view(heading) == {"kind": "heading", "text": "H", "level": 2}
