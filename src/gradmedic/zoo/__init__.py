"""Built-in models, data sets and losses for gradient experiments (all offline).

>>> from gradmedic.zoo import load_data, build_model, loss_for
>>> data = load_data("digits")
>>> model = build_model("mlp:depth=30,act=sigmoid", data.info, seed=0)
>>> x, y = data.fixed_batch(64, seed=0)
>>> loss = loss_for(data.info)(model(x), y)
"""

from __future__ import annotations

from gradmedic.zoo.build import MODELS, build_model, load_model
from gradmedic.zoo.cnn import InceptionNet
from gradmedic.zoo.data import (
    DATASETS,
    DataInfo,
    Dataset,
    adding_baseline,
    copy_baseline,
    load_data,
)
from gradmedic.zoo.inits import INITS, init_layers
from gradmedic.zoo.losses import LOSSES, FunctionLoss, SequenceLoss, loss_for, make_loss
from gradmedic.zoo.mlp import ResidualBlock
from gradmedic.zoo.recurrent import SequenceModel
from gradmedic.zoo.transformer import TransformerModel

__all__ = [
    "DATASETS",
    "INITS",
    "LOSSES",
    "MODELS",
    "DataInfo",
    "Dataset",
    "FunctionLoss",
    "InceptionNet",
    "ResidualBlock",
    "SequenceLoss",
    "SequenceModel",
    "TransformerModel",
    "adding_baseline",
    "build_model",
    "copy_baseline",
    "init_layers",
    "load_data",
    "load_model",
    "loss_for",
    "make_loss",
]
