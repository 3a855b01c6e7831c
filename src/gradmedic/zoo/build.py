"""Build a model from a spec string, or load the user's own from ``path/to/file.py:factory``.

``build_model("mlp:depth=30,act=sigmoid,init=xavier", info)`` returns a plain ``nn.Module``
whose layer names are stable and readable (``"0"``, ``"1"``, ... for the flat MLP), so a
gradient report can point at a layer by name. The built-in models cover the classic gradient
pathologies:

- deep sigmoid/tanh MLPs, dead ReLUs, bad initialisation, normalisation and residual
  connections (:mod:`gradmedic.zoo.mlp`, :mod:`gradmedic.zoo.inits`);
- plain deep CNNs versus Inception networks with auxiliary classifiers
  (:mod:`gradmedic.zoo.cnn`; Szegedy et al. 2015);
- vanilla RNN / LSTM / GRU on long-range tasks (:mod:`gradmedic.zoo.recurrent`);
- a small pre-norm Transformer encoder (:mod:`gradmedic.zoo.transformer`).

Example::

    >>> from gradmedic.zoo import load_data
    >>> info = load_data("digits").info
    >>> net = build_model("mlp:depth=30,act=sigmoid", info, seed=0)
    >>> len(net)
    59
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradmedic._callspec import Options, accepts_keyword, is_factory_ref, load_factory
from gradmedic._callspec import parse_spec as _parse_spec
from gradmedic.errors import ConfigError, GradmedicError, ModelError, unknown_name
from gradmedic.zoo.cnn import CNN_OPTIONS, INCEPTION_OPTIONS, build_inception, build_plain_cnn
from gradmedic.zoo.data import DataInfo
from gradmedic.zoo.mlp import MLP_OPTIONS, build_mlp
from gradmedic.zoo.recurrent import RNN_OPTIONS, build_recurrent
from gradmedic.zoo.transformer import TRANSFORMER_OPTIONS, build_transformer

__all__ = [
    "LOOP_LIMITS",
    "MAX_PARAMETERS",
    "MODELS",
    "WIDTH_LIMITS",
    "build_model",
    "load_model",
    "require_materialised",
]

_BUILDERS: dict[str, tuple[Callable[[Options, DataInfo], nn.Module], tuple[str, ...]]] = {
    "mlp": (build_mlp, MLP_OPTIONS),
    "cnn": (lambda o, i: build_plain_cnn(o, i, "cnn", 4), CNN_OPTIONS),
    "plaincnn": (lambda o, i: build_plain_cnn(o, i, "plaincnn", 12), CNN_OPTIONS),
    "inception": (build_inception, INCEPTION_OPTIONS),
    "rnn": (lambda o, i: build_recurrent(o, i, "rnn"), (*RNN_OPTIONS, "act")),
    "lstm": (lambda o, i: build_recurrent(o, i, "lstm"), (*RNN_OPTIONS, "forget_bias")),
    "gru": (lambda o, i: build_recurrent(o, i, "gru"), RNN_OPTIONS),
    "transformer": (build_transformer, TRANSFORMER_OPTIONS),
}

#: Built-in model names.
MODELS: tuple[str, ...] = tuple(sorted(_BUILDERS))

#: Upper bounds of the options that set how many layers or blocks are built (one Python loop
#: iteration each) and of the options that set a layer's width: a larger value is refused
#: before anything is built.
LOOP_LIMITS: dict[str, int] = {"depth": 10_000, "layers": 10_000, "blocks": 10_000}
WIDTH_LIMITS: dict[str, int] = {
    k: 1 << 20 for k in ("width", "hidden", "channels", "stem", "d_model", "ff", "heads", "tokens")
}
#: The most parameters a built-in model may have: 1e9 (4 GB of float32 weights). Counted on
#: the meta device (shapes only, nothing allocated) before the model is built.
MAX_PARAMETERS = 1_000_000_000


def _check_limits(name: str, raw: dict[str, Any]) -> None:
    for key, limit in {**LOOP_LIMITS, **WIDTH_LIMITS}.items():
        v = raw.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= limit:
            continue
        if key in LOOP_LIMITS:
            cost, example = f"{v:.3g} layers, each built in Python, would not fit in memory", 30
        else:
            cost = f"one layer that wide holds about {v * v:.3g} weights, {v * v * 4e-9:.3g} GB"
            example = 128
        raise ConfigError(
            f"option {key}={v:.6g} for model '{name}' is too large ({cost}); the built-in "
            f"models take {key} up to {limit:,}, e.g. {name}:{key}={example}"
        )


def _check_size(spec: str, build: Callable[[], nn.Module]) -> None:
    """Build on the meta device (no memory) and refuse a model above MAX_PARAMETERS."""
    try:
        with torch.device("meta"):
            probe = build()
    except GradmedicError:
        raise
    except Exception:  # an init that needs real values (e.g. a spectral radius): build for real
        return
    count = sum(p.numel() for p in probe.parameters())
    if count > MAX_PARAMETERS:
        gb = count * 4 / 1e9
        raise ConfigError(
            f"model '{spec}' would have {count:.3g} parameters ({gb:.3g} GB of float32 "
            f"weights, before gradients and optimizer state); the built-in models are limited "
            f"to {MAX_PARAMETERS:.0e} parameters: use smaller sizes"
        )


def require_materialised(model: nn.Module, what: str = "the model") -> None:
    """Raise ModelError when ``model`` has parameters on the meta device (shapes without
    values), which cannot be trained.

    >>> require_materialised(nn.Linear(2, 1))
    """
    if any(p.is_meta for p in model.parameters()):
        raise ModelError(
            f"{what} has parameters on the meta device (shapes without values), so it cannot "
            "be trained; build it on a real device, or call model.to_empty(device='cpu') "
            "and initialise its weights"
        )


def build_model(spec: str, info: DataInfo, *, seed: int = 0) -> nn.Module:
    """Build a built-in model from ``name:key=value,...`` for data described by ``info``.

    ``torch.manual_seed(seed)`` is called first, so the same spec and seed give the same
    weights. A ``path/to/file.py:factory`` reference is passed on to :func:`load_model`.
    Unknown names and options raise ConfigError, and so does a size beyond
    :data:`LOOP_LIMITS`, :data:`WIDTH_LIMITS` or :data:`MAX_PARAMETERS` (``mlp:depth=1e12``, ``mlp:width=1e11``),
    before anything is allocated; a model that does not fit the data's shape raises DataError
    naming a data spec that fits.
    """
    if is_factory_ref(spec):
        return load_model(spec, info, seed=seed)
    name, raw = _parse_spec(spec, kind="model")
    if name not in _BUILDERS:
        raise unknown_name("model", name, MODELS)
    builder, valid = _BUILDERS[name]
    opts = Options("model", name, raw, valid=valid)
    _check_limits(name, raw)
    _check_size(spec, lambda: builder(opts, info))
    torch.manual_seed(seed)
    return builder(opts, info)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def load_model(ref_or_spec: str, info: DataInfo, seed: int = 0) -> nn.Module:
    """Build a built-in model spec or call a ``path/to/file.py:factory``.

    The factory is called with no arguments, or with ``info=`` (the :class:`DataInfo`) when it
    accepts that keyword, after ``torch.manual_seed(seed)``. It must return an ``nn.Module``
    with at least one trainable parameter, none of them on the meta device; otherwise, or when
    the factory raises (or calls ``sys.exit``), ModelError.
    """
    if is_factory_ref(ref_or_spec):
        factory = load_factory(ref_or_spec)
        torch.manual_seed(seed)
        try:
            model = factory(info=info) if accepts_keyword(factory, "info") else factory()
        except GradmedicError:
            raise
        except SystemExit as exc:
            raise ModelError(
                f"factory '{ref_or_spec}' called sys.exit({exc.code!r}) instead of returning a "
                "model; make it return the nn.Module (a factory must not end the process)"
            ) from None
        except Exception as exc:
            raise ModelError(
                f"factory '{ref_or_spec}' raised {_first_line(exc)}; fix the factory (it is "
                "called with no arguments, or with info=DataInfo(...) if it takes 'info')"
            ) from exc
        if not isinstance(model, nn.Module):
            raise ModelError(
                f"factory '{ref_or_spec}' returned {type(model).__name__}, expected "
                "torch.nn.Module; make it return the model instance"
            )
    else:
        model = build_model(ref_or_spec, info, seed=seed)
    require_materialised(model, f"model '{ref_or_spec}'")
    if not any(p.requires_grad for p in model.parameters()):
        raise ModelError(
            f"model '{ref_or_spec}' has no trainable parameters; gradmedic needs a model with "
            "trainable parameters (requires_grad=True) to measure gradients"
        )
    return model
