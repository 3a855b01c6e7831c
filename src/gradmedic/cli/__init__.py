"""The ``gradmedic`` command line: diagnose | treat | lab | theory | report | demo.

Every command prints bad input as one line (``error: ...``) on stderr, without a traceback,
and exits with status 2. ``--json`` writes one JSON object to stdout and nothing else there.
``diagnose --fail-on warning|error`` exits with status 1 when findings of that severity or
worse exist, so the command can gate a CI job.

The application and its error handling are in :mod:`gradmedic.cli.app`; each command is a
module of its own over a workflow of :mod:`gradmedic.workflows` (or the lab, or theory).

Example::

    >>> main(["theory", "relu", "--json"])  # doctest: +SKIP
"""

from __future__ import annotations

from gradmedic.cli.app import app, main

__all__ = ["app", "main"]
