"""The report document behind ``diagnose``, ``treat`` and the lab.

A :class:`Report` is an ordered list of blocks (findings, headings, text, figures, tables,
verdicts) that renders three ways from the same content:

* :meth:`Report.to_html` - one self-contained HTML file: figures are embedded as PNG data URIs,
  styles are inline, nothing is fetched from the network, and ``@media print`` rules keep
  cards and figures whole on paper. Every piece of text (module names included) goes through
  Jinja2's autoescaping, so a module named ``<script>alert(1)</script>`` shows as text and
  never runs. The templates are package data (:mod:`gradmedic.report.templating`).
* :meth:`Report.to_dict` - the same content as JSON-able data (figures by caption and size;
  their numbers are in the tables beside them), encoded by :mod:`gradmedic._json`:
  non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"``.
* In Jupyter the report shows itself (``_repr_html_``) as a fragment whose styles are scoped
  under the ``.gm`` class, so they do not leak into the notebook.

Findings always come first, whatever the order of the calls: a reader sees severity, cause,
evidence and prescriptions before any figure.

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
import datetime as _dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from gradmedic._json import dumps, to_jsonable
from gradmedic._version import __version__
from gradmedic.errors import ConfigError
from gradmedic.report.blocks import (
    Block,
    figure_png,
    finding_dict,
    html_view,
    json_view,
    slug,
    table_from,
)
from gradmedic.report.templating import css, render, scoped_style
from gradmedic.report.values import SEVERITY_ORDER, format_value

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["FIGURE_DPI", "Report"]

#: Resolution of embedded figures: sharp on screen and on paper, about 60-120 kB per figure.
FIGURE_DPI = 110


class Report:
    """A report under construction: add blocks, then render to HTML, JSON or the notebook.

    Args:
        title: the page title (escaped).
        subtitle: one line under the title, e.g. the model and data spec (escaped).

    Blocks appear in the order they are added, except findings, which always come first.
    ``max_table_rows`` (default 200) caps the rows shown in HTML; JSON keeps every row.
    The ``add_*`` methods raise ``ConfigError`` for input they cannot show.
    """

    max_table_rows: int = 200

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = str(title)
        self.subtitle = str(subtitle)
        self.meta: dict[str, Any] = {}
        self._blocks: list[Block] = []
        self._anchors: set[str] = set()
        self.generated = _dt.datetime.now().replace(microsecond=0).isoformat(sep=" ")

    # -- adding content ------------------------------------------------------------------------

    def add_meta(self, items: Mapping[str, Any]) -> None:
        """Key/value facts shown under the title (model, data, steps, seed, torch version...)."""
        for k, v in items.items():
            self.meta[str(k)] = v

    def add_findings(
        self, diagnosis: Any, *, heading: str = "Findings", root_name: str = "the model"
    ) -> None:
        """Add the findings of a ``Diagnosis`` (or a list of ``Finding``), worst first.

        They render at the top of the page, before every other block. An empty list renders
        as an explicit "no problems found" box. A finding's layer ``''`` (the root module) is
        shown as ``root_name`` (e.g. the model's class); the JSON keeps the names as they are.
        Raises ``ConfigError`` for anything else.
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
                    "gradmedic.diagnosis.Finding"
                )
        findings = [finding_dict(f) for f in items]
        data = {"heading": heading, "anchor": self._anchor(heading), "findings": findings}
        self._blocks.append(Block("findings", {**data, "root_name": str(root_name)}))

    def add_heading(self, text: str, level: int = 2) -> None:
        """A section heading; level-2 headings appear in the table of contents.

        Raises ``ConfigError`` unless ``level`` is 2, 3 or 4.
        """
        if level not in (2, 3, 4):
            raise ConfigError(
                f"heading level must be 2, 3 or 4 (the title is level 1), got {level}"
            )
        data = {"text": str(text), "level": level, "anchor": self._anchor(text)}
        self._blocks.append(Block("heading", data))

    def add_text(self, text: str) -> None:
        """A paragraph of plain text (escaped; blank lines separate paragraphs)."""
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", str(text)) if p.strip()]
        self._blocks.append(Block("text", {"text": str(text), "paragraphs": paragraphs}))

    def add_figure(
        self, fig: Figure | None, caption: str, *, alt: str | None = None, dpi: int = FIGURE_DPI
    ) -> bool:
        """Embed a matplotlib figure as a PNG data URI and close it.

        ``None`` (what the figure helpers return when the trace lacks their data) adds nothing
        and returns False; otherwise returns True. Raises ``ConfigError`` for a non-figure.
        """
        if fig is None:
            return False
        if not hasattr(fig, "savefig"):
            raise ConfigError(
                f"add_figure takes a matplotlib Figure, got {type(fig).__name__}; "
                "create one with matplotlib.pyplot.subplots()"
            )
        raw, width, height = figure_png(fig, dpi)
        data = {
            "caption": str(caption),
            "alt": str(alt if alt is not None else caption),
            "png": base64.b64encode(raw).decode("ascii"),
            # show at CSS size = pixel size * 96 / dpi, i.e. the figure's size in inches
            "width": max(1, round(width * 96 / dpi)),
            "pixel_width": width,
            "pixel_height": height,
            "bytes": len(raw),
        }
        self._blocks.append(Block("figure", data))
        return True

    def add_table(self, data: pd.DataFrame | list[dict[str, Any]], caption: str = "") -> None:
        """A table of numbers (DataFrame or list of row dicts); numbers print to 4 significant
        digits in HTML and keep full precision in JSON. Raises ``ConfigError`` for other data."""
        columns, rows = table_from(data)
        self._blocks.append(
            Block("table", {"caption": str(caption), "columns": columns, "rows": rows})
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
        data = {"name": str(name), "claim": str(claim), "source": str(source), "passed": passed}
        data.update(criterion=str(criterion), measured=dict(measured))
        self._blocks.append(Block("verdict", data))

    # -- rendering -----------------------------------------------------------------------------

    @property
    def blocks(self) -> list[dict[str, Any]]:
        """The blocks as (kind, data) dicts in render order (findings first)."""
        return [{"kind": b.kind, **b.data} for b in self._ordered()]

    def _ordered(self) -> list[Block]:
        first = [b for b in self._blocks if b.kind == "findings"]
        rest = [b for b in self._blocks if b.kind != "findings"]
        return first + rest

    def _anchor(self, text: str) -> str:
        base = slug(str(text))
        anchor, n = base, 2
        while anchor in self._anchors:
            anchor, n = f"{base}-{n}", n + 1
        self._anchors.add(anchor)
        return anchor

    def _body(self) -> str:
        blocks = [html_view(b, max_table_rows=self.max_table_rows) for b in self._ordered()]
        toc = [
            (b["anchor"], b["heading"] if b["kind"] == "findings" else b["text"])
            for b in blocks
            if b["kind"] == "findings" or (b["kind"] == "heading" and b["level"] == 2)
        ]
        return render(
            "body.html.j2",
            title=self.title,
            subtitle=self.subtitle,
            meta=[(k, format_value(v)) for k, v in self.meta.items()],
            blocks=blocks,
            toc=toc,
            version=__version__,
            generated=self.generated,
        )

    def to_html(self) -> str:
        """The whole page: one self-contained HTML document (no external resources)."""
        return render(
            "page.html.j2", title=self.title, css=Markup(css()), body=Markup(self._body())
        )

    def _repr_html_(self) -> str:
        return scoped_style() + self._body()

    def to_dict(self) -> dict[str, Any]:
        """The same content as strict-JSON data.

        Keys: ``title``, ``subtitle``, ``meta``, ``generated``, ``gradmedic_version``, ``worst``
        (highest severity among findings, or None), ``blocks`` (render order; figures carry
        ``caption`` and pixel size, not the image).
        """
        worst: str | None = None
        for b in self._blocks:
            for f in b.data["findings"] if b.kind == "findings" else []:
                sev = f.get("severity", "info")
                if worst is None or SEVERITY_ORDER.get(sev, 0) > SEVERITY_ORDER[worst]:
                    worst = sev
        return to_jsonable(
            {
                "title": self.title,
                "subtitle": self.subtitle,
                "meta": self.meta,
                "generated": self.generated,
                "gradmedic_version": __version__,
                "worst": worst,
                "blocks": [json_view(b) for b in self._ordered()],
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a strict JSON string."""
        return dumps(self.to_dict(), indent=indent)

    def write(self, path: str | Path) -> Path:
        """Write the report and return its path: JSON when the name ends in ``.json``, else HTML.

        Parent folders are created. Raises ``ConfigError`` when ``path`` is a folder or cannot
        be written.
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
