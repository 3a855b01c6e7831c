"""The blocks a report is made of, and how each one looks in HTML and in JSON.

A :class:`Block` is a kind (``findings``, ``heading``, ``text``, ``figure``, ``table``,
``verdict``) and its data. :func:`html_view` turns one into what the ``body.html.j2``
template needs (formatted numbers, colours, cut tables); :func:`json_view` into strict-JSON
data (full precision, every table row, figures by caption and pixel size only). The helpers
that build block data live here too: :func:`table_from` (a DataFrame or rows of dicts),
:func:`findings_view` (finding cards, worst first) and :func:`figure_png` (a figure as PNG).

Example::

    >>> columns, rows = table_from([{"a": 1}, {"b": 2.5}])
    >>> columns, rows
    (['a', 'b'], [[1, None], [None, 2.5]])
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gradmedic._json import to_jsonable
from gradmedic.errors import ConfigError
from gradmedic.report.values import (
    SEVERITY_COLOURS,
    SEVERITY_ORDER,
    cell_text,
    format_value,
    is_number,
    module_label,
    severity_colour,
)

__all__ = [
    "Block",
    "figure_png",
    "finding_dict",
    "findings_view",
    "html_view",
    "json_view",
    "slug",
    "table_from",
]


@dataclass
class Block:
    """One piece of a report: ``kind`` and the data its views are made from."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


def slug(text: str) -> str:
    """An HTML anchor for ``text``: lower case, runs of other characters as one ``-``.

    >>> slug("Per-layer numbers!"), slug("???")
    ('per-layer-numbers', 'section')
    """
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "section"


def finding_dict(f: Any) -> dict[str, Any]:
    """A finding (anything with ``to_dict()``, or a mapping) as strict-JSON data."""
    d = f.to_dict() if hasattr(f, "to_dict") else dict(f)
    return to_jsonable(d)


def findings_view(
    findings: list[dict[str, Any]], *, max_layers: int = 12, root_name: str = "the model"
) -> list[dict[str, Any]]:
    """Template-ready finding cards, worst first (stable within a severity): at most
    ``max_layers`` layer names (``layers_more`` counts the rest; the root module ``''`` shown
    as ``root_name``, control characters as escapes), formatted evidence, colours."""
    order = sorted(
        range(len(findings)),
        key=lambda i: (-SEVERITY_ORDER.get(findings[i].get("severity", "info"), 0), i),
    )
    out = []
    for i in order:
        f = findings[i]
        layers = list(f.get("layers") or [])
        out.append(
            {
                **f,
                "layers_shown": [
                    module_label(n, {"model_class": root_name}) for n in layers[:max_layers]
                ],
                "layers_more": max(0, len(layers) - max_layers),
                "evidence_items": [
                    (str(k), format_value(v)) for k, v in (f.get("evidence") or {}).items()
                ],
                "colour": severity_colour(f.get("severity", "info")),
            }
        )
    return out


def table_from(data: Any) -> tuple[list[str], list[list[Any]]]:
    """Column names and raw rows from a DataFrame (a named index becomes columns) or a list
    of row dicts (columns in order of first appearance; a missing key gives None).

    Raises ``ConfigError`` for anything else, or for a list holding non-dict items.
    """
    if hasattr(data, "columns") and hasattr(data, "itertuples"):
        df = data
        if df.index.name is not None or (
            hasattr(df.index, "names") and any(n is not None for n in df.index.names)
        ):
            df = df.reset_index()
        columns = [str(c) for c in df.columns]
        rows = [list(r) for r in df.itertuples(index=False, name=None)]
        return columns, rows
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Mapping)):
        dict_rows = list(data)
        if not all(isinstance(r, Mapping) for r in dict_rows):
            raise ConfigError(
                "add_table takes a pandas DataFrame or a list of dicts (one per row); "
                "got a list with non-dict items"
            )
        columns: list[str] = []
        for r in dict_rows:
            for k in r:
                if str(k) not in columns:
                    columns.append(str(k))
        # keys may be non-str: look them up by their string form
        return columns, [[_get_str_key(r, c) for c in columns] for r in dict_rows]
    raise ConfigError(
        f"add_table takes a pandas DataFrame or a list of dicts (one per row), got {type(data).__name__}"
    )


def _get_str_key(row: Mapping[Any, Any], key: str) -> Any:
    if key in row:
        return row[key]
    for k, v in row.items():
        if str(k) == key:
            return v
    return None


def figure_png(fig: Any, dpi: int) -> tuple[bytes, int, int]:
    """Render a matplotlib figure to PNG bytes and close it; return (bytes, width, height).

    A figure with a constrained layout is saved as laid out (it already fits every label);
    others are cropped tight. Only pyplot keeps figures alive, so pyplot closes the figure
    only when the caller already imported it (importing it here could switch a notebook's
    backend).
    """
    buf = io.BytesIO()
    try:
        engine = fig.get_layout_engine() if hasattr(fig, "get_layout_engine") else None
        tight = None if type(engine).__name__ == "ConstrainedLayoutEngine" else "tight"
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches=tight, facecolor="white")
    finally:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            plt.close(fig)
    raw = buf.getvalue()
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or len(raw) < 24:
        return raw, 0, 0
    return raw, int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def html_view(block: Block, *, max_table_rows: int) -> dict[str, Any]:
    """What ``body.html.j2`` renders for ``block``: its data plus formatted cells, colours and
    labels; tables cut to ``max_table_rows`` rows (``truncated`` and ``n_rows`` say so)."""
    d = dict(block.data)
    d["kind"] = block.kind
    if block.kind == "findings":
        d["findings"] = findings_view(d["findings"], root_name=d.get("root_name", "the model"))
        worst = d["findings"][0]["severity"] if d["findings"] else "ok"
        d["worst"] = worst
        d["colour"] = severity_colour(worst)
    elif block.kind == "table":
        shown = d["rows"][:max_table_rows]
        d["cells"] = [[(cell_text(v), is_number(v)) for v in row] for row in shown]
        d["n_rows"] = len(d["rows"])
        d["truncated"] = len(d["rows"]) > len(shown)
    elif block.kind == "verdict":
        p = d["passed"]
        d["label"] = "pass" if p is True else "fail" if p is False else "inconclusive"
        d["colour"] = SEVERITY_COLOURS["ok" if p is True else "error" if p is False else "warning"]
        d["measured_items"] = [(str(k), format_value(v)) for k, v in d["measured"].items()]
    return d


def json_view(block: Block) -> dict[str, Any]:
    """``block`` as JSON data (not yet encoded): figures by caption and pixel size, tables as
    row dicts with every row, findings as given."""
    d: dict[str, Any] = {"kind": block.kind}
    data = block.data
    if block.kind == "figure":
        d.update(caption=data["caption"], width=data["pixel_width"], height=data["pixel_height"])
    elif block.kind == "table":
        d.update(
            caption=data["caption"],
            columns=data["columns"],
            rows=[dict(zip(data["columns"], r, strict=True)) for r in data["rows"]],
        )
    elif block.kind == "text":
        d["text"] = data["text"]
    elif block.kind == "heading":
        d.update(text=data["text"], level=data["level"])
    elif block.kind == "findings":
        d.update(heading=data["heading"], findings=data["findings"])
    else:
        d.update(data)
    return d
