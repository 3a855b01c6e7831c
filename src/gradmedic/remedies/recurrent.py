"""Recurrent remedies: gated units, forget-gate bias, orthogonal recurrent weights.

Why (Bengio et al. 1994; Pascanu et al. 2013; Hochreiter & Schmidhuber 1997): a vanilla RNN
back-propagates through ``dh_t/dh_k = prod W_rec^T diag(phi'(h_i))``; with largest singular
value ``lambda1 < 1/gamma`` (gamma = 1 for tanh) the long-range terms vanish like
``eta^(t-k)``, with ``lambda1 > 1/gamma`` they can explode.

- :func:`replace_rnn`: ``nn.RNN`` -> ``nn.LSTM`` or ``nn.GRU`` with the same input size,
  hidden size, layers, bias, batch_first, dropout and direction, at the same attribute path.
  The LSTM cell path ``c_t = f_t * c_{t-1} + i_t * g_t`` carries the gradient by ``f_t``.
- :func:`set_forget_bias_`: LSTM forget-gate bias ``b_f`` (Gers et al. 2000; Jozefowicz et al.
  2015: ``b_f = 1``). PyTorch has two bias vectors, ``bias_ih`` and ``bias_hh``, with gates
  ordered (input, forget, cell, output); the gate's bias is their *sum*, so the forget slice
  ``[H:2H]`` of ``bias_ih`` is set to ``value`` and that of ``bias_hh`` to 0.
  ``sigmoid(1) = 0.731``: over 20 steps the cell path keeps ``0.731^20 = 1.9e-3`` instead of
  ``0.5^20 = 9.5e-7``.
- :func:`orthogonal_recurrent_`: every recurrent (hidden-to-hidden) gate block set to a random
  orthogonal matrix times ``gain`` (Saxe et al. 2014): all singular values equal ``gain``, so
  the linear part of the recurrence neither shrinks nor grows the signal.

Limitation of ``replace_rnn`` on your own models: ``nn.LSTM`` returns ``(out, (h, c))`` and
takes ``(h0, c0)``; code that unpacks ``out, h = self.rnn(x)`` keeps working, code that uses
``h`` as a tensor or passes ``h0`` needs adapting. gradmedic's
:class:`~gradmedic.zoo.SequenceModel` only uses ``out``.
"""

from __future__ import annotations

import torch
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.remedies.base import RemedyReport, maybe_copy, set_submodule
from gradmedic.remedies.registry import remedy

__all__ = [
    "orthogonal_recurrent",
    "orthogonal_recurrent_",
    "recurrent_modules",
    "replace_rnn",
    "replace_rnn_",
    "set_forget_bias",
    "set_forget_bias_",
]


