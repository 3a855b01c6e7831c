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
    severity_colour,
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
