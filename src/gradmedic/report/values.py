r"""How measured values and severities look in a report: number formatting and colours.

The HTML page, the notebook view and the terminal view print numbers through
:func:`format_value` (4 significant digits, scientific when tiny or huge) and colour findings
by :data:`SEVERITY_COLOURS`, so the three views show the same text for the same number. JSON
keeps full precision instead (:mod:`gradmedic._json`).

Text that comes from the user's model or a shared trace (module names above all) is shown
through :func:`visible`: control characters (a terminal escape sequence, a bell, a
right-to-left override) print as ``\x1b``-style escapes instead of acting on the screen.
:func:`module_label` names the root module by the model's class.

Example::

    >>> format_value(1.23456e-7), cell_text(float("nan")), is_number(3)
    ('1.23e-07', '—', True)
    >>> visible("fc\x1b[2J"), module_label("", {"model_class": "MLP"})
    ('fc\\x1b[2J', 'MLP')
"""

from __future__ import annotations

import contextlib
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SEVERITY_COLOURS",
    "SEVERITY_ORDER",
    "cell_text",
    "format_value",
    "is_number",
    "module_label",
    "severity_colour",
    "visible",
]

#: Severity -> (text/border colour, background colour). Also used by the terminal view.
SEVERITY_COLOURS = {
    "error": ("#b3261e", "#fdecea"),
    "warning": ("#9a5b00", "#fff4e0"),
    "info": ("#1f5fa8", "#e8f1fb"),
    "ok": ("#1b7a3d", "#e7f5ec"),
}

#: Severity -> rank, worst highest (unknown severities rank as info).
SEVERITY_ORDER = {"info": 0, "warning": 1, "error": 2}


def severity_colour(severity: str | None) -> tuple[str, str]:
    """(text/border, background) colours of ``severity``; info's colours when unknown.

    >>> severity_colour("error")
    ('#b3261e', '#fdecea')
    """
    return SEVERITY_COLOURS.get(severity or "info", SEVERITY_COLOURS["info"])


def format_value(value: Any, *, max_items: int = 8) -> str:
    """Format a measured value for a human: 4 significant digits, scientific when tiny or huge.

    ``None`` prints as an em dash, NaN/inf as ``nan``/``inf``/``-inf``, booleans as yes/no;
    numpy and torch scalars print as the Python number they hold; sequences print their first
    ``max_items`` items; mappings print as ``k=v`` pairs. Never raises: anything else prints
    as ``str(value)``.

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


def cell_text(value: Any) -> str:
    """Table cell text: NaN marks a value that was not measured there, shown as a dash;
    everything else as :func:`format_value`.

    >>> cell_text(float("nan")), cell_text(0.5)
    ('—', '0.5')
    """
    if isinstance(value, float) and math.isnan(value):
        return "—"
    return format_value(value)


def is_number(value: Any) -> bool:
    """True for ints, floats and numeric numpy scalars (right-aligned in tables); False for
    booleans, strings and None.

    >>> is_number(2.5), is_number(True), is_number("2")
    (True, False, False)
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    kind = getattr(getattr(value, "dtype", None), "kind", "")
    return kind in ("i", "u", "f")


def visible(text: Any) -> str:
    r"""``text`` with every control or format character shown as an escape (``\x1b``,
    ``\x07``, ``\u202e``), so that it cannot move the cursor, clear a terminal, set its
    title or reorder what follows; printable text (any script) is kept. Never raises.

    >>> visible("a\\b"), visible("x\x1b]0;pwned\x07"), visible("dé\tjà")
    ('a\\b', 'x\\x1b]0;pwned\\x07', 'dé\\x09jà')
    """
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def module_label(name: Any, meta: Mapping[str, Any] | None = None) -> str:
    """How a module is named to a reader: its path in the model, shown :func:`visible`; the
    root module (path ``''``) by the model's class (``meta["model_class"]``, a trace's
    metadata), else as "the model".

    >>> module_label("layers.3"), module_label(""), module_label("", {"model_class": "Net"})
    ('layers.3', 'the model', 'Net')
    """
    s = "" if name is None else str(name)
    if s:
        return visible(s)
    cls = (meta or {}).get("model_class")
    return visible(cls) if cls else "the model"