def recurrent_modules(
    model: nn.Module, kind: type[nn.Module] = nn.RNNBase
) -> list[tuple[str, nn.Module]]:
    """(name, module) of every ``kind`` module (default: RNN, LSTM and GRU)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kind)]


def _none_of(model: nn.Module, remedy: str, what: str) -> ConfigError:
    return ConfigError(
        f"remedy '{remedy}' does not apply to {type(model).__name__}: it has no {what} module"
    )


def replace_rnn_(
    model: nn.Module, to: str = "lstm", *, forget_bias: float | None = 1.0, seed: int | None = None
) -> RemedyReport:
    """Replace every ``nn.RNN`` by a freshly initialised ``nn.LSTM``/``nn.GRU`` of the same
    sizes, in place (LSTM forget-gate bias ``forget_bias``, 1 by default; ``None`` keeps
    PyTorch's init). Raises ConfigError when the model has no ``nn.RNN``."""
    to = str(to).lower()
    if to not in ("lstm", "gru"):
        raise ConfigError(f"replace-rnn: to={to!r} is invalid; use to=lstm or to=gru")
    rnns = [(n, m) for n, m in recurrent_modules(model, nn.RNN)]
    if not rnns:
        raise _none_of(model, "replace-rnn", "nn.RNN")
    if seed is not None:
        torch.manual_seed(seed)
    rep = RemedyReport(spec=f"replace-rnn(to={to})")
    cls = nn.LSTM if to == "lstm" else nn.GRU
    for name, rnn in rnns:
        new = cls(
            rnn.input_size,
            rnn.hidden_size,
            rnn.num_layers,
            bias=rnn.bias,
            batch_first=rnn.batch_first,
            dropout=float(rnn.dropout),
            bidirectional=rnn.bidirectional,
        )
        set_submodule(model, name, new)
        rep.changes.append(
            f"{name}: RNN({rnn.input_size}, {rnn.hidden_size}, layers={rnn.num_layers}, "
            f"nonlinearity={rnn.nonlinearity}) -> {cls.__name__}({rnn.input_size}, "
            f"{rnn.hidden_size}, layers={rnn.num_layers}) (fresh PyTorch init)"
        )
        if to == "lstm" and forget_bias is not None and rnn.bias:
            rep.changes += _forget(name, new, float(forget_bias))
    return rep


def replace_rnn(
    model: nn.Module,
    to: str = "lstm",
    *,
    forget_bias: float | None = 1.0,
    inplace: bool = False,
    seed: int | None = None,
) -> tuple[nn.Module, RemedyReport]:
    """Non-destructive :func:`replace_rnn_`: returns ``(new model, report)``."""
    new = maybe_copy(model, inplace)
    return new, replace_rnn_(new, to, forget_bias=forget_bias, seed=seed)


def _bias_names(lstm: nn.LSTM) -> list[tuple[str, str]]:
    suffixes = ["", "_reverse"] if lstm.bidirectional else [""]
    return [
        (f"bias_ih_l{k}{s}", f"bias_hh_l{k}{s}") for k in range(lstm.num_layers) for s in suffixes
    ]


def _forget(name: str, lstm: nn.LSTM, value: float) -> list[str]:
    h = lstm.hidden_size
    lines = []
    with torch.no_grad():
        for ih, hh in _bias_names(lstm):
            getattr(lstm, ih)[h : 2 * h] = value
            getattr(lstm, hh)[h : 2 * h] = 0.0
            lines.append(
                f"{name}.{ih}[{h}:{2 * h}] = {value:g}, {name}.{hh}[{h}:{2 * h}] = 0 "
                f"(forget-gate bias {value:g})"
            )
    return lines


def set_forget_bias_(model: nn.Module, value: float = 1.0) -> RemedyReport:
    """Set the forget-gate bias of every ``nn.LSTM`` to ``value`` (sum of the two PyTorch bias
    vectors), in place. Raises ConfigError when the model has no LSTM with biases."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"forget-bias: value={value!r} must be a number; e.g. value=1.0")
    lstms = [(n, m) for n, m in recurrent_modules(model, nn.LSTM) if m.bias]
    if not lstms:
        raise _none_of(model, "forget-bias", "nn.LSTM (with biases)")
    rep = RemedyReport(spec=f"forget-bias(value={float(value):g})")
    for name, lstm in lstms:
        rep.changes += _forget(name, lstm, float(value))
    return rep


def orthogonal_recurrent_(
    model: nn.Module, gain: float = 1.0, *, seed: int | None = None
) -> RemedyReport:
    """Set every hidden-to-hidden gate block ``weight_hh_l*[g*H:(g+1)*H]`` of each
    RNN/LSTM/GRU to a random orthogonal matrix times ``gain``, in place (biases unchanged).
    Raises ConfigError when the model has no recurrent module."""
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or gain <= 0:
        raise ConfigError(f"orthogonal-recurrent: gain={gain!r} must be > 0; e.g. gain=1.0")
    rnns = recurrent_modules(model)
    if not rnns:
        raise _none_of(model, "orthogonal-recurrent", "nn.RNN, nn.LSTM or nn.GRU")
    if seed is not None:
        torch.manual_seed(seed)
    rep = RemedyReport(spec=f"orthogonal-recurrent(gain={float(gain):g})")
    with torch.no_grad():
        for name, rnn in rnns:
            h = rnn.hidden_size
            for pname, w in rnn.named_parameters():
                if not pname.startswith("weight_hh"):
                    continue
                blocks = w.shape[0] // h
                for g in range(blocks):
                    nn.init.orthogonal_(w[g * h : (g + 1) * h], gain=float(gain))
                rep.changes.append(
                    f"{name}.{pname}: {blocks} gate block(s) of {h}x{h} orthogonal x {float(gain):g}"
                )
    return rep


def set_forget_bias(model: nn.Module, value: float = 1.0) -> tuple[nn.Module, RemedyReport]:
    """Non-destructive :func:`set_forget_bias_`: returns ``(copy, report)``."""
    new = maybe_copy(model, inplace=False)
    return new, set_forget_bias_(new, value)


def orthogonal_recurrent(
    model: nn.Module, gain: float = 1.0, *, seed: int | None = None
) -> tuple[nn.Module, RemedyReport]:
    """Non-destructive :func:`orthogonal_recurrent_`: returns ``(copy, report)``."""
    new = maybe_copy(model, inplace=False)
    return new, orthogonal_recurrent_(new, gain, seed=seed)


# ---------------------------------------------------------------------------------------------
# registration


def _has_rnn(model: nn.Module) -> str | None:
    return None if recurrent_modules(model, nn.RNN) else "it has no nn.RNN module"


def _has_lstm_bias(model: nn.Module) -> str | None:
    ok = [m for _, m in recurrent_modules(model, nn.LSTM) if m.bias]
    return None if ok else "it has no nn.LSTM module with biases"


def _has_recurrent(model: nn.Module) -> str | None:
    return None if recurrent_modules(model) else "it has no nn.RNN, nn.LSTM or nn.GRU module"


@remedy("replace-rnn", order=10, applies=_has_rnn)
def _replace_rnn_remedy(
    model: nn.Module, /, to: str = "lstm", forget_bias: float | None = 1.0
) -> tuple[nn.Module, RemedyReport]:
    """replace nn.RNN with nn.LSTM or nn.GRU of the same sizes"""
    return model, replace_rnn_(model, to, forget_bias=forget_bias)


@remedy("orthogonal-recurrent", order=70, applies=_has_recurrent)
def _orthogonal_recurrent_remedy(
    model: nn.Module, /, gain: float = 1.0
) -> tuple[nn.Module, RemedyReport]:
    """orthogonal hidden-to-hidden weights (all singular values = gain)"""
    return model, orthogonal_recurrent_(model, gain)


@remedy("forget-bias", order=80, applies=_has_lstm_bias)
def _forget_bias_remedy(model: nn.Module, /, value: float = 1.0) -> tuple[nn.Module, RemedyReport]:
    """set the LSTM forget-gate bias (sum of PyTorch's two bias vectors)"""
    return model, set_forget_bias_(model, value)
