"""gradmedic._json: the one encoder. NaN/inf as "nan"/"inf"/"-inf", numpy, torch, paths, enums,
dataclasses and tuples; output always parses with a strict parser."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from gradmedic._json import dumps, loads, to_jsonable


def _strict(text: str):
    def refuse(name: str):
        raise AssertionError(f"non-standard constant {name} in {text!r}")

    return json.loads(text, parse_constant=refuse)


class Colour(enum.Enum):
    RED = "red"
    TWO = 2


@dataclass
class Point:
    x: float
    tag: tuple[str, ...]


class HasToDict:
    def to_dict(self):
        return {"gain": math.inf}


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (np.float32("nan"), "nan"),
        (np.float64("-inf"), "-inf"),
        (np.float32(0.5), 0.5),
        (np.int64(7), 7),
        (np.bool_(True), True),
        (1.5, 1.5),
        (0, 0),
        (None, None),
        (True, True),
        ("nan", "nan"),
        (Path("/tmp/x.json"), "/tmp/x.json"),
        (Colour.RED, "red"),
        (Colour.TWO, 2),
        ((1, (2.0, math.nan)), [1, [2.0, "nan"]]),
        ({3, 1, 2}, [1, 2, 3]),
        (np.array([[1.0, np.inf], [np.nan, -2.0]]), [[1.0, "inf"], ["nan", -2.0]]),
        (torch.tensor([1.0, float("nan")]), [1.0, "nan"]),
        (torch.tensor(2.5), 2.5),
        (Point(math.inf, ("a", "b")), {"x": "inf", "tag": ["a", "b"]}),
        (HasToDict(), {"gain": "inf"}),
        (b"bytes", "bytes"),
    ],
)
def test_to_jsonable(value, encoded):
    out = to_jsonable(value)
    assert out == encoded
    assert type(out) is type(encoded)  # np.float32(0.5) -> float, np.int64 -> int


def test_nested_values_and_keys():
    data = {
        "layers": [{"gain": np.float32(0.25), "ratio": np.float64(np.nan)}],
        1: {Colour.RED: (-math.inf,)},
        math.inf: "key",
        np.int64(4): Path("a") / "b",
    }
    assert to_jsonable(data) == {
        "layers": [{"gain": 0.25, "ratio": "nan"}],
        "1": {"red": ["-inf"]},
        "inf": "key",
        "4": "a/b",
    }


def test_dumps_is_strict_and_passes_keywords():
    text = dumps({"a": [math.nan, math.inf, -math.inf, 1e308 * 10]}, indent=None, sort_keys=True)
    assert text == '{"a": ["nan", "inf", "-inf", "inf"]}'
    assert _strict(text) == {"a": ["nan", "inf", "-inf", "inf"]}
    # allow_nan=True cannot bring the NaN token back
    assert "NaN" not in dumps(math.nan, allow_nan=True)
    assert dumps({"x": 1}, indent=2) == '{\n  "x": 1\n}'


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_loads_refuses_non_standard_constants(token):
    with pytest.raises(ValueError, match=f"non-standard JSON constant {token}"):
        loads(f'{{"x": {token}}}')
    assert loads('{"x": "nan"}') == {"x": "nan"}


def test_unknown_objects_become_their_string():
    class Thing:
        def __str__(self) -> str:
            return "thing!"

    assert to_jsonable([Thing()]) == ["thing!"]
