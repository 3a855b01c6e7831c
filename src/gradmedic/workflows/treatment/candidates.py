"""Which remedies ``treat`` tries: the diagnosis' prescriptions, or the ones you name.

- With ``remedies`` given, each entry is one candidate (``"a+b"`` is one combined candidate),
  tried exactly as written; unknown names fail before any training.
- Otherwise the untreated run is diagnosed (:func:`gradmedic.workflows.checkup.diagnose`) and
  every prescription gradmedic can apply is a candidate, worst finding first, plus one
  combination: the diagnosis' own, or else the first prescription of each finding of severity
  warning or worse, one per remedy, in the remedies' canonical order.
- Without a diagnosis (it failed), structure-only heuristics pick them (:func:`fallback_specs`).

Candidates that do not apply are never generated: a prescription whose remedy is not in
:func:`gradmedic.remedies.applicable` for the model, or that fails when applied to a copy
(forget-bias without a forget gate, a swap in a model without activation modules), is left out
with a note; so are ``manual`` prescriptions (changes to the user's code or data). Every
generated candidate that swaps an activation carries the init theory makes critical for the
new activation (:func:`~gradmedic.workflows.treatment.pairing.consistent`).

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
from gradmedic.remedies import (
    REMEDIES,
    applicable,
    apply,
    canonical_order,
    parse_remedy,
    split_specs,
)
from gradmedic.workflows.checkup import diagnose
from gradmedic.workflows.treatment.pairing import consistent

__all__ = [
    "applies",
    "candidates",
    "compatible",
    "diagnose_untreated",
    "fallback_specs",
    "prescribed",
]


def diagnose_untreated(
    trace: Any, model: nn.Module, loss: Any, notes: list[str], sample: Any = None
) -> Any:
    """The diagnosis of the untreated run (its static checks read the model's output on the
    input batch ``sample``), or None (with a note) when the diagnosis itself fails on
    something other than bad input; GradmedicError propagates."""
    try:
        return diagnose(trace, model=model, loss=loss, sample=sample)
    except GradmedicError:
        raise
    except Exception as exc:  # another module's bug must not hide the treatment results
        notes.append(f"diagnosis failed ({type(exc).__name__}: {exc}); using built-in heuristics")
        return None


def _names(spec: str) -> list[str]:
    return [parse_call(s, what="remedy")[0] for s in split_specs(spec)]


def applies(model: nn.Module, spec: str, batch: Any = None, loss: Any = None) -> str | None:
    """None when every part of ``spec`` applies to ``model`` (after the earlier parts), else
    the reason it does not."""
    first = _names(spec)[0]
    if first not in REMEDIES:
        return f"unknown remedy '{first}'"
    if first not in applicable(model):
        return f"{first} does not apply to {type(model).__name__} ({REMEDIES[first].check(model)})"
    try:
        apply(model, spec, inplace=False, data_batch=batch, loss=loss)
    except GradmedicError as exc:
        return str(exc)
    return None


def fallback_specs(model: nn.Module) -> list[str]:
    """Structure-only prescriptions for when no diagnosis is available."""
    has = set(applicable(model))
    types = {type(m) for m in model.modules()}
    specs: list[str] = []
    if "replace-rnn" in has:
        specs += ["replace-rnn(to=lstm)", "orthogonal-recurrent", "clip-grad-norm(max_norm=1.0)"]
    if "swap-activation" in has and types & {nn.Sigmoid, nn.Tanh}:
        specs.append("swap-activation(to=leaky_relu)")
    if "reinit" in has and "replace-rnn" not in has:
        specs.append("reinit(scheme=kaiming)")
    if "fix-loss" in has:
        specs.append("fix-loss")
    return specs


def compatible(specs: list[str], model: nn.Module, batch: Any = None) -> list[str]:
    """One spec per remedy name, in canonical order, each applicable after the previous."""
    seen: set[str] = set()
    picked: list[str] = []
    for s in canonical_order(specs):
        name = _names(s)[0]
        if name in seen:
            continue
        if applies(model, "+".join([*picked, s]), batch) is None:
            picked.append(s)
            seen.add(name)
    return picked


def prescribed(diagnosis: Any, model: nn.Module) -> tuple[list[str], list[str] | None]:
    """(specs in order of severity, recommended combination or None); ``manual``
    prescriptions are left out."""
    findings = sorted(getattr(diagnosis, "findings", []), key=lambda f: -severity_rank(f.severity))
    singles: list[str] = []
    firsts: list[str] = []
    for f in findings:
        first_taken = False
        for p in f.prescriptions:
            if getattr(p, "manual", False):
                continue
            s = str(p)
            if s not in singles:
                singles.append(s)
            if not first_taken and severity_rank(f.severity) >= 1:
                firsts += [x for x in split_specs(s) if x not in firsts]
                first_taken = True
    combo = (getattr(diagnosis, "meta", {}) or {}).get("combination")
    combo = [str(c) for c in split_specs(combo)] if combo else compatible(firsts, model)
    return singles, (combo if combo and len(combo) > 1 else None)


def candidates(
    remedies: list[str] | str | None,
    diagnosis: Any,
    model: nn.Module,
    notes: list[str],
    batch: Any = None,
    loss: Any = None,
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
        combo = compatible(singles, model, batch)
        combo = combo if len(combo) > 1 else None
    wanted = [*singles, "+".join(combo)] if combo else singles
    out: list[tuple[str, list[str]]] = []
    for s in wanted:
        reason = applies(model, s, batch, loss)
        if reason is not None:
            notes.append(f"not generated: {s}: {reason}")
            continue
        specs = consistent(split_specs(s), model)
        key = "+".join(specs)
        if key != s:
            notes.append(f"{s} -> {key}: the init theory makes critical for the new activation")
        if key not in {n for n, _ in out}:
            out.append((key, specs))
    return out
