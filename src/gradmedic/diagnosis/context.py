"""The :class:`Context` every rule reads: one trace, its per-layer table and theory's view of it.

Built once per diagnosis (:meth:`Context.build`), so the rules share one pivot of the trace
(:func:`gradmedic.diagnosis.table.layer_table`, cached on the :class:`~gradmedic.trace.Trace`),
one end-to-end measurement at the first and the last recorded step
(:func:`gradmedic.diagnosis.table.end_to_end`), and one init-time prediction from mean-field
theory (:func:`gradmedic.theory.gains.init_predictions`).

Example::

    >>> ctx = Context.build(read_trace("run/trace.sqlite"))      # doctest: +SKIP
    >>> ctx.e2e.ratio, ctx.lr, ctx.has(Quantity.SIGNAL_OUT)       # doctest: +SKIP
    (6.1e-17, 0.01, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gradmedic.diagnosis.table import end_to_end, layer_table, module_infos, signal_steps
from gradmedic.nn.taxonomy import module_category
from gradmedic.theory.gains import InitPrediction, init_predictions
from gradmedic.trace import Trace
from gradmedic.trace.derived import EndToEnd
from gradmedic.trace.schema import Quantity

__all__ = ["Context"]


@dataclass
class Context:
    """Everything the rules look at.

    ``trace``: the trace (its modules table replaced by ``infos`` when those were given);
    ``infos``: ``name -> facts`` of each hooked module at initialisation (type, activation,
    ``sw2``, ``sb2``, RNN radius, ...); ``rows``: :func:`layer_table` at the first step with a
    backward signal; ``e2e`` / ``e2e_last``: the end-to-end measurement at the first / last
    such step (None with fewer than two weighted layers); ``prediction``: theory's init-time
    prediction; ``lr`` / ``optimizer``: from the trace's ``train_config`` metadata (None when
    absent); ``steps``: the steps with a backward signal (else all recorded steps);
    ``present``: the names of the quantities the trace holds (what the registry's
    ``requires`` is checked against).
    """

    trace: Trace
    infos: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    e2e: EndToEnd | None
    e2e_last: EndToEnd | None
    prediction: InitPrediction
    lr: float | None
    optimizer: str | None
    steps: list[int] = field(default_factory=list)
    present: frozenset[str] = frozenset()

    @classmethod
    def build(cls, trace: Trace, infos: dict[str, dict[str, Any]] | None = None) -> Context:
        """The context of ``trace``; ``infos`` (init-time facts of the untrained model, as
        :func:`gradmedic.workflows.checkup.model_infos` gives them) replace the trace's facts
        of the same modules when given; modules only the trace knows (functional layers the
        Monitor found while the model ran) keep theirs, and every module keeps the trace's
        order."""
        if infos:
            infos = _merged(module_infos(trace), infos)
            trace = _with_infos(trace, infos)  # init-time facts of the untrained model
        else:
            infos = module_infos(trace)
        steps = signal_steps(trace) or trace.steps
        rows = layer_table(trace) if steps else []
        e0 = end_to_end(trace) if steps else None
        e1 = end_to_end(trace, steps[-1]) if len(steps) > 1 else e0
        ordered = sorted(infos.items(), key=lambda kv: kv[1].get("ord", 0))
        pred = init_predictions([{"name": n, **i} for n, i in ordered], module_category)
        cfg = trace.meta.get("train_config") if isinstance(trace.meta, dict) else None
        lr = float(cfg["lr"]) if isinstance(cfg, dict) and "lr" in cfg else None
        opt = str(cfg["optimizer"]) if isinstance(cfg, dict) and "optimizer" in cfg else None
        present = frozenset(str(q) for q in trace.frame["quantity"].unique())
        return cls(trace, infos, rows, e0, e1, pred, lr, opt, steps, present)

    def has(self, quantity: Quantity) -> bool:
        """Whether the trace holds any row of ``quantity``."""
        return quantity.value in self.present

    def row(self, name: str) -> dict[str, Any]:
        """The per-layer row (:attr:`rows`) of module ``name``; ``{}`` when it has none."""
        return next((r for r in self.rows if r["module"] == name), {})

    def quantity_steps(self, quantity: Quantity) -> list[int]:
        """The steps at which module-level rows of ``quantity`` were recorded, ascending."""
        key = ("quantity_steps", quantity.value)
        cache = self.trace._cache
        if key not in cache:
            sub = self.trace.quantity(quantity)
            cache[key] = sorted(int(s) for s in sub["step"].unique())
        return list(cache[key])


def _merged(
    recorded: dict[str, dict[str, Any]], given: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The trace's module facts updated with ``given`` (same names), in the trace's order;
    modules only in ``given`` follow."""
    out = {
        n: {**i, **{k: v for k, v in given.get(n, {}).items() if k != "ord"}}
        for n, i in recorded.items()
    }
    last = max((i.get("ord", 0) for i in out.values()), default=-1)
    for n, i in sorted(given.items(), key=lambda kv: kv[1].get("ord", 0)):
        if n not in out:
            last += 1
            out[n] = {**i, "ord": last}
    return out


def _with_infos(trace: Trace, infos: dict[str, dict[str, Any]]) -> Trace:
    """A trace whose modules table carries ``infos`` (init-time facts of the untrained model)."""
    recs = []
    for name, i in sorted(infos.items(), key=lambda kv: kv[1].get("ord", 0)):
        extra = {k: v for k, v in i.items() if k not in ("type", "activation", "ord", "n_params")}
        recs.append(
            {
                "ord": i.get("ord", 0),
                "name": name,
                "type": i.get("type", ""),
                "activation": i.get("activation"),
                "n_params": i.get("n_params", 0),
                "info": json.dumps(extra),
            }
        )
    mods = pd.DataFrame(recs, columns=["ord", "name", "type", "activation", "n_params", "info"])
    return Trace(frame=trace.frame, modules=mods, meta=trace.meta, path=trace.path)
