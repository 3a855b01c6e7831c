"""The generic report builder behind ``diagnose``, ``treat`` and the lab.

A :class:`Report` is an ordered list of blocks (findings, headings, text, figures, tables,
verdicts) that renders three ways from the same content:

* :meth:`Report.to_html` - one self-contained HTML file: figures are embedded as PNG data URIs,
  styles are inline, nothing is fetched from the network, and ``@media print`` rules keep
  cards and figures whole on paper. Every piece of text (module names included) goes through
  Jinja2's autoescaping, so a module named ``<script>alert(1)</script>`` shows as text and
  never runs.
* :meth:`Report.to_dict` - the same content as JSON-able data (figures by caption and size;
  their numbers are in the tables beside them). Non-finite floats become the strings
  ``"nan"``, ``"inf"`` and ``"-inf"`` so the JSON stays strict.
* In Jupyter the report shows itself (``_repr_html_``) as a fragment whose styles are scoped
  under the ``.gm`` class, so they do not leak into the notebook.

Findings always come first in the rendered page, whatever the order of the calls: a reader
sees severity, cause, evidence and prescriptions before any figure.

Example::

    >>> import matplotlib.pyplot as plt
    >>> rep = Report("Gradient health", "mlp depth 30, sigmoid")
    >>> rep.add_heading("Per-layer numbers")
    >>> rep.add_table([{"module": "layers.0", "gain": 0.25}], caption="Gain per layer")
    >>> fig, ax = plt.subplots()
    >>> _ = ax.plot([1, 2, 3])
    >>> rep.add_figure(fig, "A line")
    True
    >>> "data:image/png;base64," in rep.to_html()
    True
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from gradmedic.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_DPI",
    "SEVERITY_COLOURS",
    "Report",
    "findings_html",
    "format_value",
    "jsonable",
]

#: Resolution of embedded figures: sharp on screen and on paper, about 60-120 kB per figure.
FIGURE_DPI = 110

#: Severity -> (text/border colour, background colour). Also used by the terminal view.
SEVERITY_COLOURS = {
    "error": ("#b3261e", "#fdecea"),
    "warning": ("#9a5b00", "#fff4e0"),
    "info": ("#1f5fa8", "#e8f1fb"),
    "ok": ("#1b7a3d", "#e7f5ec"),
}

_SEVERITY_ORDER = {"info": 0, "warning": 1, "error": 2}


# --------------------------------------------------------------------------------------------
# value formatting and JSON
# --------------------------------------------------------------------------------------------


def format_value(value: Any, *, max_items: int = 8) -> str:
    """Format a measured value for a human: 4 significant digits, scientific when tiny or huge.

    ``None`` and NaN-free missing values print as an em dash; sequences print their first
    ``max_items`` items; mappings print as ``k=v`` pairs.

    >>> format_value(0.123456), format_value(3.2e-9), format_value(None), format_value(12)
    ('0.1235', '3.2e-09', '—', '12')
    """
    if value is None:
        return "—"
    if hasattr(value, "item") and not isinstance(value, (str, bytes, float, int)):
        with contextlib.suppress(ValueError, RuntimeError, TypeError):
            value = value.item()  # numpy / torch scalars
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == 0:
            return "0"
        if 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={format_value(v, max_items=max_items)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        items = [format_value(v, max_items=max_items) for v in value[:max_items]]
        more = f", … (+{len(value) - max_items})" if len(value) > max_items else ""
        return "[" + ", ".join(items) + more + "]"
    return str(value)


def jsonable(obj: Any) -> Any:
    """Convert ``obj`` to strict-JSON data: numpy/torch scalars to Python, NaN/inf to strings,
    tuples to lists, unknown objects to ``str``."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return jsonable(obj.to_dict())
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if hasattr(obj, "item"):
        try:
            return jsonable(obj.item())
        except (ValueError, RuntimeError, TypeError):
            pass
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


# --------------------------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------------------------


def _finding_dict(f: Any) -> dict[str, Any]:
    d = f.to_dict() if hasattr(f, "to_dict") else dict(f)
    return jsonable(d)


