"""The weight-init gain of an activation: how much a Kaiming/orthogonal init scales by.

A layer followed by activation ``phi`` keeps its forward signal's second moment when its
weights are drawn with standard deviation ``gain / sqrt(fan)``. PyTorch's
``torch.nn.init.calculate_gain`` gives the classical values (ReLU ``sqrt 2``, tanh ``5/3``,
leaky ReLU ``sqrt(2 / (1 + a^2))``, SELU ``3/4``, sigmoid and linear 1); for every other
activation the gain is the second-moment gain ``1 / sqrt(E[phi(z)^2])``, ``z ~ N(0, 1)``
(He et al. 2015, Sec. 2.2, the argument that gives ``sqrt 2`` for ReLU), computed by
Gauss-Hermite quadrature with 121 nodes. Both the zoo's ``init=kaiming`` and the ``reinit``
remedy use it.

Example::

    >>> round(activation_gain("relu"), 4), round(activation_gain("leaky_relu(0.2)"), 4)
    (1.4142, 1.3868)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gradmedic.nn.activations import kind_of, make_activation, params_of

__all__ = ["activation_gain"]

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(121)

#: Activations whose gain ``torch.nn.init.calculate_gain`` defines.
_TORCH_GAINS = ("relu", "tanh", "sigmoid", "selu")


def activation_gain(spec: str) -> float:
    """The init gain of the activation ``spec`` (``relu``, ``leaky_relu(0.2)``,
    ``softplus(beta=2)``; any name :func:`gradmedic.nn.activations.make_activation` takes).

    Raises UnknownNameError / ConfigError for an activation spec the registry does not accept.

    >>> activation_gain("linear"), round(activation_gain("tanh"), 4)
    (1.0, 1.6667)
    """
    act = make_activation(spec)
    kind = kind_of(act)
    if kind is None:  # nn.Identity: "linear"
        return 1.0
    if kind.name in _TORCH_GAINS:
        return float(nn.init.calculate_gain(kind.name))
    if kind.name == "leaky_relu":
        slope = params_of(act)["negative_slope"]
        return float(nn.init.calculate_gain("leaky_relu", slope))
    act = act.double().eval()  # float64 like the nodes; RReLU: its mean slope, not random
    with torch.no_grad():
        phi = act(torch.from_numpy(_GH_X)).numpy()
    second = float(np.sum(_GH_W * phi**2) / np.sqrt(2 * np.pi))
    return 1.0 / math.sqrt(second) if second > 0 else 1.0
