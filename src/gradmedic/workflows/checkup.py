"""``diagnose``: from a trace, or from a model and data (running a short monitored training).

Example::

    >>> from gradmedic import diagnose
    >>> d = diagnose(model=build_model("mlp:depth=20,act=sigmoid", info), data="digits")  # doctest: +SKIP
    >>> d.slugs()                                                                       # doctest: +SKIP
    ['vanishing-gradient', 'poor-init']
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.finding import Diagnosis, Finding, Prescription, severity_rank
from gradmedic.diagnosis.registry import RuleRun, run_rules
from gradmedic.diagnosis.static import static_checks
from gradmedic.diagnosis.table import module_infos
from gradmedic.errors import ConfigError, ModelError, TraceError
from gradmedic.nn.taxonomy import module_category
from gradmedic.theory.gains import init_predictions
from gradmedic.trace import Trace, read_trace

if TYPE_CHECKING:  # pragma: no cover
    from gradmedic.workflows.train import TrainConfig

__all__ = ["Checkup", "diagnose", "init_findings", "model_infos", "run_checkup"]


def model_infos(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Module facts (type, activation, sw2, sb2, RNN radius, ...) of ``model`` as it is now,
    in the same form as a trace's modules table."""
    from gradmedic.monitor import Monitor

    return module_infos(Monitor(model).trace())


def _has_rnn(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.RNN, nn.LSTM, nn.GRU)) for m in model.modules())