def _findings_view(findings: list[dict[str, Any]], *, max_layers: int = 12) -> list[dict[str, Any]]:
    """Template-ready findings, worst first (stable within a severity)."""
    order = sorted(
        range(len(findings)),
        key=lambda i: (-_SEVERITY_ORDER.get(findings[i].get("severity", "info"), 0), i),
    )
    out = []
    for i in order:
        f = findings[i]
        layers = list(f.get("layers") or [])
        out.append(
            {
                **f,
                "layers_shown": layers[:max_layers],
                "layers_more": max(0, len(layers) - max_layers),
                "evidence_items": [
                    (str(k), format_value(v)) for k, v in (f.get("evidence") or {}).items()
                ],
                "colour": SEVERITY_COLOURS.get(f.get("severity", "info"), SEVERITY_COLOURS["info"]),
            }
        )
    return out


def _table_from(data: Any) -> tuple[list[str], list[list[Any]]]:
    """Columns and raw rows from a DataFrame or a list of dicts."""
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
        rows = [[r.get(c, r.get(c)) for c in columns] for r in dict_rows]
        # keys may be non-str: look them up by their string form
        rows = [[_get_str_key(r, c) for c in columns] for r in dict_rows]
        return columns, rows
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


def _cell_text(v: Any) -> str:
    """Table cell text: NaN marks a value that was not measured there, shown as a dash."""
    if isinstance(v, float) and math.isnan(v):
        return "—"
    return format_value(v)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    return hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "iuf"


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "section"


@dataclass
class _Block:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# the template (inline: the report must not depend on package data being installed)
# --------------------------------------------------------------------------------------------

_CSS = """
.gm{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d1d1f;
line-height:1.45;font-size:15px;max-width:1100px;margin:0 auto;padding:0 18px 40px}
.gm h1{font-size:1.7em;margin:.6em 0 .1em}.gm h2{font-size:1.3em;margin:1.6em 0 .5em;
border-bottom:1px solid #ddd;padding-bottom:.2em}.gm h3{font-size:1.1em;margin:1.2em 0 .4em}
.gm .subtitle{color:#555;margin:0 0 .8em}.gm .meta{font-size:.85em;color:#555}
.gm .meta td{padding:1px 10px 1px 0;border:none}
.gm .summary{display:inline-block;padding:4px 12px;border-radius:14px;font-weight:600;margin:.4em 0}
.gm .toc{background:#f6f7f9;border:1px solid #e2e4e8;border-radius:6px;padding:8px 16px;
margin:1em 0;font-size:.92em}.gm .toc ol{margin:.2em 0;padding-left:1.3em}
.gm .toc a{color:#1f5fa8;text-decoration:none}
.gm .finding{border-left:6px solid;border-radius:6px;padding:10px 14px;margin:12px 0;
page-break-inside:avoid;break-inside:avoid}
.gm .finding h3{margin:0 0 .3em}.gm .badge{display:inline-block;font-size:.75em;font-weight:700;
text-transform:uppercase;letter-spacing:.04em;padding:2px 8px;border-radius:10px;color:#fff;
margin-right:8px;vertical-align:middle}
.gm .slug{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8em;color:#555}
.gm .cause{margin:.3em 0}.gm .layers{font-size:.88em}.gm code,.gm .mono{
font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;background:rgba(0,0,0,.05);
padding:0 4px;border-radius:3px}
.gm dl.evidence{display:grid;grid-template-columns:max-content auto;gap:2px 14px;
margin:.4em 0;font-size:.9em}.gm dl.evidence dt{color:#444}.gm dl.evidence dd{margin:0;
font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-word}
.gm ul.rx{margin:.3em 0;padding-left:1.2em}.gm ul.rx li{margin:2px 0}
.gm .reason{color:#444;font-size:.9em}
.gm figure{margin:14px 0;page-break-inside:avoid;break-inside:avoid;text-align:center}
.gm figure img{max-width:100%;height:auto;border:1px solid #eee}
.gm figcaption{font-size:.88em;color:#444;margin-top:4px;text-align:left}
.gm table.data{border-collapse:collapse;font-size:.85em;margin:8px 0;width:auto}
.gm table.data th,.gm table.data td{border:1px solid #ddd;padding:3px 8px}
.gm table.data th{background:#f3f4f6;text-align:left}.gm table.data td.num{text-align:right;
font-family:ui-monospace,Menlo,Consolas,monospace}
.gm table.data caption{caption-side:top;text-align:left;font-size:.9em;color:#444;padding:2px 0}
.gm .tablewrap{overflow-x:auto}
.gm .verdict{border:1px solid #ddd;border-left:6px solid;border-radius:6px;padding:10px 14px;
margin:12px 0;break-inside:avoid;page-break-inside:avoid}
.gm .ok-box{border-left:6px solid #1b7a3d;background:#e7f5ec;padding:8px 14px;border-radius:6px}
.gm footer{margin-top:3em;font-size:.8em;color:#777}
@media print{.gm{max-width:none;font-size:11pt;padding:0}.gm .toc{display:none}
.gm a{color:inherit;text-decoration:none}.gm h2{page-break-after:avoid;break-after:avoid}
.gm .finding,.gm .verdict,.gm .badge,.gm .summary{-webkit-print-color-adjust:exact;
print-color-adjust:exact}.gm figure img{max-width:100%;border:none}}
"""

