"""What a trace says about the run besides the records: the module table and the metadata.

Both are taken at attach, before any update, so that a trace can be diagnosed without the
model: ``module_rows`` gives one row per module (``ord, name, type, activation, n_params,
info``; ``info`` is the JSON of ``gradmedic.nn.modelinfo.module_facts``, e.g. the init scale
``sw2 = fan_in Var(W)``), ``run_metadata`` the versions, command line, seed and model summary.
Functional layers found on recorded steps (``gradmedic.monitor.functional``) are inserted by
:func:`with_functional` after the module (or functional layer) that ran just before them, and
the ``ord`` renumbered, so the table stays in forward order.

Example::

    >>> rows = module_rows(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh()))
    >>> [(r[1], r[2], r[3], r[4]) for r in rows]
    [('', 'Sequential', None, 0), ('0', 'Linear', None, 9), ('1', 'Tanh', 'tanh', 0)]
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gradmedic._version import __version__
from gradmedic.nn.activations import derivative_for, is_activation
from gradmedic.nn.modelinfo import module_facts

__all__ = ["ModuleRow", "module_rows", "run_metadata", "with_functional"]

#: (ord, name, type, activation, n_params, info JSON): a row of the trace's ``modules`` table
ModuleRow = tuple[int, str, str, str | None, int, str]


def module_rows(model: nn.Module) -> list[ModuleRow]:
    """One row per module of ``model`` (``named_modules`` order, the root first)."""
    rows = []
    for i, (name, m) in enumerate(model.named_modules()):
        own = sum(p.numel() for p in m.parameters(recurse=False))
        d = derivative_for(m) if is_activation(m) else None
        rows.append(
            (i, name, type(m).__name__, d.name if d else None, own, json.dumps(module_facts(m)))
        )
    return rows


def with_functional(rows: list[ModuleRow], pseudo: Iterable[Any]) -> list[ModuleRow]:
    """``rows`` with the functional pseudo-modules (objects with ``name``, ``after``,
    ``activation`` and ``info``, in discovery order) inserted each after its ``after`` (an
    unknown ``after`` puts it after the root), ``ord`` renumbered from 0.

    >>> from types import SimpleNamespace as P
    >>> base = [(0, "", "Net", None, 0, "{}"), (1, "fc", "Linear", None, 6, "{}")]
    >>> f = P(name="fc@relu", after="fc", activation="relu", info={"type": "functional.relu"})
    >>> [(r[0], r[1], r[2]) for r in with_functional(base, [f])]
    [(0, '', 'Net'), (1, 'fc', 'Linear'), (2, 'fc@relu', 'functional.relu')]
    """
    after: dict[str, list[Any]] = {}
    names = {r[1] for r in rows}
    for p in pseudo:
        names.add(p.name)
    for p in pseudo:
        after.setdefault(p.after if p.after in names else "", []).append(p)
    out: list[ModuleRow] = []

    def emit(name: str) -> None:
        for p in after.pop(name, []):
            info = {k: v for k, v in p.info.items() if k != "type"}
            out.append((0, p.name, p.info["type"], p.activation, 0, json.dumps(info)))
            emit(p.name)

    for r in rows:
        out.append(r)
        emit(r[1])
    for rest in list(after):  # a cycle cannot occur; anything left goes last
        emit(rest)
    return [(i, *r[1:]) for i, r in enumerate(out)]


def run_metadata(
    model: nn.Module, params: list[nn.Parameter], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Versions, command line, time, seed and model summary, then ``extra`` (which wins);
    ``params``: the monitored parameters (their count and devices)."""
    return {
        "gradmedic_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "command": sys.argv,
        "created": time.time(),
        "model_class": type(model).__name__,
        "model_summary": repr(model)[:20000],
        "n_params": sum(p.numel() for p in params),
        "devices": sorted({str(p.device) for p in params}),
        "seed": torch.initial_seed(),
        **(extra or {}),
    }
