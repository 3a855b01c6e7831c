"""Drive Debian's headless Chromium from tests, with no Python dependency beyond the stdlib.

``open_report`` loads a copy of a report with a small probe script injected (test-only), lets
the page finish loading (``--virtual-time-budget``), and reads back from the dumped DOM what
the probe wrote: every image's natural width, every error the page raised, and whether any
script of the page called ``alert``. A screenshot is taken in a second run.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = (
    "headless Chromium is needed for the report's browser test; install Debian's package with "
    "`apt-get update && apt-get install -y chromium` (or run `make browser`)"
)

CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium", "/usr/lib/chromium/chromium")

#: Probe injected into a copy of the report: records image widths, errors and alert() calls.
PROBE = """<script id="gm-test-probe">
window.__gm = {errors: [], alerted: 0};
window.alert = function () { window.__gm.alerted += 1; };
window.addEventListener("error", function (e) {
  var t = e.target;
  window.__gm.errors.push(t && t.tagName ? ("load error: " + t.tagName + " " + (t.src || "")).slice(0, 120)
                                         : String(e.message));
}, true);
(function () {
  var orig = console.error;
  console.error = function () { window.__gm.errors.push("console.error: " + Array.from(arguments).join(" "));
                                return orig.apply(console, arguments); };
})();
window.addEventListener("load", function () {
  var imgs = Array.from(document.images).map(function (i) { return [i.naturalWidth, i.complete]; });
  var pre = document.createElement("pre");
  pre.id = "gm-test-result";
  pre.textContent = JSON.stringify({images: imgs, errors: window.__gm.errors,
      alerted: window.__gm.alerted, scripts: document.scripts.length});
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str:
    """The Chromium executable, or fail (env CI set) / skip with the install hint."""
    for c in CANDIDATES:
        path = shutil.which(c) or (c if os.path.isabs(c) and os.access(c, os.X_OK) else None)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail(INSTALL_HINT)
    pytest.skip(INSTALL_HINT)
    raise AssertionError("unreachable")  # pragma: no cover


def _flags(profile: str) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]


@dataclass
class PageResult:
    images: list[tuple[int, bool]]
    errors: list[str]
    alerted: int
    scripts: int
    dom: str
    stderr: str


def open_report(chromium: str, report: Path, *, timeout: float = 60) -> PageResult:
    """Load ``report`` (a copy with :data:`PROBE` injected) and return what the probe saw."""
    text = report.read_text(encoding="utf-8")
    probed = text.replace("<head>", "<head>" + PROBE, 1)
    if probed == text:
        raise AssertionError(f"{report} has no <head>; is it a gradmedic report?")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "probed.html"
        copy.write_text(probed, encoding="utf-8")
        cmd = [
            chromium,
            *_flags(str(Path(tmp) / "profile")),
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            copy.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    m = re.search(r'<pre id="gm-test-result">(.*?)</pre>', proc.stdout, re.S)
    if m is None:
        raise AssertionError(
            f"the probe wrote no result (chromium exit {proc.returncode}); stderr tail:\n"
            + proc.stderr[-2000:]
        )
    data = json.loads(html.unescape(m.group(1)))
    return PageResult(
        images=[tuple(i) for i in data["images"]],
        errors=list(data["errors"]),
        alerted=int(data["alerted"]),
        scripts=int(data["scripts"]),
        dom=proc.stdout,
        stderr=proc.stderr,
    )


def console_errors(stderr: str) -> list[str]:
    """Console messages of level error logged by the page (Chromium's ``CONSOLE`` lines)."""
    out = []
    for line in stderr.splitlines():
        if "CONSOLE" in line and (
            "Uncaught" in line or ":ERROR:" in line or "error" in line.lower()
        ):
            out.append(line)
    return out


def screenshot(
    chromium: str,
    page: Path,
    out: Path,
    *,
    size: tuple[int, int] = (1280, 2400),
    timeout: float = 60,
) -> Path:
    """Save a PNG screenshot of ``page`` at ``out`` and return its path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            chromium,
            *_flags(str(Path(tmp) / "profile")),
            "--virtual-time-budget=5000",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ]
        subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return out


def print_to_pdf(chromium: str, page: Path, out: Path, *, timeout: float = 60) -> Path:
    """Print ``page`` to PDF (what a reader gets from the browser's print dialog)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            chromium,
            *_flags(str(Path(tmp) / "profile")),
            "--virtual-time-budget=5000",
            "--no-pdf-header-footer",
            f"--print-to-pdf={out}",
            page.resolve().as_uri(),
        ]
        subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return out
