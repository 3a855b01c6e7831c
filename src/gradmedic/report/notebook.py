"""The notebook (HTML fragment) view of findings, a diagnosis or a report.

Diagnosis objects are plain data; their HTML lives here. :func:`html_of` returns the fragment
for a ``Diagnosis``, a ``Finding``, a list of findings or a :class:`Report`; :func:`show`
wraps it in an object that Jupyter displays as HTML (the last expression of a cell).
Fragments carry their own ``<style>``, scoped under the ``.gm`` class so nothing leaks into
the notebook, and every piece of text is escaped.

Example::

    >>> from gradmedic.diagnosis import Diagnosis, Finding
    >>> diag = Diagnosis([Finding("dead-relu", "warning", "Dead ReLUs", "bias too negative")])
    >>> html = html_of(diag)
    >>> html.startswith("<style>") and "Dead ReLUs" in html
    True
    >>> show(diag)  # in a notebook: the finding card          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradmedic.errors import ConfigError
from gradmedic.report.blocks import finding_dict, findings_view
from gradmedic.report.document import Report
from gradmedic.report.templating import render, scoped_style

__all__ = ["NotebookView", "findings_html", "html_of", "show"]


def _items(obj: Any) -> list[Any]:
    if hasattr(obj, "findings"):
        items = list(obj.findings)
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    else:
        items = [obj]
    for f in items:
        if not hasattr(f, "to_dict") and not isinstance(f, Mapping):
            raise ConfigError(
                f"cannot show {f!r} as a finding: expected a Finding (gradmedic.diagnosis), "
                "a Diagnosis or a list of findings"
            )
    return items


def findings_html(obj: Any) -> str:
    """Finding cards as an HTML fragment (scoped styles), worst first.

    ``obj``: a ``Finding``, a list of findings, or a ``Diagnosis`` (a diagnosis that carries
    its per-layer table shows it under the cards). No findings give a "No problems found"
    box. Raises ``ConfigError`` when an item is not a finding.

    >>> from gradmedic.diagnosis import Finding
    >>> "Exploding gradient" in findings_html(Finding("exploding-gradient", "error",
    ...                                                "Exploding gradient", "gain 3"))
    True
    """
    if hasattr(obj, "findings") and getattr(obj, "layers", None):
        rep = Report("gradmedic diagnosis")
        rep.add_findings(obj)
        rep.add_table(list(obj.layers), caption="Per-layer numbers")
        return rep._repr_html_()
    views = findings_view([finding_dict(f) for f in _items(obj)])
    return scoped_style() + render("findings.html.j2", findings=views)


def html_of(obj: Any) -> str:
    """The notebook's HTML fragment for ``obj``: a :class:`Report` as its page body, anything
    else as :func:`findings_html` (a ``Diagnosis``, a ``Finding``, a list of findings).

    Raises ``ConfigError`` for objects that are none of these.
    """
    if isinstance(obj, Report):
        return obj._repr_html_()
    return findings_html(obj)


@dataclass(frozen=True)
class NotebookView:
    """HTML that Jupyter displays as such (``_repr_html_``); ``str()`` gives the HTML too."""

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def show(obj: Any) -> NotebookView:
    """A displayable view of ``obj`` (see :func:`html_of`): make it the last expression of a
    notebook cell, or pass it to ``IPython.display.display``. Raises ``ConfigError`` like
    :func:`html_of`."""
    return NotebookView(html_of(obj))
