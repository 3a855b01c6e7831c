"""Parse the small spec strings the CLI takes, and load user factories by file path.

A *spec* names a built-in thing and, after a colon, its options::

    mlp:depth=30,width=128,act=sigmoid,init=xavier
    adding-200
    lstm:hidden=64,forget_bias=1.0
    mlp:act=leaky_relu(0.2),init=normal(sw2=2.0,sb2=0.05)

Values are coerced: ``true``/``false``/``yes``/``no`` to bool, then int, then float; anything
else stays a string (``leaky_relu(0.2)`` is a string value, and commas inside parentheses do
not split options). ``none`` and ``null`` stay the text ``'none'`` / ``'null'``: many options
take ``none`` as a word (``ce:reduction=none``, ``gelu(approximate=none)``), so the text
becomes Python ``None`` only where an option means "no value" (:func:`is_none_text`,
``Options.get_int/get_float(allow_none=True)``, a remedy parameter typed ``X | None``). A bare key (``mlp:residual``) means
``residual=true``. Quotes around a value keep it a string (``name='1'``).

A *factory reference* points at a function (or class) in a Python file instead::

    path/to/my_model.py:build

:func:`load_factory` imports that file by path and returns the attribute.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from gradmedic.errors import ConfigError

__all__ = [
    "NONE_WORDS",
    "USER_MODULE_PREFIX",
    "Options",
    "accepts_keyword",
    "is_factory_ref",
    "is_none_text",
    "load_factory",
    "parse_call",
    "parse_spec",
    "parse_value",
    "split_top",
]

_INT = re.compile(r"^[+-]?\d+$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_\-]*)\s*\((.*)\)$", re.DOTALL)

#: The words that mean "no value" where an option allows one (compared lower-case).
NONE_WORDS: tuple[str, ...] = ("none", "null")

#: The ``sys.modules`` names of imported factory files start with this (a trial runner that
#: sends the model to other processes pickles these modules by value: no worker can import them).
USER_MODULE_PREFIX = "gradmedic_user_"


def is_none_text(value: Any) -> bool:
    """True for ``None`` and for the text ``none`` / ``null`` (any case): the spellings of
    "no value" in a spec. Used only where an option may be None.

    >>> is_none_text("None"), is_none_text(None), is_none_text("nonE1")
    (True, True, False)
    """
    return value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)


def parse_value(text: str) -> Any:
    """Coerce one option value: bool, int, float, else the (unquoted) string.

    ``none`` stays the string ``'none'`` (``ce:reduction=none`` is a word, not Python None);
    see :func:`is_none_text` for the options where it means no value.

    >>> [parse_value(v) for v in ["true", "none", "30", "-5", "1e-3", "leaky_relu(0.2)"]]
    [True, 'none', 30, -5, 0.001, 'leaky_relu(0.2)']
    """
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    low = s.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if _INT.match(s):
        return int(s)
    try:
        return float(s)
    except ValueError:
        return s


def split_top(text: str, sep: str, what: str, full: str | None = None) -> list[str]:
    """Split ``text`` on ``sep`` outside parentheses and brackets (``full`` words errors).

    >>> split_top("a(x=1)+b(y=2+3)", "+", "remedy spec")
    ['a(x=1)', 'b(y=2+3)']
    """
    shown = text if full is None else full
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise ConfigError(
                    f"unbalanced ')' in {what} '{shown}'; check the parentheses, "
                    "e.g. act=leaky_relu(0.2)"
                )
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ConfigError(
            f"unbalanced '(' in {what} '{shown}'; check the parentheses, e.g. act=leaky_relu(0.2)"
        )
    parts.append(text[start:])
    return parts


def _parse_options(body: str, what: str, full: str) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for item in split_top(body, ",", what, full):
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not _KEY.match(key):
            raise ConfigError(
                f"bad option '{item}' in {what} '{full}'; write options as key=value "
                "separated by commas, e.g. mlp:depth=30,act=tanh"
            )
        if key in opts:
            raise ConfigError(
                f"option '{key}' is given twice in {what} '{full}'; keep only one of them"
            )
        if eq and not value.strip():
            raise ConfigError(
                f"option '{key}' has no value in {what} '{full}'; write {key}=VALUE "
                f"or drop it to use the default"
            )
        opts[key] = parse_value(value) if eq else True
    return opts


def parse_spec(spec: str, *, kind: str = "spec") -> tuple[str, dict[str, Any]]:
    """Split ``name:key=value,...`` into the lower-cased name and a dict of coerced options.

    ``kind`` ("model", "data set", "loss") only words the error messages.

    >>> parse_spec("mlp:depth=30,act=leaky_relu(0.2),residual")
    ('mlp', {'depth': 30, 'act': 'leaky_relu(0.2)', 'residual': True})
    >>> parse_spec("adding-200")
    ('adding-200', {})
    """
    if not isinstance(spec, str):
        raise ConfigError(
            f"{kind} spec must be a string like 'name:key=value', got {type(spec).__name__}"
        )
    text = spec.strip()
    what = f"{kind} spec"
    if not text:
        raise ConfigError(f"empty {what}; give a name, optionally with options: name:key=value")
    name, _, body = text.partition(":")
    name = name.strip().lower()
    if not name:
        raise ConfigError(f"{what} '{spec}' has no name before ':'; write it as name:key=value")
    return name, _parse_options(body, what, spec)


def parse_call(text: str, *, what: str = "value") -> tuple[str, list[Any], dict[str, Any]]:
    """Parse ``name`` or ``name(arg, key=value)`` into (lower-cased name, args, kwargs).

    >>> parse_call("leaky_relu(0.2)")
    ('leaky_relu', [0.2], {})
    >>> parse_call("normal(sw2=2, sb2=0.05)")
    ('normal', [], {'sw2': 2, 'sb2': 0.05})
    """
    s = str(text).strip()
    m = _CALL.match(s)
    if m is None:
        if "(" in s or ")" in s:
            raise ConfigError(
                f"cannot read {what} '{s}'; write it as name or name(arg, key=value), "
                "e.g. leaky_relu(0.2)"
            )
        return s.lower(), [], {}
    name, body = m.group(1).lower(), m.group(2)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for item in split_top(body, ",", what, s):
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        if eq:
            key = key.strip().lower()
            if not _KEY.match(key):
                raise ConfigError(f"bad argument '{item}' in {what} '{s}'; write key=value")
            if key in kwargs:
                raise ConfigError(
                    f"argument '{key}' is given twice in {what} '{s}'; keep only one of them"
                )
            kwargs[key] = parse_value(value)
        else:
            if kwargs:
                raise ConfigError(
                    f"positional argument '{item}' after a keyword argument in {what} '{s}'; "
                    "put positional arguments first"
                )
            args.append(parse_value(item))
    return name, args, kwargs


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else "."


class Options:
    """Typed, validated access to the options of one spec.

    Unknown keys are rejected on construction, so a typo (``depht=30``) never passes silently.

    >>> o = Options("model", "mlp", {"depth": 30}, valid=["depth", "width"])
    >>> o.get_int("depth", 10, minimum=1), o.get_int("width", 128, minimum=1)
    (30, 128)
    """

    def __init__(
        self, kind: str, name: str, opts: Mapping[str, Any], *, valid: Iterable[str]
    ) -> None:
        self.kind = kind
        self.name = name
        self.opts = dict(opts)
        self.valid = sorted(valid)
        for key in self.opts:
            if key not in self.valid:
                listed = ", ".join(self.valid) if self.valid else "(none)"
                raise ConfigError(
                    f"unknown option '{key}' for {kind} '{name}'{_suggest(key, self.valid)} "
                    f"Valid options: {listed}"
                )

    def __contains__(self, key: str) -> bool:
        return key in self.opts

    def _bad(self, key: str, value: Any, need: str, example: str) -> ConfigError:
        return ConfigError(
            f"option {key}={value!r} for {self.kind} '{self.name}' is invalid: {need}; "
            f"e.g. {self.name}:{key}={example}"
        )

    def raw(self, key: str, default: Any = None) -> Any:
        """The coerced value as given, or ``default``."""
        return self.opts.get(key, default)

    def get_int(
        self, key: str, default: int | None, *, minimum: int | None = None, allow_none: bool = False
    ) -> Any:
        """An integer option, at least ``minimum``; ``None`` (also the text ``none``) only when
        ``allow_none``."""
        v = self.opts.get(key, default)
        if allow_none and is_none_text(v):
            return None
        if v is None and key not in self.opts:
            return v
        ok = isinstance(v, int) and not isinstance(v, bool)
        if isinstance(v, float) and v.is_integer():
            v, ok = int(v), True
        example = str(default if default is not None else max(minimum or 1, 1))
        if not ok:
            raise self._bad(key, v, "it must be an integer", example)
        if minimum is not None and v < minimum:
            raise self._bad(key, v, f"it must be at least {minimum}", example)
        return v

    def get_float(
        self,
        key: str,
        default: float | None,
        *,
        minimum: float | None = None,
        allow_none: bool = False,
    ) -> Any:
        """A real-valued option, at least ``minimum``; ``None`` (also the text ``none``) only
        when ``allow_none``."""
        v = self.opts.get(key, default)
        if allow_none and is_none_text(v):
            return None
        if v is None and key not in self.opts:
            return v
        example = str(default if default is not None else 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self._bad(key, v, "it must be a number", example)
        if minimum is not None and v < minimum:
            raise self._bad(key, v, f"it must be at least {minimum}", example)
        return float(v)

    def get_bool(self, key: str, default: bool) -> bool:
        """A true/false option (also accepts 1/0)."""
        v = self.opts.get(key, default)
        if isinstance(v, bool):
            return v
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        raise self._bad(key, v, "it must be true or false", "true")

    def get_choice(self, key: str, default: str, choices: Iterable[str]) -> str:
        """A string option from a fixed list (compared lower-case; ``null`` reads as ``none``
        when ``none`` is a choice)."""
        v = self.opts.get(key, default)
        choices = list(choices)
        s = "none" if is_none_text(v) and "none" in choices else str(v).lower()
        if s not in choices:
            raise ConfigError(
                f"option {key}={v!r} for {self.kind} '{self.name}' is invalid"
                f"{_suggest(s, choices)} Valid values: {', '.join(choices)}"
            )
        return s

    def get_str(self, key: str, default: str | None) -> Any:
        """A free-form string option (numbers are turned back into text)."""
        v = self.opts.get(key, default)
        return None if v is None else str(v)


# ---------------------------------------------------------------------------------------------
# factory references: path/to/file.py:name


def is_factory_ref(s: object) -> bool:
    """True when ``s`` looks like ``path/to/file.py:factory`` (contains ``.py:``)."""
    return isinstance(s, str) and ".py:" in s


def _split_ref(ref: str) -> tuple[str, str]:
    path, sep, attr = ref.strip().rpartition(":")
    if not sep or not path.endswith(".py") or not attr.strip():
        raise ConfigError(
            f"'{ref}' is not a factory reference; write it as path/to/file.py:function_name"
        )
    return path, attr.strip()


def _import_file(path: Path) -> ModuleType:
    stem = re.sub(r"\W", "_", path.stem)
    mod_name = f"{USER_MODULE_PREFIX}{stem}_{abs(hash(str(path))) & 0xFFFFFFFF:x}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for odd suffixes
        raise ConfigError(f"cannot import factory file '{path}'; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look themselves up here
    folder = str(path.parent)
    sys.path.insert(0, folder)  # let the file import its neighbours
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(mod_name, None)
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else ""
        detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        raise ConfigError(
            f"factory file '{path}' failed to import ({detail}); fix the error in that file "
            "and try again"
        ) from exc
    finally:
        with contextlib.suppress(ValueError):  # the file may have removed it itself
            sys.path.remove(folder)
    return module


def _defined_callables(module: ModuleType) -> list[str]:
    names = []
    for key, value in vars(module).items():
        if key.startswith("_") or not callable(value):
            continue
        if getattr(value, "__module__", None) == module.__name__:
            names.append(key)
    return sorted(names)


def load_factory(ref: str) -> Callable[..., Any]:
    """Import ``path/to/file.py`` by path and return its attribute ``factory``.

    The file is executed as a fresh module (its folder is on ``sys.path`` while it imports,
    so it can import files next to it). Errors say exactly what is missing:

    - the file does not exist,
    - the file raises while importing (the exception's first line is quoted),
    - the attribute is missing (the callables the file defines are listed),
    - the attribute is not callable.
    """
    path_text, attr = _split_ref(ref)
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"factory file '{path_text}' not found; check the path "
            f"(relative paths start from {Path.cwd()})"
        )
    module = _import_file(path.resolve())
    if not hasattr(module, attr):
        defined = _defined_callables(module)
        listed = ", ".join(defined) if defined else "none"
        raise ConfigError(
            f"factory file '{path_text}' has no attribute '{attr}'"
            f"{_suggest(attr, defined)} Callables defined there: {listed}"
        )
    obj = getattr(module, attr)
    if not callable(obj):
        raise ConfigError(
            f"'{attr}' in factory file '{path_text}' is not callable (it is of type "
            f"{type(obj).__name__}); point to a function or class that builds the object"
        )
    return obj


def accepts_keyword(fn: Callable[..., Any], name: str) -> bool:
    """True when ``fn`` takes a keyword argument ``name`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return True
        if p.name == name and p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            return True
    return False