_BODY = """\
<div class="gm">
<header>
<h1>{{ title }}</h1>
{% if subtitle %}<p class="subtitle">{{ subtitle }}</p>{% endif %}
{% if meta %}<table class="meta">{% for k, v in meta %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>
{% endfor %}</table>{% endif %}
</header>
{% if toc|length > 1 %}<nav class="toc"><strong>Contents</strong><ol>
{% for anchor, text in toc %}<li><a href="#{{ anchor }}">{{ text }}</a></li>{% endfor %}
</ol></nav>{% endif %}
{% for b in blocks %}
{% if b.kind == "findings" %}
<section id="{{ b.anchor }}"><h2>{{ b.heading }}</h2>
{% if b.findings %}
<p class="summary" style="color:{{ b.colour[0] }};background:{{ b.colour[1] }}">
{{ b.findings|length }} finding{{ "s" if b.findings|length != 1 else "" }}; worst: {{ b.worst }}</p>
{% for f in b.findings %}{{ finding(f) }}{% endfor %}
{% else %}<p class="ok-box">No problems found: gradients flow within the healthy range.</p>
{% endif %}</section>
{% elif b.kind == "heading" %}
<h{{ b.level }} id="{{ b.anchor }}">{{ b.text }}</h{{ b.level }}>
{% elif b.kind == "text" %}
{% for para in b.paragraphs %}<p>{{ para }}</p>{% endfor %}
{% elif b.kind == "figure" %}
<figure><img src="data:image/png;base64,{{ b.png }}" width="{{ b.width }}"
alt="{{ b.alt }}"><figcaption>{{ b.caption }}</figcaption></figure>
{% elif b.kind == "table" %}
<div class="tablewrap"><table class="data">
{% if b.caption %}<caption>{{ b.caption }}</caption>{% endif %}
<thead><tr>{% for c in b.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in b.cells %}<tr>{% for cell, num in row %}
<td{% if num %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% if b.truncated %}<p class="reason">Showing {{ b.cells|length }} of {{ b.n_rows }} rows;
the JSON has them all.</p>{% endif %}</div>
{% elif b.kind == "verdict" %}
<div class="verdict" style="border-left-color:{{ b.colour[0] }}">
<h3><span class="badge" style="background:{{ b.colour[0] }}">{{ b.label }}</span>{{ b.name }}</h3>
<p><strong>Claim:</strong> {{ b.claim }}{% if b.source %} <span class="reason">({{ b.source }})</span>
{% endif %}</p>
<p><strong>Criterion:</strong> {{ b.criterion }}</p>
{% if b.measured_items %}<dl class="evidence">{% for k, v in b.measured_items %}<dt>{{ k }}</dt>
<dd>{{ v }}</dd>{% endfor %}</dl>{% endif %}
</div>
{% endif %}
{% endfor %}
<footer>Generated by gradmedic {{ version }}{% if generated %} on {{ generated }}{% endif %}.
Self-contained: no network access is needed to view or print this file.</footer>
</div>
"""

