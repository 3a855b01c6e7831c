"""report.values: how numbers and severities look in every view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradmedic.report.values import (
    SEVERITY_COLOURS,
    cell_text,
    format_value,
    is_number,
    module_label,
    severity_colour,
    visible,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.123456, "0.1235"),
        (3.2e-9, "3.2e-09"),
        (123456.0, "1.23e+05"),
        (0.0, "0"),
        (12, "12"),
        (np.float32(0.5), "0.5"),
        (np.int64(7), "7"),
        (torch.tensor(0.25), "0.25"),
        (None, "—"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        (True, "yes"),
        ([1, 2.5e-7], "[1, 2.5e-07]"),
        (list(range(10)), "[0, 1, 2, 3, 4, 5, 6, 7, … (+2)]"),
        ({"a": 0.25, "b": "x"}, "a=0.25, b=x"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_cells_show_missing_values_as_a_dash():
    assert cell_text(float("nan")) == "—"
    assert cell_text(None) == "—"
    assert cell_text(float("inf")) == "inf"  # measured, just not finite
    assert cell_text(1234.5678) == "1235"


@pytest.mark.parametrize(
    ("value", "numeric"),
    [
        (1, True),
        (2.5, True),
        (np.float32(1), True),
        (np.uint8(3), True),
        (True, False),
        (np.bool_(True), False),
        ("3", False),
        (None, False),
    ],
)
def test_is_number(value, numeric):
    assert is_number(value) is numeric


def test_severity_colours():
    assert severity_colour("warning") == ("#9a5b00", "#fff4e0")
    assert severity_colour("bogus") == SEVERITY_COLOURS["info"]
    assert severity_colour(None) == SEVERITY_COLOURS["info"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("layers.3", "layers.3"),
        ("\x1b]0;pwned\x07\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J"),
        ("a\tb\nc\rd", "a\\x09b\\x0ac\\x0dd"),
        ("csi\x9b2J", "csi\\x9b2J"),  # the one-byte C1 control sequence introducer
        ("abc\u202edef", "abc\\u202edef"),  # right-to-left override
        ("réseau.couche_1 ∂L", "réseau.couche_1 ∂L"),
        (3, "3"),
    ],
)
def test_visible_shows_control_characters_as_escapes(text, shown):
    assert visible(text) == shown


@pytest.mark.parametrize(
    ("name", "meta", "label"),
    [
        ("", {"model_class": "TinyNet"}, "TinyNet"),
        ("", {}, "the model"),
        ("", None, "the model"),
        (None, {"model_class": "TinyNet"}, "TinyNet"),
        ("fc", {"model_class": "TinyNet"}, "fc"),
        ("\x07", {}, "\\x07"),
        ("", {"model_class": "Evil\x1b[2J"}, "Evil\\x1b[2J"),
    ],
)
def test_module_label_names_the_root_by_the_model_class(name, meta, label):
    assert module_label(name, meta) == label
