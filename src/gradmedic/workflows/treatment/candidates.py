"""Which remedies ``treat`` tries: the diagnosis' prescriptions, or the ones you name.

- With ``remedies`` given, each entry is one candidate (``"a+b"`` is one combined candidate);
  unknown names fail before any training.
- Otherwise the untreated run is diagnosed (:func:`gradmedic.workflows.checkup.diagnose`) and
  every prescription that applies to the model is a candidate, worst finding first
  (prescriptions that do not apply are skipped with a note), plus the combination the
  diagnosis recommends (``diagnosis.meta["combination"]``), or else the first applicable
  prescription of each finding of severity warning or worse, one per remedy, in the
  remedies' canonical order.
- Without a diagnosis (it failed), structure-only heuristics pick them
  (:func:`fallback_specs`).

Example::

    >>> candidates(["reinit(scheme=kaiming)", "add-norm+reinit"], None, model, [])  # doctest: +SKIP
    [('reinit(scheme=kaiming)', ['reinit(scheme=kaiming)']),
     ('add-norm+reinit', ['add-norm', 'reinit'])]
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gradmedic._callspec import parse_call
from gradmedic.diagnosis import severity_rank
from gradmedic.errors import GradmedicError
from gradmedic.remedies import REMEDIES, apply, canonical_order, parse_remedy, split_specs
from gradmedic.workflows.checkup import diagnose

__all__ = [
    "applies",
    "candidates",
    "compatible",
    "diagnose_untreated",
    "fallback_specs",
    "prescribed",
]


def diagnose_untreated(trace: Any, model: nn.Module, loss: Any, notes: list[str]) -> Any:
    """The diagnosis of the untreated run, or None (with a note) when the diagnosis itself
    fails on something other than bad input; GradmedicError propagates."""
    try:
        return diagnose(trace, model=model, loss=loss)
    except GradmedicError:
        raise
    except Exception as exc:  # another module's bug must not hide the treatment results
        notes.append(f"diagnosis failed ({type(exc).__name__}: {exc}); using built-in heuristics")
        return None


def applies(model: nn.Module, spec: str) -> str | None:
    """None when every part of ``spec`` applies to ``model`` (after the earlier parts), else
    the reason it does not."""
    try:
        apply(model, spec, inplace=False)
    except GradmedicError as exc:
        return str(exc)
    return None


def fallback_specs(model: nn.Module) -> list[str]:
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


def compatible(specs: list[str], model: nn.Module) -> list[str]:
    """One spec per remedy name, in canonical order, each applicable after the previous."""
    seen: set[str] = set()
    picked: list[str] = []
    for s in canonical_order(specs):
        name = parse_call(s, what="remedy")[0]
        if name in seen:
            continue
        if applies(model, "+".join([*picked, s])) is None:
            picked.append(s)
            seen.add(name)
    return picked


def prescribed(diagnosis: Any, model: nn.Module) -> tuple[list[str], list[str] | None]:
    """(single specs in order of severity, recommended combination or None)."""
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
    combo = (getattr(diagnosis, "meta", {}) or {}).get("combination")
    combo = [str(c) for c in split_specs(combo)] if combo else compatible(firsts, model)
    return singles, (combo if combo and len(combo) > 1 else None)


def candidates(
    remedies: list[str] | str | None, diagnosis: Any, model: nn.Module, notes: list[str]
) -> list[tuple[str, list[str]]]:
    """``(name, specs)`` of every candidate to train (see the module docstring).

    Raises UnknownNameError / ConfigError for a bad name or parameter in ``remedies``.
    """
    if remedies is not None:
        out = []
        for r in [remedies] if isinstance(remedies, str) else remedies:
            parts = split_specs(r)
            for p in parts:
                parse_remedy(p)  # unknown names fail here, before any training
            out.append(("+".join(parts), parts))
        return out
    if diagnosis is not None:
        singles, combo = prescribed(diagnosis, model)
    else:
        singles = fallback_specs(model)
        combo = compatible(singles, model)
        combo = combo if len(combo) > 1 else None
    out = []
    for s in singles:
        reason = applies(model, s)
        if reason is not None:
            notes.append(f"skipped {s}: {reason}")
            continue
        out.append((s, [s]))
    if combo:
        key = "+".join(combo)
        if key not in {n for n, _ in out}:
            out.append((key, list(combo)))
    return out
