"""Where users train: callbacks for PyTorch Lightning and the Hugging Face ``Trainer``, and
sinks that stream the Monitor's scalars to TensorBoard and MLflow.

Each integration is an optional extra and is imported only when asked for::

    pip install 'gradmedic[lightning]'      # gradmedic.integrations.lightning.GradmedicCallback
    pip install 'gradmedic[transformers]'   # gradmedic.integrations.transformers.GradmedicCallback
    pip install 'gradmedic[tensorboard]'    # gradmedic.integrations.tensorboard.TensorBoardSink
    pip install 'gradmedic[mlflow]'         # gradmedic.integrations.mlflow.MlflowSink

``from gradmedic.integrations import TensorBoardSink`` works too (imported on first use).
Importing this package imports none of those libraries.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PREFIX", "MlflowSink", "TensorBoardSink"]

#: the tag group of every scalar the integrations write
PREFIX = "gradmedic/"

_LAZY = {"TensorBoardSink": "tensorboard", "MlflowSink": "mlflow"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'gradmedic.integrations' has no attribute {name!r}")
