"""``gradmedic theory ACTIVATION``: the mean-field predictions for a deep net of that
activation (:func:`gradmedic.theory.summary`): fixed point q*, chi1, depth scales, phase,
end-to-end gradient ratio and the critical sigma_w^2 (Poole et al. 2016; Schoenholz et al.
2017).

An unknown activation (``tanhh``) is one line on stderr naming the close one, exit status 2.

Example::

    gradmedic theory relu --sigma-w2 2 --depth 30 --json
"""

from __future__ import annotations

from typing import Annotated

import typer

from gradmedic.cli.options import JsonOpt
from gradmedic.cli.output import out_console, print_json

__all__ = ["theory"]


def theory(
    activation: Annotated[str, typer.Argument(help="tanh, relu, leaky_relu(0.1), gelu, ...")],
    sigma_w2: Annotated[float, typer.Option("--sigma-w2", help="Weight variance x fan-in.")] = 1.0,
    sigma_b2: Annotated[float, typer.Option("--sigma-b2", help="Bias variance.")] = 0.0,
    depth: Annotated[int, typer.Option(help="Number of layers.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Mean-field predictions: q*, chi1, depth scales, phase, gradient ratio, critical sigma_w^2."""
    from gradmedic import theory as th

    summary = th.summary(activation, sigma_w2, sigma_b2, depth)
    if as_json:
        print_json(summary)
    else:
        out_console.print(th.format_summary(summary), highlight=False)
