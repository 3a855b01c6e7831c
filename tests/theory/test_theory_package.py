"""The theory package: public API, argument errors, docstring examples, no torch needed."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys

import numpy as np
import pytest

from gradmedic import theory as T
from gradmedic.errors import ConfigError


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: T.chi1("tanh", -1.0, 0.0), "sigma_w2 must be > 0"),
        (lambda: T.chi1("tanh", float("nan"), 0.0), "sigma_w2 must be a finite number"),
        (lambda: T.chi1("tanh", 1.0, -0.1), "sigma_b2 must be >= 0"),
        (lambda: T.summary("tanh", 1.0, 0.0, 0), "depth must be an integer >= 1"),
        (lambda: T.predicted_gradient_ratio("tanh", 1.0, 0.0, 2.5), "depth must be an integer"),
        (lambda: T.e_dphi_sq("tanh", -1.0), "q must be >= 0"),
        (lambda: T.correlation_map(1.5, "tanh", 1.0, 0.0), r"c must lie in \[-1, 1\]"),
        (lambda: T.pascanu_bound(np.ones((2, 3))), "square matrix"),
        (lambda: T.gaussian_expectation(np.tanh, 1.0, method="simpson"), "method must be"),
    ],
)
def test_bad_values_raise_config_error(call, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()


def test_import_gradmedic_theory_without_torch() -> None:
    """`import gradmedic.theory` through the package, with torch unavailable."""
    code = "import sys; sys.modules['torch'] = None; import gradmedic.theory; print('ok')"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


THEORY_MODULES = sorted(m.name for m in pkgutil.iter_modules(T.__path__, "gradmedic.theory."))


def test_the_package_has_one_module_per_concept() -> None:
    assert [m.rsplit(".", 1)[1] for m in THEORY_MODULES] == [
        "_checks",
        "_elementwise",
        "activations",
        "builtin_activations",
        "critical",
        "depth",
        "gains",
        "meanfield",
        "quadrature",
        "registry",
        "rnn",
        "summary",
    ]


def test_public_api_is_re_exported() -> None:
    """The names of the former single-module theory, plus those of theory.gains."""
    gains = importlib.import_module("gradmedic.theory.gains")
    assert set(gains.__all__) <= set(T.__all__)
    assert len(T.__all__) == len(set(T.__all__)) == 40
    for name in T.__all__:
        obj = getattr(T, name)
        module = getattr(obj, "__module__", None)
        if callable(obj) and module is not None and name != "ActivationLike":
            assert module.startswith("gradmedic.theory."), (name, module)


@pytest.mark.parametrize("name", ["gradmedic.theory", *THEORY_MODULES])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted >= 1


def test_docstring_examples_cover_the_package() -> None:
    total = 0
    for name in THEORY_MODULES:
        finder = doctest.DocTestFinder()
        module = importlib.import_module(name)
        total += sum(len(t.examples) for t in finder.find(module))
    assert total > 60
