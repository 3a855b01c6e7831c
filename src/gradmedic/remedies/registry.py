"""The remedy registry: names, parameters, applicability, and :func:`apply` by spec.

A remedy spec is ``name`` or ``name(key=value, ...)`` (the ``str()`` of a
:class:`~gradmedic.diagnosis.findings.Prescription`); several join with ``+``::

    model, report = apply(model, "swap-activation(to=leaky_relu)+reinit(scheme=kaiming)")

Model remedies change (a copy of) the model; training remedies (clippers, ``lower-lr``) leave
it alone and put what the training loop needs in the report (``report.grad_transform``,
``report.lr_factor``); ``fix-loss`` also sets ``report.loss``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradmedic._callspec import _split_top, parse_call
from gradmedic.errors import ConfigError, unknown_name
from gradmedic.nn.activations import is_activation
from gradmedic.remedies.activation import (
    find_functional_activations,
    output_activations,
    swap_activation,
)
from gradmedic.remedies.base import RemedyReport, leaf_modules, maybe_copy, weighted_layers
from gradmedic.remedies.clipping import make_clipper
from gradmedic.remedies.init import find_residual_branches, reinit_, zero_init_residual_
from gradmedic.remedies.loss import final_output_module, fix_loss_
from gradmedic.remedies.recurrent import (
    orthogonal_recurrent_,
    recurrent_modules,
    replace_rnn_,
    set_forget_bias_,
)
from gradmedic.remedies.structure import (
    add_aux_heads,
    add_norm,
    add_residual,
    norm_sites,
    residual_runs,
)

__all__ = [
    "ORDER",
    "REMEDIES",
    "Remedy",
    "applicable",
    "apply",
    "canonical_order",
    "parse_remedy",
    "split_specs",
]


@dataclass(frozen=True)
class Remedy:
    """One registered remedy.

    ``check(model)`` returns ``None`` when the remedy applies, else the reason it does not
    ("it has no nn.RNN module"). ``run(model, params, batch, loss)`` changes ``model`` in
    place (it may return a different module object, e.g. a wrapper) and returns
    ``(model, report)``.
    """

    name: str
    kind: str  # "model" | "training" | "loss"
    params: dict[str, Any]
    summary: str
    check: Callable[[nn.Module], str | None]
    run: Callable[..., tuple[nn.Module, RemedyReport]]
    needs_data: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# applicability checks


def _check_activation(model: nn.Module) -> str | None:
    outs = output_activations(model)
    hidden = [n for n, m in leaf_modules(model) if is_activation(m) and n not in outs]
    if hidden or find_functional_activations(model):
        return None
    return "it has no hidden activation module and no functional activation call in forward"


def _check_weighted(model: nn.Module) -> str | None:
    return None if weighted_layers(model) else "it has no nn.Linear or nn.Conv layer"


def _check_norm(model: nn.Module) -> str | None:
    if norm_sites(model):
        return None
    return "no nn.Sequential holds a Linear/Conv followed by an activation without a norm"


def _check_residual(model: nn.Module) -> str | None:
    if residual_runs(model):
        return None
    return "no nn.Sequential has 2 consecutive same-shape Linear/Conv units to wrap"


def _check_zero_res(model: nn.Module) -> str | None:
    return None if find_residual_branches(model) else "it has no residual block (a .branch)"


def _check_rnn(model: nn.Module) -> str | None:
    return None if recurrent_modules(model, nn.RNN) else "it has no nn.RNN module"


def _check_lstm(model: nn.Module) -> str | None:
    ok = [m for _, m in recurrent_modules(model, nn.LSTM) if m.bias]
    return None if ok else "it has no nn.LSTM module with biases"


def _check_recurrent(model: nn.Module) -> str | None:
    return None if recurrent_modules(model) else "it has no nn.RNN, nn.LSTM or nn.GRU module"


def _check_aux(model: nn.Module) -> str | None:
    if hasattr(model, "aux_heads"):
        return "it already has auxiliary heads"
    n = len(weighted_layers(model))
    return None if n >= 3 else f"it needs at least 3 Linear/Conv layers, found {n}"


def _check_loss(model: nn.Module) -> str | None:
    last = final_output_module(model)
    if last is not None and isinstance(last[1], (nn.Sigmoid, nn.Softmax)):
        return None
    found = type(last[1]).__name__ if last else "nothing"
    return f"its last module is {found}, not a Sigmoid or Softmax to fuse into the loss"


def _always(model: nn.Module) -> str | None:
    return None


# ---------------------------------------------------------------------------------------------
# runners (in place on the given model)


def _run_swap(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    return swap_activation(
        m, p["to"], where=p["where"], slope=p["slope"], alpha=p["alpha"], inplace=True
    )


def _run_reinit(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    rep = reinit_(
        m, p["scheme"], x=batch, mode=p["mode"], sb2=p["sb2"], tol=p["tol"], max_iter=p["max_iter"]
    )
    return m, rep


def _run_norm(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    return add_norm(m, p["kind"], inplace=True)


def _run_residual(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    return add_residual(m, block=p["block"], inplace=True)


def _run_zero(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    return m, zero_init_residual_(m)


def _run_replace(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    return m, replace_rnn_(m, p["to"], forget_bias=p["forget_bias"])


def _run_forget(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    return m, set_forget_bias_(m, p["value"])


def _run_orth(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    return m, orthogonal_recurrent_(m, p["gain"])


def _run_aux(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    return add_aux_heads(m, at=p["at"], weight=p["weight"], inplace=True)


def _run_fix_loss(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    _, rep = fix_loss_(m, loss, p["to"])
    return m, rep


def _clip_runner(name: str) -> Callable[..., Any]:
    def run(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
        args = ",".join(f"{k}={v}" for k, v in p.items() if v is not None)
        clipper = make_clipper(f"{name}({args})")
        rep = RemedyReport(spec=clipper.spec, grad_transform=clipper)  # type: ignore[union-attr]
        rep.changes.append(
            f"training: {clipper.spec} between loss.backward() and optimizer.step() "  # type: ignore[union-attr]
            "(model unchanged)"
        )
        return m, rep

    return run


def _run_lr(m: nn.Module, p: dict[str, Any], batch: Any, loss: Any) -> Any:
    f = p["factor"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not f > 0:
        raise ConfigError(f"lower-lr: factor={f!r} must be a positive number; e.g. factor=0.1")
    rep = RemedyReport(spec=f"lower-lr(factor={float(f):g})", lr_factor=float(f))
    rep.changes.append(f"training: learning rate x {float(f):g} (model unchanged)")
    return m, rep


REMEDIES: dict[str, Remedy] = {
    r.name: r
    for r in [
        Remedy(
            "swap-activation",
            "model",
            {"to": "leaky_relu", "slope": None, "alpha": None, "where": None},
            "replace saturating activations (sigmoid/tanh) by ones that keep a slope",
            _check_activation,
            _run_swap,
        ),
        Remedy(
            "reinit",
            "model",
            {"scheme": "kaiming", "mode": "fan_in", "sb2": 0.0, "tol": 0.1, "max_iter": 10},
            "re-initialise Linear/Conv weights (xavier, kaiming, orthogonal, lsuv, critical)",
            _check_weighted,
            _run_reinit,
        ),
        Remedy(
            "add-norm",
            "model",
            {"kind": "batch"},
            "insert BatchNorm/LayerNorm after each hidden Linear/Conv",
            _check_norm,
            _run_norm,
        ),
        Remedy(
            "add-residual",
            "model",
            {"block": 2},
            "wrap runs of same-shape layers in residual blocks x + F(x)",
            _check_residual,
            _run_residual,
        ),
        Remedy(
            "zero-init-residual",
            "model",
            {},
            "zero the last layer of each residual branch (Fixup/SkipInit)",
            _check_zero_res,
            _run_zero,
        ),
        Remedy(
            "replace-rnn",
            "model",
            {"to": "lstm", "forget_bias": 1.0},
            "replace nn.RNN with nn.LSTM or nn.GRU of the same sizes",
            _check_rnn,
            _run_replace,
        ),
        Remedy(
            "forget-bias",
            "model",
            {"value": 1.0},
            "set the LSTM forget-gate bias (sum of PyTorch's two bias vectors)",
            _check_lstm,
            _run_forget,
        ),
        Remedy(
            "orthogonal-recurrent",
            "model",
            {"gain": 1.0},
            "orthogonal hidden-to-hidden weights (all singular values = gain)",
            _check_recurrent,
            _run_orth,
        ),
        Remedy(
            "add-aux-heads",
            "model",
            {"weight": 0.3, "at": None},
            "auxiliary classifiers on intermediate layers (GoogLeNet), loss weight 0.3",
            _check_aux,
            _run_aux,
        ),
        Remedy(
            "fix-loss",
            "loss",
            {"to": None},
            "fuse a final Sigmoid/Softmax into BCEWithLogitsLoss/CrossEntropyLoss",
            _check_loss,
            _run_fix_loss,
        ),
        Remedy(
            "clip-grad-norm",
            "training",
            {"max_norm": 1.0},
            "clip the global gradient norm (Pascanu et al. 2013)",
            _always,
            _clip_runner("clip-grad-norm"),
        ),
        Remedy(
            "clip-grad-value",
            "training",
            {"clip_value": 1.0},
            "clip every gradient element to [-c, c]",
            _always,
            _clip_runner("clip-grad-value"),
        ),
        Remedy(
            "agc",
            "training",
            {"clip_factor": 0.01, "eps": 1e-3},
            "adaptive unit-wise gradient clipping (Brock et al. 2021)",
            _always,
            _clip_runner("agc"),
        ),
        Remedy(
            "autoclip",
            "training",
            {"percentile": 10},
            "clip to a percentile of the norms seen so far (Seetharaman et al. 2020)",
            _always,
            _clip_runner("autoclip"),
        ),
        Remedy(
            "lower-lr",
            "training",
            {"factor": 0.1},
            "multiply the learning rate by factor",
            _always,
            _run_lr,
        ),
    ]
}
REMEDIES["reinit"].extra["needs_data_for"] = ("lsuv",)

#: Order in which a combination is applied: structure first, then activation, init, heads,
#: loss, training-side remedies.
ORDER: tuple[str, ...] = (
    "replace-rnn",
    "swap-activation",
    "add-residual",
    "add-norm",
    "reinit",
    "zero-init-residual",
    "orthogonal-recurrent",
    "forget-bias",
    "add-aux-heads",
    "fix-loss",
    "clip-grad-norm",
    "clip-grad-value",
    "agc",
    "autoclip",
    "lower-lr",
)


def split_specs(spec: Any) -> list[str]:
    """``"a(x=1)+b"`` -> ``["a(x=1)", "b"]``; lists and Prescriptions are accepted."""
    if isinstance(spec, (list, tuple)):
        return [s for item in spec for s in split_specs(item)]
    text = str(spec).strip()
    if not text:
        raise ConfigError("empty remedy spec; give a remedy name, e.g. reinit(scheme=kaiming)")
    return [p.strip() for p in _split_top(text, "+", "remedy spec") if p.strip()]


def parse_remedy(spec: Any) -> tuple[Remedy, dict[str, Any]]:
    """Look up one remedy spec and bind its parameters (defaults filled in).

    Unknown names raise :func:`~gradmedic.errors.unknown_name`; unknown parameters list the
    valid ones.
    """
    name, args, kwargs = parse_call(str(spec), what="remedy")
    if name not in REMEDIES:
        raise unknown_name("remedy", name, REMEDIES)
    remedy = REMEDIES[name]
    names = list(remedy.params)
    if len(args) > len(names):
        usage = ", ".join(f"{k}=..." for k in names) or "no parameters"
        raise ConfigError(f"remedy '{spec}' takes at most {len(names)} argument(s): {usage}")
    bound = dict(remedy.params)
    bound.update(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in remedy.params:
            raise unknown_name(f"parameter of remedy '{name}'", key, names)
        bound[key] = value
    return remedy, bound


def applicable(model: nn.Module) -> list[str]:
    """Names of the remedies that apply to ``model`` (training remedies always do)."""
    return [name for name, r in REMEDIES.items() if r.check(model) is None]


def canonical_order(specs: Iterable[str]) -> list[str]:
    """Sort remedy specs into :data:`ORDER` (stable within one remedy name)."""
    specs = list(specs)

    def key(s: str) -> int:
        name = parse_call(s, what="remedy")[0]
        return ORDER.index(name) if name in ORDER else len(ORDER)

    return sorted(specs, key=key)


def _batch_input(data_batch: Any) -> torch.Tensor | None:
    if data_batch is None:
        return None
    if isinstance(data_batch, torch.Tensor):
        return data_batch
    if isinstance(data_batch, (tuple, list)) and data_batch:
        first = data_batch[0]
        if isinstance(first, torch.Tensor):
            return first
    raise ConfigError(
        "data_batch must be an input tensor or an (inputs, targets) pair, got "
        f"{type(data_batch).__name__}"
    )


def apply(
    model: nn.Module,
    spec: Any,
    *,
    data_batch: Any = None,
    inplace: bool = False,
    loss: Any = None,
) -> tuple[nn.Module, RemedyReport]:
    """Apply one remedy spec, a ``+``-joined combination, a list of specs or a Prescription.

    Args:
        model: the model; it is deep-copied first unless ``inplace``.
        spec: e.g. ``"reinit(scheme=kaiming)"``, ``"replace-rnn(to=gru)+clip-grad-norm"``.
        data_batch: inputs (or an ``(inputs, targets)`` pair) for data-driven remedies (LSUV).
        inplace: change ``model`` itself (the returned model may still be a new object when a
            remedy wraps or traces the model: always use the returned one).
        loss: the loss in use (spec or module), checked by ``fix-loss``.

    Returns: ``(model to train, report)``; the report also carries ``loss`` (fix-loss),
    ``grad_transform`` (a clipper) and ``lr_factor``.

    Raises ConfigError naming the remedies that do apply when one does not, and
    UnknownNameError for names that do not exist.
    """
    parts = split_specs(spec)
    bound = [parse_remedy(p) for p in parts]  # validate every name before changing anything
    out = maybe_copy(model, inplace)
    x = _batch_input(data_batch)
    report: RemedyReport | None = None
    for remedy, params in bound:
        reason = remedy.check(out)
        if reason is not None:
            valid = applicable(out)
            raise ConfigError(
                f"remedy '{remedy.name}' does not apply to {type(out).__name__}: {reason}; "
                f"remedies that apply: {', '.join(valid)}"
            )
        out, rep = remedy.run(out, params, x, loss)
        if rep.loss is not None:
            loss = rep.loss
        report = rep if report is None else report.merge(rep)
    if report is None:  # split_specs never returns an empty list; kept for type checkers
        raise ConfigError("empty remedy spec; give a remedy name, e.g. reinit(scheme=kaiming)")
    return out, report
