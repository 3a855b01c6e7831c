"""Mean-field theory of gradient flow: how deep a network can be before gradients vanish or explode.

This package predicts, from the activation function and the initialisation variances alone, how
the norm of the backward signal ``delta^l = dLoss/dh^l`` changes from layer to layer in a wide,
randomly initialised fully-connected network, and how the same question looks for a recurrent
weight matrix. It needs numpy and scipy, not torch, so ``gradmedic theory`` stays fast.

Notation (Poole et al. 2016; Schoenholz et al. 2017): ``h^l = W^l phi(h^{l-1}) + b^l`` with
``W_ij ~ N(0, sw2 / N)`` and ``b_i ~ N(0, sb2)``; ``z`` is a standard normal variable.

* :mod:`~gradmedic.theory.activations`, :mod:`~gradmedic.theory.builtin_activations`,
  :mod:`~gradmedic.theory.registry`: the numpy :class:`Activation` type, the built-in table and
  :func:`get_activation` (``"tanh"``, ``"leaky_relu(0.2)"``, ``"elu(alpha=0.5)"``).
* :mod:`~gradmedic.theory.quadrature`: Gaussian expectations ``E[f(sqrt(q) z)]``.
* :mod:`~gradmedic.theory.meanfield`: the length map ``q^l = sw2 E[phi(sqrt(q^{l-1}) z)^2] + sb2``
  and its fixed point ``q*`` (Poole et al., NeurIPS 2016, Sec. 2), ``chi1 = sw2 E[phi'(sqrt(q*)
  z)^2]`` and the correlation map. ``chi1 < 1`` is the *ordered* phase (gradients vanish),
  ``chi1 > 1`` the *chaotic* phase (gradients explode), ``chi1 = 1`` the edge of chaos.
* :mod:`~gradmedic.theory.depth`: depth scales ``xi_q``, ``xi_c``, ``xi_grad = -1/log(chi1)``,
  the phase and ``||dL/dh^1||^2 / ||dL/dh^L||^2 = chi1^(L-1)`` (Schoenholz, Gilmer, Ganguli,
  Sohl-Dickstein, "Deep Information Propagation", ICLR 2017, Sec. 3 and 5).
* :mod:`~gradmedic.theory.critical`: the critical line ``chi1 = 1``.
* :mod:`~gradmedic.theory.rnn`: Pascanu, Mikolov & Bengio (ICML 2013): ``lambda1 < 1/gamma``,
  ``gamma = sup |phi'|``, is sufficient for vanishing RNN gradients.
* :mod:`~gradmedic.theory.summary`: all of it for one plain MLP, as a dict and as text.
* :mod:`~gradmedic.theory.gains`: predicted per-module backward gains and init-time predictions
  from module-info dicts (what the diagnosis compares a trace against).

Example::

    >>> round(critical_sigma_w2("tanh", 0.05), 4)          # edge of chaos for tanh, sb2 = 0.05
    1.761
    >>> chi1("relu", 2.0, 0.0)                              # He init is critical for ReLU
    1.0
    >>> r = predicted_gradient_ratio("relu", 1.0, 0.0, depth=30)
    >>> f"{r.norm_ratio:.2g}"                               # ||dL/dh^1|| / ||dL/dh^30||
    '4.3e-05'
"""

from __future__ import annotations

from gradmedic.theory.activations import Activation, DerivativeExtrema
from gradmedic.theory.critical import (
    CriticalPoint,
    critical_line,
    critical_line_from_q,
    critical_point_at_q,
    critical_sigma_w2,
)
from gradmedic.theory.depth import (
    CRITICAL_TOL,
    TRAINABLE_XI_C_FACTOR,
    DepthScales,
    GradientRatio,
    depth_scales,
    phase,
    predicted_gradient_ratio,
    xi_c,
    xi_grad,
    xi_q,
)
from gradmedic.theory.gains import (
    InitPrediction,
    PairPrediction,
    init_predictions,
    module_predicted_gain,
    module_predicted_slope,
    theory_activation,
)
from gradmedic.theory.meanfield import (
    chi1,
    correlation_map,
    expected_layer_gain,
    fixed_point_c,
    fixed_point_q,
    length_map,
)
from gradmedic.theory.quadrature import e_dphi, e_dphi_sq, e_phi_sq, gaussian_expectation
from gradmedic.theory.registry import ActivationLike, activation_names, get_activation
from gradmedic.theory.rnn import PascanuBound, pascanu_bound
from gradmedic.theory.summary import format_summary, summary

__all__ = [
    "CRITICAL_TOL",
    "TRAINABLE_XI_C_FACTOR",
    "Activation",
    "ActivationLike",
    "CriticalPoint",
    "DepthScales",
    "DerivativeExtrema",
    "GradientRatio",
    "InitPrediction",
    "PairPrediction",
    "PascanuBound",
    "activation_names",
    "chi1",
    "correlation_map",
    "critical_line",
    "critical_line_from_q",
    "critical_point_at_q",
    "critical_sigma_w2",
    "depth_scales",
    "e_dphi",
    "e_dphi_sq",
    "e_phi_sq",
    "expected_layer_gain",
    "fixed_point_c",
    "fixed_point_q",
    "format_summary",
    "gaussian_expectation",
    "get_activation",
    "init_predictions",
    "length_map",
    "module_predicted_gain",
    "module_predicted_slope",
    "pascanu_bound",
    "phase",
    "predicted_gradient_ratio",
    "summary",
    "theory_activation",
    "xi_c",
    "xi_grad",
    "xi_q",
]
