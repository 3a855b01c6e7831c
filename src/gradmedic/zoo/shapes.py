"""Shape checks shared by the built-in models: does the data's per-sample shape fit the model?

Each check raises :class:`~gradmedic.errors.DataError` naming a data spec (or a model) that
fits, so ``gradmedic diagnose --model cnn --data digits`` says to use ``digits:image=true``
instead of failing deep inside a convolution.

Example::

    >>> from gradmedic.zoo import load_data
    >>> conv_dims("cnn", load_data("digits:image=true").info)
    2
    >>> flat_size(load_data("digits").info)
    64
"""

from __future__ import annotations

import math

from gradmedic.errors import DataError
from gradmedic.zoo.data import DataInfo

__all__ = ["SEQ_MODELS", "conv_dims", "flat_size", "need_per_sample"]

#: The models that give one output per time step (for error messages).
SEQ_MODELS = "--model lstm, gru, rnn or transformer"


def flat_size(info: DataInfo) -> int:
    """The number of input features of one sample, ``prod(info.input_shape)``."""
    return int(math.prod(info.input_shape))


def need_per_sample(model: str, info: DataInfo) -> None:
    """Refuse seq-classification data for a ``model`` that gives one output per sample.

    Raises DataError naming the sequence models.
    """
    if info.task == "seq-classification":
        raise DataError(
            f"model '{model}' gives one output per sample, but data set '{info.name}' needs one "
            f"per time step; use {SEQ_MODELS}"
        )


def conv_dims(model: str, info: DataInfo) -> int:
    """The convolution dimension for ``info``'s samples: 2 for images (C, H, W), 1 for
    channel-first 1-D signals (C, L).

    Raises DataError for sequences (T, F) and flat samples, naming the data option that gives
    a fitting shape (``digits:image=true``, ``mnist1d:channels=true``).
    """
    shape = info.input_shape
    if info.is_sequence:
        raise DataError(
            f"model '{model}' needs image (C, H, W) or channel-first 1-D (C, L) inputs, but data "
            f"set '{info.name}' is a sequence of shape {shape}; use {SEQ_MODELS}"
        )
    if len(shape) == 3:
        return 2
    if len(shape) == 2:
        return 1
    fix = {
        "digits": "--data digits:image=true",
        "digits-binary": "--data digits-binary:image=true",
        "mnist1d": "--data mnist1d:channels=true",
    }.get(info.name, "--data digits:image=true or --data mnist1d:channels=true")
    raise DataError(
        f"model '{model}' needs image (C, H, W) or channel-first 1-D (C, L) inputs, but data set "
        f"'{info.name}' gives flat samples of shape {shape}; use {fix}"
    )
