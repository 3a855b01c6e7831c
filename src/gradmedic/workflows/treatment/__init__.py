"""``gradmedic treat``: apply each prescribed remedy to a copy, retrain, compare, pick the best.

A fix is verified, not just suggested. :func:`treat`

1. trains the untreated model for a short, seeded run (the same :class:`~gradmedic.workflows.train.
   TrainConfig`, data order and loss for every candidate) with the Monitor on;
2. diagnoses that run (:func:`gradmedic.diagnose`) and collects its prescriptions,
   plus the combination it recommends (``diagnosis.meta["combination"]`` when given, else the
   first applicable prescription of each finding of severity warning or worse); or takes the
   remedy specs you pass in ``remedies``;
3. for each candidate: deep-copies the untreated model, applies the remedy with
   :func:`gradmedic.remedies.apply` (a clipper goes between backward and the optimizer step, a
   fused loss replaces the loss, ``lower-lr`` scales the learning rate), retrains;
4. measures every run the same way and picks the best by the rule below.

Measurements (one row per candidate):

- ``first_last_signal_ratio``: the backward signal reaching the input end over the signal at
  the output end, ``||dL/dh_1|| / ||dL/dh_L||`` (Monitor's ``signal_out`` of the first and last
  Linear/Conv layer) for feed-forward models, ``||dL/dx_1|| / ||dL/dx_T||`` across time
  (``input_grad_t``) for recurrent ones, at the first step (initialisation: what init and
  architecture remedies act on; ``signal_ratio_median`` is the geometric median over all
  recorded steps). 1 is healthy; 1e-9 is a vanished gradient, 1e+9 an exploded one.
  ``health = |log10 ratio|`` (decades away from 1; lower is better).
- ``saturated_frac`` / ``dead_frac``: mean over activation layers and recorded steps.
- ``nonfinite``: steps whose loss or gradient was NaN/inf.
- ``final_loss``: mean loss over the last 10% of steps; ``time_per_step`` (median, seconds).

Rule for "best" (documented in the output as ``rule``):

1. among candidates with no non-finite step, those that improve gradient health
   (``health`` lower than the untreated model's) *and* reach a lower final loss: the lowest
   final loss;
2. else those that improve gradient health: the lowest final loss;
3. else those with a lower final loss whose health is no worse (by 0.1 decade): the lowest
   final loss;
4. else the untreated model (no remedy helped).

Margins: ``health_gain_decades`` (untreated health minus best health) and ``loss_gain``
(untreated final loss minus best final loss), also as a ratio.

Output folder (``out=``): ``treatment.json`` (everything below), ``best_model.pt`` (the best
candidate's ``state_dict`` after the verification run), ``transform.json`` (the remedy specs,
re-appliable to your own model code with ``gradmedic.remedies.apply(model, spec)``) and
``report.html``.

Example::

    >>> from gradmedic.workflows.treatment import treat
    >>> from gradmedic.workflows.train import TrainConfig
    >>> res = treat("mlp:depth=20,width=32,act=sigmoid", "digits",
    ...             config=TrainConfig(steps=40), remedies=["swap-activation(to=leaky_relu)"])
    >>> res.best
    'swap-activation(to=leaky_relu)'
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradmedic._callspec import parse_call
from gradmedic.errors import ConfigError, GradmedicError
from gradmedic.remedies import REMEDIES, apply, canonical_order, split_specs
from gradmedic.remedies.base import WEIGHTED_TYPES
from gradmedic.remedies.registry import parse_remedy
from gradmedic.workflows.train import BatchSource, TrainConfig, TrainResult, resolve_data, train
from gradmedic.zoo import load_model

__all__ = [
    "BEST_RULE",
    "TreatmentResult",
    "print_treatment",
    "run_metrics",
    "treat",
]

UNTREATED = "untreated"

BEST_RULE = (
    "finite runs only; 1) better gradient health (|log10 first/last signal ratio| lower) and "
    "lower final loss -> lowest final loss; 2) else better health -> lowest final loss; "
    "3) else lower final loss with health no worse (0.1 decade) -> lowest final loss; "
    "4) else untreated"
)


# ---------------------------------------------------------------------------------------------
# measurements


def _weighted_names(trace: Any) -> list[str]:
    mods = trace.modules
    kinds = {c.__name__ for c in WEIGHTED_TYPES}
    names = [
        str(n)
        for n, t in zip(mods["name"], mods["type"], strict=False)
        if str(t) in kinds and "aux_heads" not in str(n)
    ]
    return names


def _series_ratio(trace: Any) -> list[float]:
    """First/last backward-signal ratio at each recorded step (see module docstring)."""
    frame = trace.frame
    rnn = frame[frame["quantity"] == "input_grad_t"]
    if len(rnn):
        first_mod = str(rnn["module"].iloc[0])
        rnn = rnn[rnn["module"] == first_mod]
        out = []
        for _, g in rnn.groupby("step", sort=True):
            g = g.sort_values("idx")
            last = float(g["value"].iloc[-1])
            first = float(g["value"].iloc[0])
            out.append(_ratio(first, last))
        return out
    names = _weighted_names(trace)
    if len(names) < 2:
        return []
    piv = trace.pivot("signal_out")
    if names[0] not in piv.columns or names[-1] not in piv.columns:
        return []
    return [_ratio(float(a), float(b)) for a, b in zip(piv[names[0]], piv[names[-1]], strict=False)]


def _ratio(first: float, last: float) -> float:
    if not (math.isfinite(first) and math.isfinite(last)):
        return math.nan
    if last == 0:
        return math.inf if first > 0 else math.nan
    return first / last


def _log10(r: float) -> float:
    if math.isnan(r):
        return math.nan
    if r == 0:
        return -math.inf
    return math.log10(r) if math.isfinite(r) else math.inf


def _log_health(ratios: list[float]) -> tuple[float, float, float]:
    """(ratio at the first recorded step, geometric median over the recorded steps,
    health = |log10 ratio at the first step|, i.e. decades away from 1 at initialisation)."""
    if not ratios:
        return math.nan, math.nan, math.nan
    logs = [v for v in (_log10(r) for r in ratios) if not math.isnan(v)]
    med = float(np.median(np.asarray(logs))) if logs else math.nan
    median = 10.0**med if math.isfinite(med) else (0.0 if med == -math.inf else math.nan)
    first = _log10(ratios[0])
    return ratios[0], median, abs(first) if not math.isnan(first) else math.inf


def _mean_quantity(trace: Any, name: str) -> float:
    q = trace.quantity(name)
    if q is None or len(q) == 0:
        return math.nan
    vals = q["value"].to_numpy(dtype=float)
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if len(vals) else math.nan


def run_metrics(result: TrainResult) -> dict[str, Any]:
    """The row of measurements for one training run (see the module docstring)."""
    trace = result.trace
    losses = result.losses
    bad_loss = {i for i, v in enumerate(losses) if not math.isfinite(v)}
    bad_steps = set(bad_loss)
    if trace is not None:
        q = trace.quantity("nonfinite")
        if q is not None and len(q):
            bad_steps |= {int(s) for s in q["step"]}
    ratios = _series_ratio(trace) if trace is not None else []
    init, med, health = _log_health(ratios)
    final = result.final_loss
    return {
        "first_last_signal_ratio": init,
        "signal_ratio_median": med,
        "health": health,
        "saturated_frac": _mean_quantity(trace, "saturated_frac") if trace else math.nan,
        "dead_frac": _mean_quantity(trace, "dead_frac") if trace else math.nan,
        "nonfinite": len(bad_steps),
        "final_loss": final if math.isfinite(final) else math.inf,
        "first_loss": losses[0] if losses else math.nan,
        "time_per_step": result.time_per_step,
        "diverged_at": result.diverged_at,
    }


# ---------------------------------------------------------------------------------------------
# result


@dataclass
class TreatmentResult:
    """What :func:`treat` found.

    Attributes:
        rows: one dict per candidate (``untreated`` first): ``name``, ``specs``,
            ``first_last_signal_ratio``, ``signal_ratio_median``, ``health``, ``saturated_frac``,
            ``dead_frac``, ``nonfinite``, ``final_loss``, ``time_per_step``, ``changes``,
            ``error`` (why a candidate could not run, else None).
        best: the name of the chosen candidate (``"untreated"`` when nothing helped).
        diagnosis: the :class:`~gradmedic.diagnosis.findings.Diagnosis` of the untreated run
            (None when the diagnosis module is unavailable).
        margins: ``health_gain_decades``, ``loss_gain``, ``loss_ratio`` of best vs untreated.
        advice: Python lines that apply the chosen treatment to your own model.
        report_path: the HTML report when ``out`` was given.
    """

    rows: list[dict[str, Any]]
    best: str
    diagnosis: Any = None
    margins: dict[str, float] = field(default_factory=dict)
    advice: str = ""
    rule: str = BEST_RULE
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    out: Path | None = None
    report_path: Path | None = None
    models: dict[str, nn.Module] = field(default_factory=dict, repr=False)
    results: dict[str, TrainResult] = field(default_factory=dict, repr=False)
    reports: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def best_row(self) -> dict[str, Any]:
        return next(r for r in self.rows if r["name"] == self.best)

    @property
    def untreated(self) -> dict[str, Any]:
        return self.rows[0]

    def row(self, name: str) -> dict[str, Any]:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise ConfigError(
            f"no candidate '{name}'; candidates: {', '.join(r['name'] for r in self.rows)}"
        )

    @property
    def best_specs(self) -> list[str]:
        return list(self.best_row["specs"])

    def to_dict(self) -> dict[str, Any]:
        diag = self.diagnosis.to_dict() if hasattr(self.diagnosis, "to_dict") else None
        return _jsonable(
            {
                "best": self.best,
                "best_specs": self.best_specs,
                "rule": self.rule,
                "margins": self.margins,
                "rows": self.rows,
                "advice": self.advice,
                "config": self.config,
                "notes": self.notes,
                "diagnosis": diag,
                "report_path": str(self.report_path) if self.report_path else None,
            }
        )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, (np.floating, np.integer)):
        return _jsonable(obj.item())
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


# ---------------------------------------------------------------------------------------------
# prescriptions


def _diagnose(trace: Any, model: nn.Module, loss: Any, notes: list[str]) -> Any:
    try:
        from gradmedic.workflows.checkup import diagnose
    except ImportError:
        notes.append("gradmedic.diagnose is not available; using built-in heuristics")
        return None
    try:
        return diagnose(trace, model=model, loss=loss)
    except GradmedicError:
        raise
    except Exception as exc:  # another module's bug must not hide the treatment results
        notes.append(f"diagnosis failed ({type(exc).__name__}: {exc}); using built-in heuristics")
        return None


def _applies(model: nn.Module, spec: str) -> str | None:
    """None when every part of ``spec`` applies to ``model`` (after the earlier parts)."""
    try:
        apply(model, spec, inplace=False)
    except GradmedicError as exc:
        return str(exc)
    return None


def _fallback_specs(model: nn.Module) -> list[str]:
    """Structure-only prescriptions for when no diagnosis is available."""
    has = {n: REMEDIES[n].check(model) is None for n in REMEDIES}
    types = {type(m) for m in model.modules()}
    specs: list[str] = []
    if has["replace-rnn"]:
        specs += ["replace-rnn(to=lstm)", "orthogonal-recurrent", "clip-grad-norm(max_norm=1.0)"]
    if has["swap-activation"] and types & {nn.Sigmoid, nn.Tanh}:
        specs.append("swap-activation(to=leaky_relu)")
    if has["reinit"] and not has["replace-rnn"]:
        specs.append("reinit(scheme=kaiming)")
    if has["fix-loss"]:
        specs.append("fix-loss")
    return specs


def _prescribed(diagnosis: Any, model: nn.Module) -> tuple[list[str], list[str] | None]:
    """(single specs in order of severity, recommended combination or None)."""
    from gradmedic.diagnosis.findings import severity_rank

    findings = sorted(getattr(diagnosis, "findings", []), key=lambda f: -severity_rank(f.severity))
    singles: list[str] = []
    firsts: list[str] = []
    for f in findings:
        first_taken = False
        for p in f.prescriptions:
            s = str(p)
            if s not in singles:
                singles.append(s)
            if not first_taken and severity_rank(f.severity) >= 1:
                if s not in firsts:
                    firsts.append(s)
                first_taken = True
    meta = getattr(diagnosis, "meta", {}) or {}
    combo = meta.get("combination")
    combo = [str(c) for c in split_specs(combo)] if combo else _compatible(firsts, model)
    return singles, (combo if combo and len(combo) > 1 else None)


def _compatible(specs: list[str], model: nn.Module) -> list[str]:
    """One spec per remedy name, in canonical order, each applicable after the previous."""
    seen: set[str] = set()
    picked: list[str] = []
    for s in canonical_order(specs):
        name = parse_call(s, what="remedy")[0]
        if name in seen:
            continue
        if _applies(model, "+".join([*picked, s])) is None:
            picked.append(s)
            seen.add(name)
    return picked


def _candidates(
    remedies: list[str] | None, diagnosis: Any, model: nn.Module, notes: list[str]
) -> list[tuple[str, list[str]]]:
    if remedies is not None:
        if isinstance(remedies, str):
            remedies = [remedies]
        out = []
        for r in remedies:
            parts = split_specs(r)
            for p in parts:
                parse_remedy(p)  # unknown names fail here, before any training
            out.append(("+".join(parts), parts))
        return out
    if diagnosis is not None:
        singles, combo = _prescribed(diagnosis, model)
    else:
        singles, combo = _fallback_specs(model), None
        combo = _compatible(singles, model)
        combo = combo if len(combo) > 1 else None
    out = []
    for s in singles:
        reason = _applies(model, s)
        if reason is not None:
            notes.append(f"skipped {s}: {reason}")
            continue
        out.append((s, [s]))
    if combo:
        key = "+".join(combo)
        if key not in {n for n, _ in out}:
            out.append((key, list(combo)))
    return out


# ---------------------------------------------------------------------------------------------
# selection


def _choose(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    h0 = base["health"] if not math.isnan(base["health"]) else math.inf
    if base["nonfinite"]:
        h0 = math.inf
    l0 = base["final_loss"]
    ok = [r for r in rows[1:] if r.get("error") is None and r["nonfinite"] == 0]
    ok = [r for r in ok if math.isfinite(r["final_loss"])]

    def health(r: dict[str, Any]) -> float:
        return r["health"] if not math.isnan(r["health"]) else math.inf

    tiers = [
        [r for r in ok if health(r) < h0 and r["final_loss"] < l0],
        [r for r in ok if health(r) < h0],
        [r for r in ok if r["final_loss"] < l0 and health(r) <= h0 + 0.1],
    ]
    for tier in tiers:
        if tier:
            return min(tier, key=lambda r: (r["final_loss"], health(r)))["name"]
    return UNTREATED


def _margins(base: dict[str, Any], best: dict[str, Any]) -> dict[str, float]:
    l0, l1 = base["final_loss"], best["final_loss"]
    return {
        "health_untreated": base["health"],
        "health_best": best["health"],
        "health_gain_decades": base["health"] - best["health"],
        "signal_ratio_untreated": base["first_last_signal_ratio"],
        "signal_ratio_best": best["first_last_signal_ratio"],
        "loss_untreated": l0,
        "loss_best": l1,
        "loss_gain": l0 - l1,
        "loss_ratio": (l1 / l0) if l0 and math.isfinite(l0) else math.nan,
    }


def _advice(best: dict[str, Any], out: Path | None, report: Any) -> str:
    if best["name"] == UNTREATED:
        return (
            "No remedy beat the untreated model in this short run; keep the model as it is, or "
            "try other remedies with --remedy (gradmedic.remedies.applicable(model) lists them)."
        )
    spec = "+".join(best["specs"])
    lines = [
        "# Apply the same transform to your own model code:",
        "import torch",
        "from gradmedic.remedies import apply",
        f'model, report = apply(model, "{spec}", data_batch=(x, y))',
        "print(report)  # exactly what changed",
    ]
    if out is not None:
        lines.append(
            f'model.load_state_dict(torch.load("{out / "best_model.pt"}"))  '
            "# optional: the verified weights"
        )
    if report is not None and report.loss is not None:
        lines.append("loss_fn = report.loss  # fused loss spec: " + str(report.loss))
        fused = {"bce-logits": "torch.nn.BCEWithLogitsLoss()", "ce": "torch.nn.CrossEntropyLoss()"}
        lines.append(f"loss_fn = {fused.get(str(report.loss), str(report.loss))}")
    if report is not None and report.grad_transform is not None:
        lines += [
            "# in the training loop, between backward and the optimizer step:",
            "loss.backward()",
            "report.grad_transform(model.parameters())  # "
            + str(getattr(report.grad_transform, "spec", "")),
            "optimizer.step()",
        ]
    if report is not None and report.lr_factor != 1.0:
        lines.append(f"lr = lr * {report.lr_factor:g}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main entry


def _first_batch(source: BatchSource, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    size = max(cfg.batch_size, 128)
    if source.dataset is not None:
        return source.dataset.fixed_batch(size, seed=cfg.seed + 1)
    return next(source.batches(cfg.batch_size, cfg.seed))


def treat(
    model: str | nn.Module,
    data: Any,
    *,
    loss: Any = None,
    config: TrainConfig | None = None,
    remedies: list[str] | None = None,
    out: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> TreatmentResult:
    """Diagnose, apply each prescription (and the recommended combination) to a copy, retrain
    each the same way, compare and pick the best (see the module docstring for the rule).

    Args:
        model: an ``nn.Module`` (left untouched) or a model spec / ``file.py:factory``.
        data: a data spec (``digits``, ``adding-100``), a Dataset or a BatchSource.
        loss: loss spec or module; default: the data set's own loss.
        config: the short training run (default ``TrainConfig(steps=50)``), the same for all.
        remedies: remedy specs to try instead of the diagnosis' prescriptions (``"a+b"`` is
            one combined candidate).
        out: folder for ``treatment.json``, ``best_model.pt``, ``transform.json`` and
            ``report.html``.
        progress: called with a line of text before each run.

    Raises UnknownNameError for a remedy name that does not exist and ConfigError (listing the
    remedies that apply) for one that does not apply to this model.
    """
    cfg = config or TrainConfig()
    say = progress or (lambda _msg: None)
    source = resolve_data(data, seed=cfg.seed)
    if isinstance(model, str):
        base = load_model(model, source.info, seed=cfg.seed)
        model_name = model
    elif isinstance(model, nn.Module):
        base = copy.deepcopy(model)
        model_name = type(model).__name__
    else:
        raise ConfigError(
            f"model must be an nn.Module or a model spec string, got {type(model).__name__}"
        )
    notes: list[str] = []
    # validate explicit remedies against the model before spending any training time
    if remedies is not None:
        for r in [remedies] if isinstance(remedies, str) else remedies:
            apply(base, r, inplace=False, loss=loss, data_batch=_first_batch(source, cfg))
    say(f"training {UNTREATED} ({cfg.steps} steps)")
    first = copy.deepcopy(base)
    res0 = train(first, source, cfg, loss=loss)
    diagnosis = _diagnose(res0.trace, base, loss, notes)
    cands = _candidates(remedies, diagnosis, base, notes)
    batch = _first_batch(source, cfg)
    row0 = {"name": UNTREATED, "specs": [], "changes": [], "error": None, **run_metrics(res0)}
    rows = [row0]
    models: dict[str, nn.Module] = {UNTREATED: first}
    results: dict[str, TrainResult] = {UNTREATED: res0}
    reports: dict[str, Any] = {}
    for name, specs in cands:
        say(f"training {name}")
        torch.manual_seed(cfg.seed)
        try:
            m, rep = apply(copy.deepcopy(base), specs, data_batch=batch, inplace=True, loss=loss)
        except GradmedicError as exc:
            if remedies is not None:
                raise
            rows.append({"name": name, "specs": specs, "changes": [], "error": str(exc)})
            continue
        cfg_c = dataclasses.replace(cfg, lr=cfg.lr * rep.lr_factor)
        res = train(
            m,
            source,
            cfg_c,
            loss=rep.loss if rep.loss is not None else loss,
            grad_transform=rep.grad_transform,
        )
        rows.append(
            {
                "name": name,
                "specs": specs,
                "changes": list(rep.changes),
                "warnings": list(rep.warnings),
                "error": None,
                **run_metrics(res),
            }
        )
        models[name], results[name], reports[name] = m, res, rep
    for r in rows:  # failed candidates get empty metrics
        for key in row0:
            r.setdefault(key, math.nan)
    best = _choose(rows)
    best_row = next(r for r in rows if r["name"] == best)
    outdir = Path(out) if out is not None else None
    result = TreatmentResult(
        rows=rows,
        best=best,
        diagnosis=diagnosis,
        margins=_margins(row0, best_row),
        advice=_advice(best_row, outdir, reports.get(best)),
        config={
            **cfg.to_dict(),
            "model": model_name,
            "data": str(getattr(source.info, "name", "")),
        },
        notes=notes,
        out=outdir,
        models=models,
        results=results,
        reports=reports,
    )
    if outdir is not None:
        _save(result, outdir)
    return result


# ---------------------------------------------------------------------------------------------
# saving and showing


def _save(result: TreatmentResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    best = result.best
    torch.save(result.models[best].state_dict(), out / "best_model.pt")
    rep = result.reports.get(best)
    transform = {
        "remedies": result.best_specs,
        "spec": "+".join(result.best_specs),
        "loss": getattr(rep, "loss", None),
        "grad_transform": getattr(getattr(rep, "grad_transform", None), "spec", None),
        "lr_factor": getattr(rep, "lr_factor", 1.0),
        "changes": list(getattr(rep, "changes", [])),
        "apply": result.advice,
    }
    (out / "transform.json").write_text(json.dumps(_jsonable(transform), indent=2))
    result.report_path = _write_report(result, out / "report.html")
    (out / "treatment.json").write_text(json.dumps(result.to_dict(), indent=2))


def _table_rows(result: TreatmentResult) -> list[dict[str, Any]]:
    out = []
    for r in result.rows:
        out.append(
            {
                "candidate": r["name"] + (" (best)" if r["name"] == result.best else ""),
                "first/last signal": r.get("first_last_signal_ratio"),
                "health (decades)": r.get("health"),
                "saturated": r.get("saturated_frac"),
                "dead": r.get("dead_frac"),
                "non-finite steps": r.get("nonfinite"),
                "final loss": r.get("final_loss"),
                "ms/step": 1e3 * r["time_per_step"]
                if isinstance(r.get("time_per_step"), float)
                else None,
                "error": r.get("error") or "",
            }
        )
    return out


def _write_report(result: TreatmentResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from gradmedic.report import Report

    cfg = result.config
    rep = Report(
        "gradmedic treatment",
        f"{cfg.get('model')} on {cfg.get('data')}, {cfg.get('steps')} steps, seed {cfg.get('seed')}",
    )
    if result.diagnosis is not None:
        rep.add_findings(result.diagnosis)
    rep.add_heading("Before and after")
    rep.add_table(_table_rows(result), caption="Every candidate trained the same seeded way.")
    rep.add_text(f"Chosen: {result.best}. Rule: {result.rule}.")
    m = result.margins
    rep.add_text(
        f"Margins: gradient health {m['health_untreated']:.3g} -> {m['health_best']:.3g} "
        f"decades from 1 (gain {m['health_gain_decades']:.3g}); final loss "
        f"{m['loss_untreated']:.4g} -> {m['loss_best']:.4g}."
    )
    try:
        from gradmedic.report.figures import treatment_figures

        before = result.results[UNTREATED].trace
        after = {
            k: v.trace for k, v in result.results.items() if k != UNTREATED and v.trace is not None
        }
        if before is not None:
            for fig, caption in treatment_figures(before, after):
                rep.add_figure(fig, caption)
    except ImportError:
        result.notes.append("report figures unavailable (gradmedic.report.figures)")
    rep.add_heading("How to apply it in your code")
    rep.add_text(result.advice)
    best_rep = result.reports.get(result.best)
    if best_rep is not None:
        rep.add_table(
            [{"change": c} for c in best_rep.changes], caption="What the chosen remedy changed"
        )
    for note in result.notes:
        rep.add_text(note)
    return rep.write(path)


def _fmt(v: Any, kind: str = "g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        if kind == "pct":
            return f"{100 * v:.1f}%"
        if kind == "ms":
            return f"{1e3 * v:.2f}"
        return f"{v:.3g}"
    return str(v)


def print_treatment(result: TreatmentResult, console: Any = None) -> None:
    """Print the before/after table, the choice with its margins and the advice (rich)."""
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    table = Table(title="gradmedic treat: before and after", show_lines=False)
    for col in (
        "candidate",
        "first/last signal",
        "|log10| health",
        "saturated",
        "dead",
        "non-finite",
        "final loss",
        "ms/step",
    ):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for r in result.rows:
        name = r["name"]
        style = "bold green" if name == result.best else ("dim" if r.get("error") else None)
        label = f"* {name}" if name == result.best else name
        if r.get("error"):
            table.add_row(label, "-", "-", "-", "-", "-", "-", "-", style=style)
            continue
        table.add_row(
            label,
            _fmt(r["first_last_signal_ratio"]),
            _fmt(r["health"]),
            _fmt(r["saturated_frac"], "pct"),
            _fmt(r["dead_frac"], "pct"),
            str(r["nonfinite"]),
            _fmt(r["final_loss"]),
            _fmt(r["time_per_step"], "ms"),
            style=style,
        )
    con.print(table)
    m = result.margins
    con.print(
        f"best: [bold]{result.best}[/bold]  gradient health {_fmt(m['health_untreated'])} -> "
        f"{_fmt(m['health_best'])} decades from 1, final loss {_fmt(m['loss_untreated'])} -> "
        f"{_fmt(m['loss_best'])}"
    )
    for r in result.rows:
        if r.get("error"):
            con.print(f"[yellow]{r['name']} could not run:[/yellow] {r['error']}")
    for note in result.notes:
        con.print(f"[dim]{note}[/dim]")
    con.print(result.advice, markup=False, highlight=False)
    if result.report_path is not None:
        con.print(f"report: {result.report_path}")
