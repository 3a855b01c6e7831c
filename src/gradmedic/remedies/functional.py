"""Activations called as functions (``torch.sigmoid(h)``, ``F.relu(h)``, ``h.tanh()``): found
by reading the ``forward`` source of the model's own classes, rewritten into modules with
``torch.fx``. Which calls are activations, and of which kind, comes from the one activation
registry (:data:`gradmedic.nn.activations.KINDS`: each kind's ``functions`` and ``methods``).

Example::

    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a = nn.Linear(2, 2)
    ...     def forward(self, x):
    ...         return torch.tanh(self.a(x)).sum(-1)
    >>> [(c["call"], c["kind"]) for c in find_functional_activations(Net())]
    [('torch.tanh(...)', 'tanh')]
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gradmedic.nn.activations import KINDS, functional_kind
from gradmedic.remedies.base import RemedyReport

__all__ = ["find_functional_activations", "rewrite_functional"]


def _function_names() -> dict[str, str]:
    """``torch.<name>`` / ``F.<name>`` -> activation kind, for every functional form the
    registry knows (:data:`gradmedic.nn.activations.KINDS`)."""
    out: dict[str, str] = {}
    for k in KINDS.values():
        for fn in k.functions:
            for cand in (k.name, getattr(fn, "__name__", "")):
                if fn in (getattr(F, cand, None), getattr(torch, cand, None)):
                    out[cand] = k.name
    return out


_FUNCTION_NAMES = _function_names()
_METHODS: dict[str, str] = {m: k.name for k in KINDS.values() for m in k.methods}
_SOURCE_CALL = re.compile(
    r"(?:torch\.(?:nn\.functional\.)?|\bF\.)("
    + "|".join(sorted(_FUNCTION_NAMES, key=len, reverse=True))
    + r")\s*\(|\.("
    + "|".join(sorted(_METHODS, key=len, reverse=True))
    + r")\s*\(\s*\)"
)


def find_functional_activations(model: nn.Module) -> list[dict[str, Any]]:
    """Activations called as functions in the ``forward`` of the model's own (non-torch)
    module classes, found by reading their source: ``[{"class", "line", "call", "kind"}]``."""
    found: list[dict[str, Any]] = []
    seen: set[type] = set()
    for mod in model.modules():
        cls = type(mod)
        if cls in seen or cls.__module__.startswith("torch."):
            continue
        seen.add(cls)
        try:
            lines, start = inspect.getsourcelines(cls.forward)
        except (OSError, TypeError):
            continue
        for i, line in enumerate(lines):
            code = line.split("#", 1)[0]
            for m in _SOURCE_CALL.finditer(code):
                found.append(
                    {
                        "class": cls.__name__,
                        "line": start + i,
                        "call": (
                            f"{m.group(0).rstrip('( ')}(...)"
                            if m.group(1)
                            else m.group(0).replace(" ", "")
                        ),
                        "kind": _FUNCTION_NAMES[m.group(1)] if m.group(1) else _METHODS[m.group(2)],
                    }
                )
    return found


def rewrite_functional(
    model: nn.Module,
    selected: Callable[[str], bool],
    factory: Callable[[], nn.Module],
    label: str,
    rep: RemedyReport,
    *,
    keep_output: bool = True,
) -> nn.Module | None:
    """Trace ``model`` with ``torch.fx`` and replace each functional activation call whose
    kind ``selected(kind)`` accepts by a fresh module from ``factory`` (registered as
    ``swapped_act_<k>``), recording each change in ``rep``. With ``keep_output`` a call that
    produces the model's output is kept (with a warning: it belongs to the loss). Returns the
    ``GraphModule``, or None when tracing fails (the error is in ``rep.details["fx_error"]``).
    """
    try:
        import torch.fx as fx

        gm = fx.symbolic_trace(model)
    except Exception as exc:  # torch.fx raises many kinds on data-dependent control flow
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        rep.details["fx_error"] = f"{type(exc).__name__}: {first}"
        return None
    graph = gm.graph
    k = 0
    for node in list(graph.nodes):
        kind = None
        if node.op == "call_function" and functional_kind(node.target) is not None:
            kind = functional_kind(node.target).name  # type: ignore[union-attr]
        elif node.op == "call_method" and node.target in _METHODS:
            kind = _METHODS[node.target]
        if kind is None or not selected(kind):
            continue
        if keep_output and any(u.op == "output" for u in node.users):
            rep.warnings.append(
                f"kept functional output activation {node.name} ({kind}): it is paired with "
                "the loss; use fix-loss"
            )
            continue
        sub = f"swapped_act_{k}"
        while hasattr(gm, sub):
            k += 1
            sub = f"swapped_act_{k}"
        gm.add_submodule(sub, factory())
        with graph.inserting_after(node):
            new = graph.call_module(sub, args=(node.args[0],))
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        rep.changes.append(f"{node.name} (functional {kind}) -> {label} as module {sub} (torch.fx)")
        k += 1
    graph.lint()
    gm.recompile()
    return gm
