"""The report's Jinja2 templates and stylesheet, read from the package's ``templates/`` folder.

Files (package data, ``gradmedic/report/templates/``):

* ``page.html.j2`` - the whole HTML document around a body, styles inline;
* ``body.html.j2`` - a report's blocks (findings, headings, text, figures, tables, verdicts);
* ``finding.html.j2`` - the ``finding(f)`` macro: one finding card;
* ``findings.html.j2`` - finding cards alone (the notebook view of findings);
* ``report.css`` - the stylesheet, every rule scoped under the ``.gm`` class.

They are read with :mod:`importlib.resources`, so they load from a wheel, a zip or a source
checkout alike. Autoescaping is on for every template: text passed in is escaped, never run.
A template missing from the installation raises ``jinja2.TemplateNotFound`` naming it.

Example::

    >>> "</article>" in render("findings.html.j2", findings=[])
    False
    >>> css().startswith(".gm{")
    True
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import jinja2

__all__ = ["TEMPLATE_PACKAGE", "css", "environment", "render", "scoped_style"]

#: The package whose ``templates/`` folder holds the files.
TEMPLATE_PACKAGE = "gradmedic.report"


def _read(name: str) -> str:
    """The text of ``templates/name``; ``jinja2.TemplateNotFound`` when it is not installed."""
    path = resources.files(TEMPLATE_PACKAGE).joinpath("templates", name)
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise jinja2.TemplateNotFound(
            f"{name} (looked in {TEMPLATE_PACKAGE}/templates; is the package data installed?)"
        ) from exc


def _source(name: str) -> tuple[str, str, Any]:
    # templates never change while the package is imported: always up to date
    return _read(name), f"{TEMPLATE_PACKAGE}/templates/{name}", lambda: True


@functools.cache
def environment() -> jinja2.Environment:
    """The shared Jinja2 environment: autoescaping, strict undefined names, trimmed blocks."""
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_source),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **context: Any) -> str:
    """Render ``templates/name`` with ``context`` (escaped unless wrapped in ``Markup``).

    Raises ``jinja2.UndefinedError`` when the template uses a name ``context`` lacks.
    """
    return environment().get_template(name).render(**context)


@functools.cache
def css() -> str:
    """The stylesheet as one line (newlines removed), ready to inline in a ``<style>``."""
    return _read("report.css").replace("\n", "")


def scoped_style() -> str:
    """A ``<style>`` element with the stylesheet, for HTML fragments (notebook cells)."""
    return "<style>" + css() + "</style>"
