"""The built-in recurrent models: vanilla RNN, LSTM and GRU over (T, F) sequences.

Vanilla RNNs lose (or blow up) their gradient over long time spans (Bengio et al. 1994;
Pascanu et al. 2013); LSTM and GRU gates keep it (Hochreiter & Schmidhuber 1997). Knobs:
``radius`` rescales each recurrent weight block to that spectral radius, ``init=orthogonal``
or ``identity`` sets the recurrent weights (Saxe et al. 2014; Le et al. 2015), and the LSTM's
``forget_bias`` sets the forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015).

Example::

    >>> from gradmedic.zoo import build_model, load_data
    >>> net = build_model("rnn:hidden=16,radius=0.9", load_data("adding-50").info)
    >>> round(spectral_radius(net.rnn.weight_hh_l0), 3)
    0.9
"""

from __future__ import annotations

import torch
from torch import nn

from gradmedic._callspec import Options
from gradmedic.errors import DataError
from gradmedic.zoo.data import DataInfo

__all__ = ["RNN_OPTIONS", "SequenceModel", "build_recurrent", "spectral_radius"]

#: Options every recurrent model accepts (``rnn`` adds ``act``, ``lstm`` ``forget_bias``).
RNN_OPTIONS = ("hidden", "init", "layers", "radius")


class SequenceModel(nn.Module):
    """A recurrent layer over (B, T, F) inputs (``batch_first``) and a Linear ``head``.

    The head reads the last time step (one output per sequence: regression, classification)
    or, with ``per_step=True``, every time step (output (B, T, C) for seq-classification).
    """

    def __init__(self, rnn: nn.RNNBase, head: nn.Linear, *, per_step: bool = False) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = head
        self.per_step = per_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out if self.per_step else out[:, -1])


def _gate_chunks(w: torch.Tensor, hidden: int) -> list[torch.Tensor]:
    return [w[i * hidden : (i + 1) * hidden] for i in range(w.shape[0] // hidden)]


def spectral_radius(w: torch.Tensor) -> float:
    """The largest eigenvalue modulus of the square matrix ``w`` (computed in float64)."""
    return float(torch.linalg.eigvals(w.detach().double()).abs().max())


def build_recurrent(o: Options, info: DataInfo, kind: str) -> nn.Module:
    """A :class:`SequenceModel` of ``kind`` (``rnn``, ``lstm`` or ``gru``) for ``o`` on ``info``.

    Raises DataError when ``info``'s samples are not (T, F) sequences and ConfigError for bad
    options.
    """
    if not info.is_sequence:
        raise DataError(
            f"model '{kind}' needs sequence inputs of shape (T, F), but data set '{info.name}' "
            f"gives samples of shape {info.input_shape}; use --data adding-200 or --data copy-100"
        )
    hidden = o.get_int("hidden", 64, minimum=1)
    layers = o.get_int("layers", 1, minimum=1)
    init = o.get_choice("init", "default", ("default", "orthogonal", "identity"))
    radius = o.get_float("radius", None, minimum=0.0, allow_none=True)
    n_in = info.input_shape[1]
    if kind == "rnn":
        act = o.get_choice("act", "tanh", ("tanh", "relu"))
        rnn: nn.RNNBase = nn.RNN(n_in, hidden, layers, nonlinearity=act, batch_first=True)
    elif kind == "lstm":
        rnn = nn.LSTM(n_in, hidden, layers, batch_first=True)
    else:
        rnn = nn.GRU(n_in, hidden, layers, batch_first=True)
    per_step = info.task == "seq-classification"
    model = SequenceModel(rnn, nn.Linear(hidden, info.num_outputs), per_step=per_step)
    with torch.no_grad():
        for layer in range(layers):
            w_hh = getattr(rnn, f"weight_hh_l{layer}")
            if init != "default":
                for chunk in _gate_chunks(w_hh, hidden):
                    if init == "orthogonal":
                        nn.init.orthogonal_(chunk)
                    else:
                        chunk.copy_(torch.eye(hidden))
                getattr(rnn, f"bias_ih_l{layer}").zero_()
                getattr(rnn, f"bias_hh_l{layer}").zero_()
            if radius is not None:
                for chunk in _gate_chunks(w_hh, hidden):
                    rho = spectral_radius(chunk)
                    if rho > 0:
                        chunk.mul_(radius / rho)
        if kind == "lstm":
            forget = o.get_float("forget_bias", None, allow_none=True)
            if forget is not None:
                for layer in range(layers):
                    getattr(rnn, f"bias_ih_l{layer}")[hidden : 2 * hidden] = forget
                    getattr(rnn, f"bias_hh_l{layer}")[hidden : 2 * hidden] = 0.0
    return model
