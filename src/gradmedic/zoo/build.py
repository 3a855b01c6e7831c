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

import torch
from torch import nn

from gradmedic._callspec import Options, accepts_keyword, is_factory_ref, load_factory
from gradmedic._callspec import parse_spec as _parse_spec
from gradmedic.errors import GradmedicError, ModelError, unknown_name
from gradmedic.zoo.cnn import CNN_OPTIONS, INCEPTION_OPTIONS, build_inception, build_plain_cnn
from gradmedic.zoo.data import DataInfo
from gradmedic.zoo.mlp import MLP_OPTIONS, build_mlp
from gradmedic.zoo.recurrent import RNN_OPTIONS, build_recurrent
from gradmedic.zoo.transformer import TRANSFORMER_OPTIONS, build_transformer

__all__ = ["MODELS", "build_model", "load_model"]

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


def build_model(spec: str, info: DataInfo, *, seed: int = 0) -> nn.Module:
    """Build a built-in model from ``name:key=value,...`` for data described by ``info``.

    ``torch.manual_seed(seed)`` is called first, so the same spec and seed give the same
    weights. A ``path/to/file.py:factory`` reference is passed on to :func:`load_model`.
    Unknown names and options raise ConfigError; a model that does not fit the data's shape
    raises DataError naming a data spec that fits.
    """
    if is_factory_ref(spec):
        return load_model(spec, info, seed=seed)
    name, raw = _parse_spec(spec, kind="model")
    if name not in _BUILDERS:
        raise unknown_name("model", name, MODELS)
    builder, valid = _BUILDERS[name]
    opts = Options("model", name, raw, valid=valid)
    torch.manual_seed(seed)
    return builder(opts, info)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def load_model(ref_or_spec: str, info: DataInfo, seed: int = 0) -> nn.Module:
    """Build a built-in model spec or call a ``path/to/file.py:factory``.

    The factory is called with no arguments, or with ``info=`` (the :class:`DataInfo`) when it
    accepts that keyword, after ``torch.manual_seed(seed)``. It must return an ``nn.Module``
    with at least one trainable parameter; otherwise, or when the factory raises, ModelError.
    """
    if is_factory_ref(ref_or_spec):
        factory = load_factory(ref_or_spec)
        torch.manual_seed(seed)
        try:
            model = factory(info=info) if accepts_keyword(factory, "info") else factory()
        except GradmedicError:
            raise
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
    if not any(p.requires_grad for p in model.parameters()):
        raise ModelError(
            f"model '{ref_or_spec}' has no trainable parameters; gradmedic needs a model with "
            "trainable parameters (requires_grad=True) to measure gradients"
        )
    return model
