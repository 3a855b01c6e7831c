"""The one JSON encoder of gradmedic: every ``--json`` output, ``*.json`` file and report uses it.

Encoding rules (the same everywhere, so one parser reads every gradmedic JSON):

* Non-finite floats become strings: NaN -> ``"nan"``, +Inf -> ``"inf"``, -Inf -> ``"-inf"``.
  Never ``null`` and never the non-standard ``NaN``/``Infinity`` tokens, so the output parses
  with a strict parser (``json.loads(s, parse_constant=<raise>)``, JavaScript's ``JSON.parse``).
  ``null`` means "no value" only (Python ``None``).
* numpy scalars become Python numbers (``np.float32(0.5)`` -> ``0.5``), numpy arrays and torch
  tensors become (nested) lists; ``np.bool_`` becomes ``true``/``false``.
* Objects with a ``to_dict()`` method are encoded as what it returns; other dataclass instances
  as a dict of their fields.
* Tuples, lists, sets and frozensets become lists (sets sorted when their items allow it).
* Mapping keys become strings (``str(key)``; an enum key is encoded by its value).
* ``pathlib`` paths become strings, enums their value, dates/times ISO 8601 strings, bytes are
  decoded as UTF-8 (invalid bytes replaced); any other object becomes ``str(obj)``.

Example::

    >>> import math
    >>> dumps({"gain": math.inf, "ratio": (1.5, float("nan")), "none": None})
    '{"gain": "inf", "ratio": [1.5, "nan"], "none": null}'
    >>> loads('{"x": NaN}')
    Traceback (most recent call last):
    ...
    ValueError: non-standard JSON constant NaN; use the string "nan"
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["dumps", "loads", "to_jsonable"]


def _float(x: float) -> float | str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x)


def _key(k: Any) -> str:
    if isinstance(k, enum.Enum):
        k = k.value
    if isinstance(k, (float, np.floating)):
        enc = _float(float(k))
        return enc if isinstance(enc, str) else repr(enc)
    if isinstance(k, np.generic):
        k = k.item()
    return str(k)


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON data (dict, list, str, int, float, bool, None).

    Follows the rules in the module docstring: NaN/+Inf/-Inf become ``"nan"``/``"inf"``/
    ``"-inf"``, numpy and torch values become Python numbers or lists, unknown objects
    become ``str(obj)``. Never raises for ordinary values; a ``to_dict()`` method that raises
    propagates its error. Self-referencing containers raise ``RecursionError``.

    Example::

        >>> import numpy as np
        >>> to_jsonable({"a": np.float32(0.5), "b": np.array([1.0, -np.inf]), 3: (True,)})
        {'a': 0.5, 'b': [1.0, '-inf'], '3': [True]}
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):  # np.float64 included
        return _float(obj)
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, np.generic):  # numpy scalar: np.int64, np.float32, np.bool_, ...
        return to_jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict) and not isinstance(obj, type):
        return to_jsonable(to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        try:
            items = sorted(obj)
        except TypeError:
            items = list(obj)
        return [to_jsonable(v) for v in items]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", errors="replace")
    tolist = getattr(obj, "tolist", None)  # torch tensors and other array types
    if callable(tolist):
        try:
            return to_jsonable(tolist())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(obj)


def dumps(obj: Any, **kw: Any) -> str:
    """``json.dumps(to_jsonable(obj), **kw)`` with ``allow_nan=False``: always strict JSON.

    Keyword arguments go to :func:`json.dumps` (``indent``, ``sort_keys``, ...); ``allow_nan``
    is ignored (the encoded data never holds a non-finite float).

    Example::

        >>> dumps([float("-inf"), 2], indent=None)
        '["-inf", 2]'
    """
    kw.pop("allow_nan", None)
    kw.pop("default", None)
    return json.dumps(to_jsonable(obj), allow_nan=False, **kw)


def _reject_constant(name: str) -> Any:
    raise ValueError(
        f"non-standard JSON constant {name}; use the string "
        + ('"nan"' if name == "NaN" else '"inf"' if name == "Infinity" else '"-inf"')
    )


def loads(text: str | bytes) -> Any:
    """Parse JSON strictly: ``NaN``, ``Infinity`` and ``-Infinity`` tokens raise ``ValueError``.

    Strings ``"nan"``/``"inf"``/``"-inf"`` stay strings; convert them with ``float()`` where
    a number is expected. Malformed JSON raises ``json.JSONDecodeError`` (a ``ValueError``).

    Example::

        >>> loads('{"gain": "inf"}')
        {'gain': 'inf'}
    """
    return json.loads(text, parse_constant=_reject_constant)