_FINDING_MACRO = """\
{% macro finding(f) %}
<article class="finding" style="border-left-color:{{ f.colour[0] }};background:{{ f.colour[1] }}">
<h3><span class="badge" style="background:{{ f.colour[0] }}">{{ f.severity }}</span>{{ f.title }}
<span class="slug">{{ f.slug }}</span></h3>
<p class="cause"><strong>Cause:</strong> {{ f.cause }}</p>
{% if f.layers_shown %}<p class="layers"><strong>Layers:</strong>
{% for l in f.layers_shown %}<code>{{ l }}</code>{% if not loop.last %}, {% endif %}{% endfor %}
{% if f.layers_more %} and {{ f.layers_more }} more{% endif %}
{% if f.step is not none %} (step {{ f.step }}){% endif %}</p>{% endif %}
{% if f.evidence_items %}<dl class="evidence">{% for k, v in f.evidence_items %}<dt>{{ k }}</dt>
<dd>{{ v }}</dd>{% endfor %}</dl>{% endif %}
{% if f.prescriptions %}<p><strong>Prescriptions</strong> (try them with
<code>gradmedic treat</code>):</p><ul class="rx">
{% for p in f.prescriptions %}<li><code>{{ p.spec }}</code>{% if p.reason %}
<span class="reason"> — {{ p.reason }}</span>{% endif %}</li>{% endfor %}</ul>{% endif %}
</article>
{% endmacro %}
"""

_PAGE = """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>body{margin:0;background:#fff}{{ css }}</style>
</head><body>
{{ body }}
</body></html>
"""

