"""report.templating: the templates and stylesheet are package data, read with
importlib.resources, and every template autoescapes."""

from __future__ import annotations

from importlib import resources

import jinja2
import pytest
from markupsafe import Markup

from gradmedic.report import templating

TEMPLATES = {"body.html.j2", "finding.html.j2", "findings.html.j2", "page.html.j2", "report.css"}


def test_the_templates_ship_in_the_package():
    folder = resources.files("gradmedic.report").joinpath("templates")
    assert {p.name for p in folder.iterdir() if p.is_file()} == TEMPLATES


def test_css_is_one_line_and_scoped():
    css = templating.css()
    assert "\n" not in css
    rules = [r for r in css.replace("@media print{", "").split("}") if r.strip()]
    assert all(r.startswith(".gm") for r in rules), [r for r in rules if not r.startswith(".gm")]
    assert templating.scoped_style() == "<style>" + css + "</style>"


def test_page_escapes_text_and_keeps_markup():
    html = templating.render(
        "page.html.j2", title="<b>t</b>", css=Markup(".gm{}"), body=Markup("<p>ok</p>")
    )
    assert "<title>&lt;b&gt;t&lt;/b&gt;</title>" in html
    assert "<style>body{margin:0;background:#fff}.gm{}</style>" in html
    assert "<p>ok</p>" in html


def test_missing_template_and_missing_names_raise():
    with pytest.raises(jinja2.TemplateNotFound, match=r"nope\.html\.j2"):
        templating.render("nope.html.j2")
    with pytest.raises(jinja2.UndefinedError, match="title"):
        templating.render("page.html.j2", css="", body="")


def test_findings_fragment_without_findings():
    assert templating.render("findings.html.j2", findings=[]) == (
        '<div class="gm"><p class="ok-box">No problems found.</p></div>'
    )
