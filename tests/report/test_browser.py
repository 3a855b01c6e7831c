"""The HTML report in a real browser (headless Chromium): figures load, no errors, no injected
script runs; a screenshot and a printed PDF are kept under artifacts/."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
from torch import nn

from browser_util import console_errors, find_chromium, open_report, print_to_pdf, screenshot
from gradmedic.diagnosis.finding import Diagnosis, Finding, Prescription
from gradmedic.report import write_diagnosis_report
from gradmedic.workflows.train import TrainConfig, train
from gradmedic.zoo import load_data

pytestmark = pytest.mark.browser

EVIL = "<script>alert(1)</script>"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="module")
def chromium():
    return find_chromium()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A diagnosis report of a real run whose first layer is named like a script tag."""
    data = load_data("digits")
    model = nn.Sequential(
        OrderedDict(
            [
                (EVIL, nn.Linear(64, 32)),
                ("act", nn.Sigmoid()),
                ("hidden", nn.Linear(32, 32)),
                ("act2", nn.Sigmoid()),
                ("out", nn.Linear(32, 10)),
            ]
        )
    )
    run = train(model, data, TrainConfig(steps=3, every=1, seed=0))
    diag = Diagnosis(
        [
            Finding(
                "vanishing-gradient",
                "error",
                f"Vanishing gradient at {EVIL}",
                f"the signal shrinks before reaching {EVIL}",
                layers=[EVIL],
                evidence={EVIL: 1e-9},
                prescriptions=[Prescription("swap-activation", {"to": "relu"}, EVIL)],
                step=0,
            )
        ]
    )
    path = tmp_path_factory.mktemp("browser") / "report.html"
    return write_diagnosis_report(path, diag, run.trace, title=f"browser test {EVIL}")


def test_report_loads_in_chromium_without_errors(chromium, report):
    page = open_report(chromium, report)
    # gradient flow, gain product, activations, heatmap, gradient norm over steps
    assert len(page.images) == 5
    assert all(w > 0 and done for w, done in page.images), page.images
    assert page.errors == []
    assert console_errors(page.stderr) == []
    # the user's <script> never ran and never became an element: only the probe is a script
    assert page.alerted == 0
    assert page.scripts == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.dom


def test_screenshot_and_print_are_kept_as_artifacts(chromium, report):
    shot = screenshot(chromium, report, ARTIFACTS / "report-screenshot.png")
    raw = shot.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(raw[16:20], "big") == 1280
    pdf = print_to_pdf(chromium, report, ARTIFACTS / "report-print.pdf")
    body = pdf.read_bytes()
    assert body[:5] == b"%PDF-"
    assert body.count(b"/Type /Page") - body.count(b"/Type /Pages") >= 2  # several pages
    print(f"\nscreenshot: {shot}\nprinted: {pdf}")


def test_the_probe_sees_broken_images_errors_and_alerts(chromium, tmp_path):
    """The checks above can fail: a page with a raw script, a broken image and a thrown error."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img src="data:image/png;base64,AAAA"><script>alert(1); throw new Error("boom")</script>'
        "</body></html>",
        encoding="utf-8",
    )
    page = open_report(chromium, bad)
    assert page.images == [(0, True)]
    assert page.alerted == 1
    assert any("boom" in e for e in page.errors), page.errors
    assert page.scripts == 2