_ENV = jinja2.Environment(
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_BODY_T = _ENV.from_string(_FINDING_MACRO + _BODY)
_PAGE_T = _ENV.from_string(_PAGE)
_FINDINGS_ONLY_T = _ENV.from_string(
    _FINDING_MACRO
    + '<div class="gm">{% for f in findings %}{{ finding(f) }}{% endfor %}'
    + '{% if not findings %}<p class="ok-box">No problems found.</p>{% endif %}</div>'
)


def _scoped_style() -> str:
    return "<style>" + _CSS.replace("\n", "") + "</style>"


def findings_html(obj: Any) -> str:
    """An HTML fragment (scoped styles) for a ``Finding``, a ``Diagnosis`` or a list of findings.

    This is what ``Finding._repr_html_`` and ``Diagnosis._repr_html_`` return in Jupyter.
    """
    if hasattr(obj, "findings") and getattr(obj, "layers", None):
        rep = Report("gradmedic diagnosis")
        rep.add_findings(obj)
        rep.add_table(list(obj.layers), caption="Per-layer numbers")
        return rep._repr_html_()
    if hasattr(obj, "findings"):
        items = list(obj.findings)
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    else:
        items = [obj]
    views = _findings_view([_finding_dict(f) for f in items])
    return _scoped_style() + _FINDINGS_ONLY_T.render(findings=views)


# --------------------------------------------------------------------------------------------
# the builder
# --------------------------------------------------------------------------------------------


class Report:
    """A report under construction: add blocks, then render to HTML, JSON or the notebook.

    Args:
        title: the page title (escaped).
        subtitle: one line under the title, e.g. the model and data spec (escaped).

    Blocks appear in the order they are added, except findings, which always come first.
    ``max_table_rows`` (default 200) caps the rows shown in HTML; JSON keeps every row.
    """

    max_table_rows: int = 200

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = str(title)
        self.subtitle = str(subtitle)
        self.meta: dict[str, Any] = {}
        self._blocks: list[_Block] = []
        self._anchors: set[str] = set()
        self.generated = _dt.datetime.now().replace(microsecond=0).isoformat(sep=" ")

    # -- adding content ------------------------------------------------------------------------

    def add_meta(self, items: Mapping[str, Any]) -> None:
        """Key/value facts shown under the title (model, data, steps, seed, torch version...)."""
        for k, v in items.items():
            self.meta[str(k)] = v

    def add_findings(self, diagnosis: Any, *, heading: str = "Findings") -> None:
        """Add the findings of a ``Diagnosis`` (or a list of ``Finding``), worst first.

        They render at the top of the page, before every other block. An empty list renders
        as an explicit "no problems found" box.
        """
        if hasattr(diagnosis, "findings"):
            items = list(diagnosis.findings)
        elif isinstance(diagnosis, (list, tuple)):
            items = list(diagnosis)
        else:
            raise ConfigError(
                "add_findings takes a Diagnosis or a list of Finding objects, got "
                f"{type(diagnosis).__name__}"
            )
        for f in items:
            if not hasattr(f, "to_dict") and not isinstance(f, Mapping):
                raise ConfigError(
                    f"add_findings: {f!r} is not a Finding; build findings with "
                    "gradmedic.diagnosis.findings.Finding"
                )
        self._blocks.append(
            _Block(
                "findings",
                {
                    "heading": heading,
                    "anchor": self._anchor(heading),
                    "findings": [_finding_dict(f) for f in items],
                },
            )
        )

    def add_heading(self, text: str, level: int = 2) -> None:
        """A section heading; level-2 headings appear in the table of contents."""
        if level not in (2, 3, 4):
            raise ConfigError(
                f"heading level must be 2, 3 or 4 (the title is level 1), got {level}"
            )
        self._blocks.append(
            _Block("heading", {"text": str(text), "level": level, "anchor": self._anchor(text)})
        )

    def add_text(self, text: str) -> None:
        """A paragraph of plain text (escaped; blank lines separate paragraphs)."""
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", str(text)) if p.strip()]
        self._blocks.append(_Block("text", {"text": str(text), "paragraphs": paragraphs}))

    def add_figure(
        self, fig: Figure | None, caption: str, *, alt: str | None = None, dpi: int = FIGURE_DPI
    ) -> bool:
        """Embed a matplotlib figure as a PNG data URI and close it.

        ``None`` (what the figure helpers return when the trace lacks their data) adds nothing
        and returns False; otherwise returns True.
        """
        if fig is None:
            return False
        if not hasattr(fig, "savefig"):
            raise ConfigError(
                f"add_figure takes a matplotlib Figure, got {type(fig).__name__}; "
                "create one with matplotlib.pyplot.subplots()"
            )
        buf = io.BytesIO()
        try:
            # a constrained layout already fits every label; "tight" would draw the figure twice
            engine = fig.get_layout_engine() if hasattr(fig, "get_layout_engine") else None
            tight = None if type(engine).__name__ == "ConstrainedLayoutEngine" else "tight"
            fig.savefig(buf, format="png", dpi=dpi, bbox_inches=tight, facecolor="white")
        finally:
            _close(fig)
        raw = buf.getvalue()
        width, height = _png_size(raw)
        self._blocks.append(
            _Block(
                "figure",
                {
                    "caption": str(caption),
                    "alt": str(alt if alt is not None else caption),
                    "png": base64.b64encode(raw).decode("ascii"),
                    # show at CSS size = pixel size * 96 / dpi, i.e. the figure's size in inches
                    "width": max(1, round(width * 96 / dpi)),
                    "pixel_width": width,
                    "pixel_height": height,
                    "bytes": len(raw),
                },
            )
        )
        return True

    def add_table(self, data: pd.DataFrame | list[dict[str, Any]], caption: str = "") -> None:
        """A table of numbers (DataFrame or list of row dicts); numbers print to 4 significant
        digits in HTML and keep full precision in JSON."""
        columns, rows = _table_from(data)
        self._blocks.append(
            _Block("table", {"caption": str(caption), "columns": columns, "rows": rows})
        )

    def add_verdict(
        self,
        name: str,
        claim: str,
        source: str,
        passed: bool | None,
        criterion: str,
        measured: Mapping[str, Any],
    ) -> None:
        """An experiment's verdict on a claim: PASS (True), FAIL (False) or INCONCLUSIVE (None)."""
        if passed is not None and not isinstance(passed, bool):
            passed = bool(passed)
        self._blocks.append(
            _Block(
                "verdict",
                {
                    "name": str(name),
                    "claim": str(claim),
                    "source": str(source),
                    "passed": passed,
                    "criterion": str(criterion),
                    "measured": dict(measured),
                },
            )
        )

    # -- rendering -----------------------------------------------------------------------------

    @property
    def blocks(self) -> list[dict[str, Any]]:
        """The blocks as (kind, data) dicts in render order (findings first)."""
        return [{"kind": b.kind, **b.data} for b in self._ordered()]

    def _ordered(self) -> list[_Block]:
        first = [b for b in self._blocks if b.kind == "findings"]
        rest = [b for b in self._blocks if b.kind != "findings"]
        return first + rest

    def _anchor(self, text: str) -> str:
        base = _slug(str(text))
        anchor, n = base, 2
        while anchor in self._anchors:
            anchor, n = f"{base}-{n}", n + 1
        self._anchors.add(anchor)
        return anchor

    def _view(self) -> dict[str, Any]:
        from gradmedic._version import __version__

        blocks: list[dict[str, Any]] = []
        toc: list[tuple[str, str]] = []
        for b in self._ordered():
            d = dict(b.data)
            d["kind"] = b.kind
            if b.kind == "findings":
                d["findings"] = _findings_view(d["findings"])
                worst = d["findings"][0]["severity"] if d["findings"] else "ok"
                d["worst"] = worst
                d["colour"] = SEVERITY_COLOURS.get(worst, SEVERITY_COLOURS["info"])
                toc.append((d["anchor"], d["heading"]))
            elif b.kind == "heading" and d["level"] == 2:
                toc.append((d["anchor"], d["text"]))
            elif b.kind == "table":
                shown = d["rows"][: self.max_table_rows]
                d["cells"] = [[(_cell_text(v), _is_number(v)) for v in row] for row in shown]
                d["n_rows"] = len(d["rows"])
                d["truncated"] = len(d["rows"]) > len(shown)
            elif b.kind == "verdict":
                p = d["passed"]
                d["label"] = "pass" if p is True else "fail" if p is False else "inconclusive"
                d["colour"] = SEVERITY_COLOURS[
                    "ok" if p is True else "error" if p is False else "warning"
                ]
                d["measured_items"] = [(str(k), format_value(v)) for k, v in d["measured"].items()]
            blocks.append(d)
        return {
            "title": self.title,
            "subtitle": self.subtitle,
            "meta": [(k, format_value(v)) for k, v in self.meta.items()],
            "blocks": blocks,
            "toc": toc,
            "version": __version__,
            "generated": self.generated,
        }

    def _body(self) -> str:
        return _BODY_T.render(**self._view())

    def to_html(self) -> str:
        """The whole page: one self-contained HTML document (no external resources)."""
        return _PAGE_T.render(
            title=self.title, css=Markup(_CSS.replace("\n", "")), body=Markup(self._body())
        )

    def _repr_html_(self) -> str:
        return _scoped_style() + self._body()

    def to_dict(self) -> dict[str, Any]:
        """The same content as strict-JSON data.

        Keys: ``title``, ``subtitle``, ``meta``, ``generated``, ``gradmedic_version``, ``worst``
        (highest severity among findings, or None), ``blocks`` (render order; figures carry
        ``caption`` and pixel size, not the image).
        """
        from gradmedic._version import __version__

        blocks = []
        worst: str | None = None
        for b in self._ordered():
            d: dict[str, Any] = {"kind": b.kind}
            if b.kind == "figure":
                d.update(
                    caption=b.data["caption"],
                    width=b.data["pixel_width"],
                    height=b.data["pixel_height"],
                )
            elif b.kind == "table":
                d.update(
                    caption=b.data["caption"],
                    columns=b.data["columns"],
                    rows=[dict(zip(b.data["columns"], r, strict=True)) for r in b.data["rows"]],
                )
            elif b.kind == "text":
                d["text"] = b.data["text"]
            elif b.kind == "heading":
                d.update(text=b.data["text"], level=b.data["level"])
            elif b.kind == "findings":
                d.update(heading=b.data["heading"], findings=b.data["findings"])
                for f in b.data["findings"]:
                    sev = f.get("severity", "info")
                    if worst is None or _SEVERITY_ORDER.get(sev, 0) > _SEVERITY_ORDER[worst]:
                        worst = sev
            else:
                d.update({k: v for k, v in b.data.items()})
            blocks.append(d)
        return jsonable(
            {
                "title": self.title,
                "subtitle": self.subtitle,
                "meta": self.meta,
                "generated": self.generated,
                "gradmedic_version": __version__,
                "worst": worst,
                "blocks": blocks,
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a strict JSON string."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def write(self, path: str | Path) -> Path:
        """Write the report and return its path: JSON when the name ends in ``.json``, else HTML.

        Parent folders are created.
        """
        p = Path(path)
        if p.is_dir():
            raise ConfigError(
                f"{p} is a folder; give the report a file name, e.g. {p / 'report.html'}"
            )
        text = self.to_json() if p.suffix.lower() == ".json" else self.to_html()
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot write the report to {p}: {exc.strerror or exc}; choose a writable path"
            ) from exc
        return p

    def __len__(self) -> int:
        return len(self._blocks)

    def __repr__(self) -> str:
        kinds = ", ".join(b.kind for b in self._ordered())
        return f"Report({self.title!r}, blocks=[{kinds}])"


def _close(fig: Any) -> None:
    """Release a figure. Only pyplot keeps figures alive, so pyplot is used only when the caller
    already imported it (importing it here could switch a notebook's backend)."""
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)


def _png_size(raw: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or len(raw) < 24:
        return (0, 0)
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
