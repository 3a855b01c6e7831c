"""A trace read back: the long-form frame, the modules table, metadata, and cached views.

The per-layer view (:meth:`Trace.layer_rows`) is pivoted once per step and cached, so a
diagnosis that reads the table from several rules pays for one pivot. A :class:`Trace` is a
snapshot: its frame must not be mutated after the first view is taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gradmedic.errors import TraceError
from gradmedic.nn.taxonomy import module_category
from gradmedic.trace.schema import MODULE_LEVEL, Quantity

__all__ = ["Trace"]


@dataclass
class Trace:
    """A trace read back: the long-form ``frame``, the ``modules`` table and ``meta``."""

    frame: pd.DataFrame
    modules: pd.DataFrame
    meta: dict[str, Any]
    path: Path | None = None
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def quantity(self, name: str, *, parameter: str | None = "") -> pd.DataFrame:
        """Rows of one quantity; ``parameter=''`` keeps module-level rows, ``None`` keeps all."""
        f = self.frame[self.frame["quantity"] == name]
        if parameter is not None:
            f = f[f["parameter"] == parameter]
        return f

    def pivot(self, name: str, *, parameter: str | None = "") -> pd.DataFrame:
        """A step x module table of one module-level quantity, columns in model order."""
        f = self.quantity(name, parameter=parameter)
        if f.empty:
            return pd.DataFrame()
        table = f.pivot_table(index="step", columns="module", values="value", aggfunc="last")
        order = [m for m in self.modules["name"] if m in table.columns]
        rest = [m for m in table.columns if m not in order]
        return table[order + rest]

    @property
    def steps(self) -> list[int]:
        """The recorded steps, ascending."""
        return sorted(int(s) for s in self.frame["step"].unique())

    def to_parquet(self, path: str | Path) -> Path:
        """Export the long table to Parquet (needs pyarrow: ``pip install gradmedic[parquet]``)."""
        try:
            self.frame.to_parquet(path, index=False)
        except ImportError as exc:
            raise TraceError(
                "Parquet export needs pyarrow; install it with: pip install 'gradmedic[parquet]'"
            ) from exc
        return Path(path)

    # ------------------------------------------------------------------ cached views

    def module_infos(self) -> dict[str, dict[str, Any]]:
        """``name -> {"type", "activation", "ord", "n_params", **info}`` from the modules table."""
        if "infos" in self._cache:
            return self._cache["infos"]
        out: dict[str, dict[str, Any]] = {}
        mods = self.modules
        if mods is not None and not mods.empty:
            for row in mods.itertuples(index=False):
                try:
                    info = json.loads(row.info) if isinstance(row.info, str) and row.info else {}
                except json.JSONDecodeError:
                    info = {}
                if not isinstance(info, dict):
                    info = {}
                act = row.activation if isinstance(row.activation, str) else None
                out[str(row.name)] = {
                    "type": str(row.type),
                    "activation": act,
                    "ord": int(row.ord),
                    "n_params": int(row.n_params),
                    **info,
                }
        self._cache["infos"] = out
        return out

    def signal_steps(self) -> list[int]:
        """Recorded steps that carry backward-signal rows, ascending."""
        if "signal_steps" not in self._cache:
            f = self.frame
            s = [] if f.empty else f.loc[f["quantity"] == Quantity.SIGNAL_OUT, "step"].unique()
            self._cache["signal_steps"] = sorted(int(x) for x in s)
        return self._cache["signal_steps"]

    def _step_table(self, step: int) -> pd.DataFrame:
        key = ("step_table", step)
        if key not in self._cache:
            f = self.frame
            sub = f[(f["step"] == step) & (f["parameter"] == "") & (f["module"] != "")]
            sub = sub[sub["quantity"].isin([q.value for q in MODULE_LEVEL])]
            self._cache[key] = (
                pd.DataFrame()
                if sub.empty
                else sub.pivot_table(
                    index="module", columns="quantity", values="value", aggfunc="last"
                )
            )
        return self._cache[key]

    def _weight_stats(self, step: int) -> dict[str, dict[str, float]]:
        """Per module: ``weight`` (else ``weight_hh_l0``) grad_norm and param_norm at ``step``,
        ``weight_grad_norm`` (the grad_norm of a parameter named exactly ``weight``), and the
        median update ratio of the weight over all recorded steps."""
        f = self.frame
        w = f[f["parameter"].isin(["weight", "weight_hh_l0"])]
        out: dict[str, dict[str, float]] = {}
        at = w[w["step"] == step]
        for row in at.itertuples(index=False):
            if row.quantity in (Quantity.GRAD_NORM, Quantity.PARAM_NORM):
                out.setdefault(row.module, {})[row.quantity] = float(row.value)
                if row.quantity == Quantity.GRAD_NORM and row.parameter == "weight":
                    out[row.module]["weight_grad_norm"] = float(row.value)
        upd = w[w["quantity"] == Quantity.UPDATE_RATIO]
        if not upd.empty:
            med = upd.groupby("module")["value"].median()
            for name, v in med.items():
                out.setdefault(str(name), {})["update_ratio"] = float(v)
        return out

    def layer_rows(self, step: int | None = None) -> list[dict[str, Any]]:
        """One row per hooked module in model order at ``step`` (default: the first step with a
        backward signal, i.e. the initialisation), measurements only (theory's predictions are
        added by :func:`gradmedic.diagnosis.table.layer_table`).

        Keys: ``module``, ``type``, ``category`` (:func:`gradmedic.nn.taxonomy.module_category`),
        ``activation``, ``grad_norm``, ``weight_grad_norm`` (``||dL/dW||`` of its ``weight``
        alone, else ``grad_norm``), ``param_norm``, ``grad_to_weight`` = ``||dL/dW|| / ||W||``,
        ``update_ratio`` (median ``||dW_step|| / ||W||``), ``signal_out``, ``signal_in``,
        ``gain``, ``dphi_mean``, ``dphi_sq_mean``, ``saturated_frac``, ``dead_frac``,
        ``preact_ms``, ``act_mean``, ``act_std`` and the init facts ``sw2``, ``sb2``,
        ``fan_in``, ``fan_out``, ``info`` (the module's static facts). Missing values are None.
        The returned rows are shared with the cache: copy before changing them.
        """
        steps = self.signal_steps() or self.steps
        if not steps:
            return []
        s = steps[0] if step is None else int(step)
        key = ("rows", s)
        if key in self._cache:
            return self._cache[key]
        infos = self.module_infos()
        tab = self._step_table(s)
        rows: list[dict[str, Any]] = []
        if not tab.empty:
            wstats = self._weight_stats(s)
            order = sorted(tab.index, key=lambda n: infos.get(n, {}).get("ord", 10**9))
            for name in order:
                info = infos.get(name, {"type": "?"})
                rec = tab.loc[name]
                ws = wstats.get(name, {})
                pn, gn = ws.get("param_norm"), ws.get("grad_norm")
                row: dict[str, Any] = {
                    "module": name,
                    "type": info.get("type"),
                    "category": module_category(info),
                    "activation": info.get("activation"),
                }
                for q in MODULE_LEVEL:
                    v = rec[q.value] if q.value in rec.index else None
                    row[q.value] = None if v is None or pd.isna(v) else float(v)
                row["weight_grad_norm"] = ws.get("weight_grad_norm", row["grad_norm"])
                row["param_norm"] = pn
                row["grad_to_weight"] = (gn / pn) if (gn is not None and pn) else None
                row["update_ratio"] = ws.get("update_ratio")
                for k in ("sw2", "sb2", "fan_in", "fan_out"):
                    row[k] = info.get(k)
                row["info"] = info
                rows.append(row)
        self._cache[key] = rows
        return rows

    def series(self, quantity: Quantity | str, module: str = "") -> list[tuple[int, float]]:
        """``(step, value)`` of one module-level quantity over the run, ascending by step."""
        f = self.frame
        g = f[(f["quantity"] == quantity) & (f["module"] == module) & (f["parameter"] == "")]
        g = g.sort_values("step", kind="stable")
        return [(int(s), float(v)) for s, v in zip(g["step"], g["value"], strict=True)]
