"""The rule registry: every diagnosis rule, the slugs it can emit and the quantities it needs.

A rule is a function registered with :func:`rule`. Trace rules (``kind="trace"``, the default)
take a :class:`~gradmedic.diagnosis.context.Context` and return a list of
:class:`~gradmedic.diagnosis.finding.Finding`; :func:`run_rules` runs them all, in ``priority``
order, skipping (and saying so) any rule whose required quantities the trace does not hold.
Static checks (``kind="static"``, :func:`gradmedic.diagnosis.static.static_checks`) look at a
model and its loss instead of a trace; they are registered so that their slugs are known too.

The public slug list, :data:`gradmedic.diagnosis.SLUGS`, is :func:`slugs`: what the registered
rules declare, in priority order, each slug once. Importing :mod:`gradmedic.diagnosis`
registers every rule (its ``__init__`` imports the rules package and the static checks).

Example::

    >>> from gradmedic.trace.schema import Quantity
    >>> @rule(slug="my-check", requires=(Quantity.GAIN,), priority=99, register=False)
    ... def rule_mine(ctx):
    ...     return []
    >>> rule_mine.rule.slugs, [str(q) for q in rule_mine.rule.requires]
    (('my-check',), ['gain'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gradmedic.diagnosis.finding import Finding, severity_rank
from gradmedic.errors import ConfigError
from gradmedic.nn.taxonomy import module_category
from gradmedic.trace.schema import Quantity

if TYPE_CHECKING:  # pragma: no cover
    from gradmedic.diagnosis.context import Context

__all__ = ["Requirement", "Rule", "RuleRun", "missing", "registered", "rule", "run_rules", "slugs"]

#: One requirement: a quantity, or a tuple of quantities of which any one will do.
Requirement = Quantity | tuple[Quantity, ...]

KINDS = ("trace", "static")


@dataclass(frozen=True)
class Rule:
    """A registered rule: ``name`` (the function's name), the ``slugs`` it may emit, the
    quantities it ``requires`` (each a :class:`Quantity`, or a tuple meaning any one of them),
    its ``kind`` (``trace`` or ``static``), its ``priority`` (lower runs first; among findings
    of equal severity, earlier rules' come first) and the function itself."""

    name: str
    slugs: tuple[str, ...]
    requires: tuple[Requirement, ...]
    kind: str
    priority: int
    fn: Callable[..., list[Finding]] = field(repr=False, compare=False)
    applies_to: tuple[str, ...] = ()


@dataclass
class RuleRun:
    """What :func:`run_rules` returns: the ``findings`` (worst first) and the ``skipped`` rules
    as ``(rule name, reason)``."""

    findings: list[Finding]
    skipped: list[tuple[str, str]] = field(default_factory=list)


_RULES: dict[str, Rule] = {}


def _where(fn: Callable[..., Any]) -> tuple[str, str]:
    return fn.__module__, fn.__qualname__


def rule(
    *,
    slug: str | None = None,
    slugs: Iterable[str] = (),
    requires: Iterable[Requirement] = (),
    kind: str = "trace",
    priority: int = 50,
    applies_to: Iterable[str] = (),
    register: bool = True,
) -> Callable[[Callable[..., list[Finding]]], Callable[..., list[Finding]]]:
    """Register the decorated function as a rule emitting ``slug`` (or each of ``slugs``).

    ``requires``: quantities the trace must hold for the rule to say anything (a tuple inside
    means any one of them); without them :func:`run_rules` skips the rule and reports why.
    ``applies_to``: module categories (:func:`gradmedic.nn.taxonomy.module_category`, e.g.
    ``("recurrent",)``) the rule is about; on a model with none of them the rule does not
    apply and is neither run nor reported as skipped.
    The function is returned unchanged, with its :class:`Rule` as ``fn.rule``.
    ``register=False`` builds the :class:`Rule` without adding it to the registry (for tests).

    Raises :class:`~gradmedic.errors.ConfigError` for no slug, an unknown ``kind``, a
    requirement that is not a :class:`Quantity`, or a name registered twice.
    """
    names = ((slug,) if slug else ()) + tuple(slugs)
    if not names:
        raise ConfigError("a rule must declare the slug(s) it emits: rule(slug=...)")
    if kind not in KINDS:
        raise ConfigError(f"unknown rule kind '{kind}'; use one of: {', '.join(KINDS)}")
    reqs = tuple(requires)
    for r in reqs:
        group = r if isinstance(r, tuple) else (r,)
        if not group or not all(isinstance(q, Quantity) for q in group):
            raise ConfigError(f"rule requirements must be Quantity members, got {r!r}")

    def deco(fn: Callable[..., list[Finding]]) -> Callable[..., list[Finding]]:
        r = Rule(fn.__name__, names, reqs, kind, priority, fn, tuple(applies_to))
        if register:
            old = _RULES.get(fn.__name__)
            # The same function registered again (its module reloaded) replaces itself.
            if old is not None and _where(old.fn) != _where(fn):
                raise ConfigError(
                    f"a rule named '{fn.__name__}' is already registered (in {old.fn.__module__})"
                )
            _RULES[fn.__name__] = r
        fn.rule = r  # type: ignore[attr-defined]
        return fn

    return deco


def registered(kind: str | None = None) -> list[Rule]:
    """The registered rules (of ``kind`` when given), in priority then registration order."""
    rules = [r for r in _RULES.values() if kind is None or r.kind == kind]
    return sorted(rules, key=lambda r: r.priority)


def slugs() -> tuple[str, ...]:
    """Every slug a registered rule may emit, each once, in rule priority order.

    >>> import gradmedic.diagnosis  # registers the rules
    >>> "vanishing-gradient" in slugs()
    True
    """
    out: dict[str, None] = {}
    for r in registered():
        out.update(dict.fromkeys(r.slugs))
    return tuple(out)


def missing(r: Rule, present: Any) -> str | None:
    """Why ``r`` cannot run on a trace holding the quantities ``present`` (a container of
    quantity names), or None when it can."""
    for req in r.requires:
        group = req if isinstance(req, tuple) else (req,)
        if not any(q.value in present for q in group):
            names = " or ".join(f"'{q.value}'" for q in group)
            meaning = "; ".join(q.meaning for q in group)  # type: ignore[attr-defined]
            return f"the trace has no {names} rows ({meaning})"
    return None


def run_rules(ctx: Context) -> RuleRun:
    """Run every registered trace rule on ``ctx``; findings sorted by severity (worst first),
    then rule priority. A rule whose required quantities are absent from the trace is not
    run: it is listed in ``skipped`` with the reason.

    Raises :class:`~gradmedic.errors.ConfigError` when a rule emits a slug it did not declare
    (the registry, and :data:`gradmedic.diagnosis.SLUGS`, would be wrong).

    Example::

        >>> run = run_rules(Context.build(trace))               # doctest: +SKIP
        >>> run.skipped                                          # doctest: +SKIP
        [('rule_rnn', "the trace has no 'hidden_grad_t' or 'input_grad_t' rows (...)")]
    """
    found: list[Finding] = []
    skipped: list[tuple[str, str]] = []
    categories = {row.get("category") for row in ctx.rows} | {
        module_category(info) for info in ctx.infos.values()
    }
    for r in registered("trace"):
        if r.applies_to and not categories.intersection(r.applies_to):
            continue
        why = missing(r, ctx.present)
        if why is not None:
            skipped.append((r.name, why))
            continue
        out = r.fn(ctx)
        for f in out:
            if f.slug not in r.slugs:
                raise ConfigError(
                    f"rule '{r.name}' emitted the slug '{f.slug}', which it does not declare "
                    f"({', '.join(r.slugs)})"
                )
        found.extend(out)
    return RuleRun(sorted(found, key=lambda fd: -severity_rank(fd.severity)), skipped)
