"""The terminal view: findings coloured by severity, the per-layer table and the activation
summary (rich).

All user-supplied text (module names, causes, evidence keys) is printed as plain
:class:`rich.text.Text`, never parsed as rich markup, so a module named ``[red]x[/red]`` or
``<script>`` prints literally; control characters in it (a name holding ``\\x1b[2J`` would
clear the screen) print as visible escapes (:func:`gradmedic.report.values.visible`). The root
module is named by the model's class when the trace is given.

Example::

    >>> from rich.console import Console
    >>> from gradmedic.diagnosis.finding import Diagnosis
    >>> print_diagnosis(Diagnosis(findings=[]), console=Console(width=80, color_system=None))
    No problems found: gradients flow within the healthy range.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradmedic.report.layers import FRACTION_COLUMNS, activation_summary
from gradmedic.report.values import format_value, module_label, visible

if TYPE_CHECKING:  # pragma: no cover
    from gradmedic.diagnosis.finding import Diagnosis
    from gradmedic.trace import Trace

__all__ = ["SEVERITY_STYLES", "print_diagnosis"]

#: rich styles per severity.
SEVERITY_STYLES = {"error": "bold red", "warning": "bold yellow", "info": "bold blue"}
_ORDER = {"info": 0, "warning": 1, "error": 2}

_HEADERS = {
    "module": "module",
    "type": "type",
    "grad_norm": "grad norm",
    "signal_out": "signal out",
    "gain": "gain",
    "saturated_frac": "saturated",
    "inactive_frac": "inactive",
    "dead_frac": "dead",
    "predicted_gain": "pred. gain",
}


def _cell(v: Any) -> str:
    if isinstance(v, float) and v != v:  # NaN: not measured
        return "—"
    return visible(format_value(v))


def _percent(v: float) -> str:
    return f"{100 * v:.3g}%"


def print_diagnosis(
    diagnosis: Diagnosis,
    console: Console | None = None,
    *,
    trace: Trace | None = None,
    max_rows: int = 40,
    max_layers: int = 6,
) -> None:
    """Print the findings (worst first, coloured by severity) and the per-layer table.

    Args:
        diagnosis: what :func:`gradmedic.diagnose` returned.
        console: a rich console (default: a new one on stdout).
        trace: the run's trace: theory's predicted gain when the diagnosis lacks it, the
            activations' kinds (saturated or inactive) and the model's class for the root.
        max_rows: longest per-layer table printed; longer ones show the first and last rows
            around a "… N more" row (the HTML report and ``--json`` have all).
        max_layers: layer names listed per finding.
    """
    from gradmedic.report.layers import layer_table

    meta = (trace.meta or {}) if trace is not None else {}
    con = console if console is not None else Console()
    findings = sorted(
        enumerate(diagnosis.findings), key=lambda p: (-_ORDER.get(p[1].severity, 0), p[0])
    )
    if not findings:
        con.print(
            Text("No problems found: gradients flow within the healthy range.", style="bold green")
        )
    else:
        worst = findings[0][1].severity
        con.print(
            Text.assemble(
                (f"{len(findings)} finding{'s' if len(findings) != 1 else ''}", "bold"),
                ", worst: ",
                (worst, SEVERITY_STYLES.get(worst, "")),
            )
        )
    for _, f in findings:
        style = SEVERITY_STYLES.get(f.severity, "")
        con.print(
            Text.assemble(
                (f" {f.severity.upper():<7} ", style + " reverse"),
                " ",
                (visible(f.title), "bold"),
                "  ",
                (visible(f.slug), "dim"),
            )
        )
        con.print(Text.assemble("   cause: ", visible(f.cause)))
        if f.layers:
            shown = ", ".join(module_label(n, meta) for n in f.layers[:max_layers])
            more = f" (+{len(f.layers) - max_layers} more)" if len(f.layers) > max_layers else ""
            step = f" at step {f.step}" if f.step is not None else ""
            con.print(Text.assemble("   layers: ", shown + more + step))
        if f.evidence:
            ev = visible("; ".join(f"{k}={format_value(v)}" for k, v in f.evidence.items()))
            con.print(Text.assemble("   evidence: ", (ev, "cyan")))
        for p in f.prescriptions:
            reason = f"  — {visible(p.reason)}" if p.reason else ""
            con.print(Text.assemble("   → ", (visible(p), "green"), (reason, "dim")))
    table_df = layer_table(diagnosis, trace)
    if table_df.empty:
        return
    table = Table(title="per-layer gradient health (initialisation)", title_style="bold")
    for c in table_df.columns:
        table.add_column(_HEADERS.get(c, c), justify="left" if c in ("module", "type") else "right")
    records = table_df.to_dict("records")
    if len(records) > max_rows:
        half = max_rows // 2
        hidden = len(records) - 2 * half
        shown = [*records[:half], None, *records[-half:]]
    else:
        hidden, shown = 0, records
    sat_cols = tuple(FRACTION_COLUMNS)
    for r in shown:
        if r is None:
            table.add_row(
                Text(f"… {hidden} more", style="dim"), *[""] * (len(table_df.columns) - 1)
            )
            continue
        cells = []
        for c in table_df.columns:
            v = r[c]
            style = ""
            if c in sat_cols and isinstance(v, float) and v >= 0.5:
                style = "red"
            elif c == "gain" and isinstance(v, float) and (v < 0.5 or v > 2.0):
                style = "yellow"
            text = module_label(v, meta) if c == "module" else _cell(v)
            cells.append(Text(text, style=style))
        table.add_row(*cells)
    con.print(table)
    for r in activation_summary(table_df):
        con.print(
            Text.assemble(
                f"{r['measure']} units: mean {_percent(r['mean'])} over {r['layers']} "
                f"layer{'s' if r['layers'] != 1 else ''}, "
                "worst ",
                (_percent(r["worst"]), "red" if r["worst"] >= 0.5 else ""),
                f" in {module_label(r['worst_layer'], meta)}",
            )
        )
