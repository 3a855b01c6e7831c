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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradmedic.diagnosis.context import Context
from gradmedic.diagnosis.datascale import first_batch_stats
from gradmedic.diagnosis.finding import Diagnosis, Finding, Prescription, severity_rank
from gradmedic.diagnosis.prescribe import init_remedies, keep_applicable, stack_of
from gradmedic.diagnosis.registry import RuleRun, run_rules
from gradmedic.diagnosis.static import static_checks
from gradmedic.diagnosis.table import module_infos
from gradmedic.errors import ConfigError, GradmedicError, ModelError, TraceError
from gradmedic.nn.taxonomy import module_category
from gradmedic.remedies.registry import spec_applies
from gradmedic.theory.gains import init_predictions
from gradmedic.trace import Trace, read_trace
from gradmedic.zoo.build import require_materialised

if TYPE_CHECKING:  # pragma: no cover
    from gradmedic.workflows.train import TrainConfig

__all__ = ["diagnose", "init_findings", "model_infos"]


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
                    # only what theory predicts to work (not xavier alone for deep sigmoid)
                    prescriptions=init_remedies(stack_of(ordered), acts[0].split("(")[0])[0],
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
    sample: torch.Tensor | None = None,
) -> Diagnosis:
    """Diagnose gradient flow: from a trace, or from a model (+ data) by running the Monitor.

    * ``diagnose(trace)`` / ``diagnose("run/trace.sqlite")``: rules over the recorded trace and
      its modules table (init scales, activations, RNN radius): works without the model.
      With ``model=`` also the static checks of its output against the loss: ``loss`` as a
      module, a function or a spec (``"ce"``), by default the trace's ``meta["loss_spec"]``
      (what :func:`~gradmedic.workflows.train.train` used); ``sample`` (an input batch) lets
      them read the output by value.
    * ``diagnose(model=m, data="digits", loss=None, config=None)``: trains a *copy* of ``m``
      with :func:`gradmedic.workflows.train.train` (default ``TrainConfig(steps=20, every=1)``, exact
      RNN time profiles when the model has an RNN), diagnoses the trace, and adds
      :func:`static_checks` of the model's output against the loss. ``model`` may also be a
      zoo spec (``"mlp:depth=30,act=sigmoid"``) when ``data`` is given.
    * ``diagnose(model=m, loss=...)`` without data: static checks and init-time predictions
      (:func:`init_findings`) only.

    Returns a :class:`Diagnosis` whose ``layers`` is :func:`layer_table` at initialisation;
    ``meta["notes"]`` says what training changed to make the data fit (targets reshaped).
    """
    from gradmedic.workflows.train import TrainConfig, resolve_data, train

    if trace_or_path is not None:
        trace = trace_or_path if isinstance(trace_or_path, Trace) else read_trace(trace_or_path)
        _require_records(trace)
        ran, ctx = _diagnose_trace(trace)
        extra: list[Finding] = []
        if isinstance(model, nn.Module):
            named = loss if loss is not None else trace.meta.get("loss_spec")
            extra = static_checks(model, _named_loss(named), sample=sample)
        found = _merge(ran.findings + extra)
        if isinstance(model, nn.Module):  # print only what applies to this model
            found = keep_applicable(found, lambda spec: spec_applies(model, spec))
        return Diagnosis(found, ctx.rows, _meta(ctx), ran.skipped)
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
    require_materialised(model, type(model).__name__)
    if source is None:
        found = static_checks(model, _named_loss(loss)) + init_findings(model)
        infos = model_infos(model)
        return Diagnosis(_merge(found), [], {"source": "model", "modules": len(infos)})
    cfg = config or TrainConfig(steps=20, every=1, rnn_hidden=_has_rnn(model))
    infos = model_infos(model)  # init-time facts, before any update
    static = static_checks(model, _loss_object(loss, source), sample=_sample(source, cfg))
    work = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        stats = {"data_stats": first_batch_stats(source, cfg.batch_size, cfg.seed)}
        run = train(work, source, cfg, loss=loss, trace_path=trace_path, metadata=stats)
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
            "notes": run.notes,
        },
    )
    found = keep_applicable(_merge(ran.findings + static), lambda s: spec_applies(model, s))
    return Diagnosis(found, ctx.rows, meta, ran.skipped)


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


def _named_loss(loss: Any) -> Any:
    """A loss spec resolved to the module it names (the static checks judge the module); a
    module or function as it is; None when a spec cannot be built here."""
    if not isinstance(loss, str):
        return loss
    from gradmedic.zoo import make_loss

    try:
        return make_loss(loss)
    except GradmedicError:
        return None


def _loss_object(loss: Any, source: Any) -> Any:
    """The loss module the run will use (resolving names the way ``train`` does)."""
    from gradmedic.zoo import loss_for, make_loss

    info = source.info
    if isinstance(loss, str):
        return loss_for(info, loss) if info.task == "seq-classification" else make_loss(loss)
    if loss is None:
        return loss_for(info)
    return loss


def _sample(source: Any, cfg: TrainConfig) -> torch.Tensor | None:
    """The input of the first batch (for the static checks), or None when it cannot be had."""
    try:
        return next(source.batches(min(cfg.batch_size, 64), cfg.seed))[0]
    except Exception:
        return None