def init_findings(model: nn.Module) -> list[Finding]:
    """Init-time predictions from the model alone (no data): poor-init when mean-field theory
    predicts the plain stack's signal ratio beyond 1e-3 / 1e3 (warning for ``nn.Sequential``,
    whose layer order is the forward order; info otherwise), and Pascanu's bound for vanilla
    RNNs (info)."""
    infos = model_infos(model)
    ordered = sorted(infos.items(), key=lambda kv: kv[1].get("ord", 0))
    pred = init_predictions([{"name": n, **i} for n, i in ordered], module_category)
    out: list[Finding] = []
    if pred.ratio is not None and pred.log10_ratio is not None and not pred.normalised:
        lg = pred.log10_ratio
        if abs(lg) >= 3:
            sev = "warning" if isinstance(model, nn.Sequential) else "info"
            vanish = lg < 0
            acts = sorted({p.act_spec for p in pred.pairs})
            crits = [p.critical_sw2 for p in pred.pairs if p.critical_sw2 is not None]
            sw2 = sorted(p.sw2 for p in pred.pairs)[len(pred.pairs) // 2]
            out.append(
                Finding(
                    slug="poor-init",
                    severity=sev,
                    title="Initialisation predicts "
                    + ("vanishing" if vanish else "exploding")
                    + f" gradients (10^{lg:.1f} over {len(pred.pairs)} layers)",
                    cause=(
                        f"Mean-field theory puts this stack at chi1 = "
                        f"{pred.pairs[len(pred.pairs) // 2].chi1:.3g} per layer "
                        f"(sigma_w^2 = {sw2:.3g}"
                        + (f", critical {sorted(crits)[len(crits) // 2]:.3g}" if crits else "")
                        + f"), so the backward signal changes by 10^{lg:.1f} end to end."
                    ),
                    layers=[p.weight for p in pred.pairs],
                    evidence={
                        "basis": "theory (no data)",
                        "predicted_log10_ratio": round(lg, 3),
                        "activation": acts[0] if len(acts) == 1 else acts,
                        "sigma_w2_median": round(sw2, 4),
                        "chi1_median": round(pred.pairs[len(pred.pairs) // 2].chi1, 4),
                    },
                    prescriptions=[
                        Prescription(
                            "reinit",
                            {"scheme": "kaiming" if "relu" in acts[0] else "xavier"},
                            "critical weight scale",
                        )
                    ],
                )
            )
    for name, info in ordered:
        if info.get("type") == "RNN" and info.get("whh_sigma_max") is not None:
            lam = float(info["whh_sigma_max"])
            if lam > 1.0 or lam < 1.0:
                verdict = "vanishing-sufficient" if lam < 1 else "exploding-possible"
                out.append(
                    Finding(
                        slug="rnn-exploding" if lam > 1 else "rnn-long-range-vanishing",
                        severity="info",
                        title=f"Pascanu bound for '{name}': {verdict}",
                        cause=(
                            f"The largest singular value of W_hh is {lam:.3g} "
                            + (
                                "< 1/gamma = 1: sufficient for vanishing gradients over time."
                                if lam < 1
                                else "> 1/gamma = 1: necessary (not sufficient) for exploding ones."
                            )
                        ),
                        layers=[name],
                        evidence={
                            "pascanu_lambda1": round(lam, 4),
                            "pascanu_verdict": verdict,
                            "basis": "theory (no data)",
                        },
                        prescriptions=[
                            Prescription("clip-grad-norm", {"max_norm": 1.0})
                            if lam > 1
                            else Prescription("replace-rnn", {"to": "lstm"})
                        ],
                    )
                )
    return out


def _diagnose_trace(
    trace: Trace, infos: dict[str, dict[str, Any]] | None = None
) -> tuple[RuleRun, Context]:
    ctx = Context.build(trace, infos)
    return run_rules(ctx), ctx


def _meta(ctx: Context, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    e = ctx.e2e
    meta: dict[str, Any] = {
        "source": "trace",
        "layers_step": ctx.steps[0] if ctx.steps else None,
        "steps_recorded": len(ctx.trace.steps),
        "lr": ctx.lr,
        "optimizer": ctx.optimizer,
    }
    if e is not None:
        meta["end_to_end"] = {
            "first": e.first,
            "last": e.last,
            "ratio": e.ratio if math.isfinite(e.ratio) else str(e.ratio),
            "layers_crossed": e.crossings,
            "gain_product": e.gain_product,
            "plain_chain": e.chain,
        }
    meta.update(extra or {})
    return meta


def _merge(findings: list[Finding]) -> list[Finding]:
    """Sort worst first; drop exact duplicates (same slug and layers)."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out = []
    for f in sorted(findings, key=lambda f: -severity_rank(f.severity)):
        key = (f.slug, tuple(f.layers))
        if key in seen:
            continue
        seen.add(key)
        out.append(f)
    return out


def diagnose(
    trace_or_path: Trace | str | Path | None = None,
    *,
    model: nn.Module | str | None = None,
    loss: Any = None,
    data: Any = None,
    config: Any = None,
    trace_path: str | Path | None = None,
) -> Diagnosis:
    """Diagnose gradient flow: from a trace, or from a model (+ data) by running the Monitor.

    * ``diagnose(trace)`` / ``diagnose("run/trace.sqlite")``: rules over the recorded trace and
      its modules table (init scales, activations, RNN radius): works without the model.
    * ``diagnose(model=m, data="digits", loss=None, config=None)``: trains a *copy* of ``m``
      with :func:`gradmedic.workflows.train.train` (default ``TrainConfig(steps=20, every=1)``, exact
      RNN time profiles when the model has an RNN), diagnoses the trace, and adds
      :func:`static_checks` of the model's output against the loss. ``model`` may also be a
      zoo spec (``"mlp:depth=30,act=sigmoid"``) when ``data`` is given.
    * ``diagnose(model=m, loss=...)`` without data: static checks and init-time predictions
      (:func:`init_findings`) only.

    Returns a :class:`Diagnosis` whose ``layers`` is :func:`layer_table` at initialisation.
    """
    from gradmedic.workflows.train import TrainConfig, resolve_data, train

    if trace_or_path is not None:
        trace = trace_or_path if isinstance(trace_or_path, Trace) else read_trace(trace_or_path)
        _require_records(trace)
        ran, ctx = _diagnose_trace(trace)
        extra: list[Finding] = []
        if isinstance(model, nn.Module):
            extra = static_checks(model, loss)
        return Diagnosis(_merge(ran.findings + extra), ctx.rows, _meta(ctx), ran.skipped)
    if model is None:
        raise ConfigError(
            "diagnose needs a trace (path or Trace) or a model; e.g. diagnose('run/trace.sqlite')"
            " or diagnose(model=my_model, data='digits')"
        )
    source = None
    if data is not None:
        source = resolve_data(data, seed=getattr(config, "seed", 0) or 0)
    if isinstance(model, str):
        if source is None:
            raise ConfigError(
                f"model spec '{model}' needs data to be built; pass data='digits' or a module"
            )
        from gradmedic.zoo import load_model

        model = load_model(model, source.info, seed=getattr(config, "seed", 0) or 0)
    if not isinstance(model, nn.Module):
        raise ModelError(f"diagnose needs a torch.nn.Module as model, got {type(model).__name__}")
    if source is None:
        found = static_checks(model, loss) + init_findings(model)
        infos = model_infos(model)
        return Diagnosis(_merge(found), [], {"source": "model", "modules": len(infos)})
    cfg = config or TrainConfig(steps=20, every=1, rnn_hidden=_has_rnn(model))
    infos = model_infos(model)  # init-time facts, before any update
    sample = None
    try:
        sample = next(source.batches(min(cfg.batch_size, 64), cfg.seed))[0]
    except Exception:
        sample = None
    static = static_checks(model, _loss_object(loss, source), sample=sample)
    work = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        run = train(work, source, cfg, loss=loss, trace_path=trace_path)
    if run.trace is None:
        return Diagnosis(_merge(static), [], {"source": "model+data"})
    _require_records(run.trace)
    ran, ctx = _diagnose_trace(run.trace, infos)
    meta = _meta(
        ctx,
        {
            "source": "model+data",
            "final_loss": run.final_loss,  # NaN/inf encoded at output (gradmedic._json)
            "diverged_at": run.diverged_at,
            "train_config": cfg.to_dict(),
        },
    )
    return Diagnosis(_merge(ran.findings + static), ctx.rows, meta, ran.skipped)


def _require_records(trace: Trace) -> None:
    """A trace with no recorded gradient says nothing: refuse rather than call it healthy."""
    f = trace.frame
    gradients = {"grad_norm", "grad_norm_total", "signal_out", "input_grad_t"}
    if f.empty or not f["quantity"].isin(gradients).any():
        where = f" {trace.path}" if trace.path else ""
        raise TraceError(
            f"the trace{where} holds no recorded step with gradients, so there is nothing to "
            "diagnose; record at least one step (e.g. Monitor(every=1) or --every 1) and run "
            "training past backward()"
        )


def _loss_object(loss: Any, source: Any) -> Any:
    """The loss module the run will use (resolving names the way ``train`` does)."""
    from gradmedic.zoo import loss_for, make_loss

    info = source.info
    if isinstance(loss, str):
        return loss_for(info, loss) if info.task == "seq-classification" else make_loss(loss)
    if loss is None:
        return loss_for(info)
    return loss


@dataclass
class Checkup:
    """What :func:`run_checkup` produced: the diagnosis, the trace it rests on (saved at
    ``trace_path``), the per-step training losses and their :attr:`final_loss`, the effective
    training config, and ``report``: where the caller wrote an HTML report (None until then)."""

    diagnosis: Diagnosis
    trace: Trace
    trace_path: Path
    losses: list[float]
    final_loss: float
    config: TrainConfig
    report: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The diagnosis's dict with ``trace``, ``report``, ``losses`` and ``config`` added."""
        payload = self.diagnosis.to_dict()
        payload.update(
            trace=str(self.trace_path),
            report=str(self.report) if self.report else None,
            losses=self.losses,
            config=self.config.to_dict(),
        )
        return payload


def run_checkup(
    model: str,
    data: str,
    *,
    loss: str | None = None,
    config: TrainConfig | None = None,
    out: str | Path = "gradmedic-out",
    progress: Callable[[int, float], None] | None = None,
) -> Checkup:
    """Build ``model`` (a zoo spec or ``file.py:factory``) for ``data`` (a data spec or
    ``file.py:factory``), train it with ``config`` (default 20 steps, every step recorded; exact
    RNN time profiles when the model has an RNN) while the Monitor writes
    ``out/trace.sqlite``, and diagnose the trace, the trained model and the loss: what
    ``gradmedic diagnose`` does before it prints. ``progress(step, loss)`` is called after
    each step. The trace's metadata names the three specs (``loss`` default: the data's own).

    Raises UnknownNameError / ConfigError for bad specs, DataError when the model does not fit
    the data, ModelError for a bad factory, and OSError when ``out`` cannot be created.

    Example::

        >>> run = run_checkup("mlp:depth=30,act=sigmoid", "digits", out="run")  # doctest: +SKIP
        >>> run.diagnosis.slugs()[0], run.trace_path                           # doctest: +SKIP
        ('vanishing-gradient', PosixPath('run/trace.sqlite'))
    """
    from gradmedic.workflows.train import TrainConfig, resolve_data, train
    from gradmedic.zoo import load_model, loss_for

    cfg = config or TrainConfig(steps=20, every=1)
    source = resolve_data(data, seed=cfg.seed)
    net = load_model(model, source.info, seed=cfg.seed)
    cfg = replace(cfg, rnn_hidden=_has_rnn(net))
    loss_fn = loss_for(source.info, loss)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trace_path = out / "trace.sqlite"
    meta = {"model_spec": model, "data_spec": data, "loss_spec": loss or source.info.default_loss}
    run = train(
        net, source, cfg, loss=loss_fn, trace_path=trace_path, progress=progress, metadata=meta
    )
    if run.trace is None:  # pragma: no cover - train always monitors here
        raise TraceError(f"training {model} on {data} recorded no trace")
    result = diagnose(run.trace, model=net, loss=loss_fn)
    return Checkup(result, run.trace, trace_path, run.losses, run.final_loss, cfg)
