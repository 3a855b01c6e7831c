"""Wall time of ``gradmedic diagnose`` from a warm start, whole and by phase.

Whole: ``gradmedic diagnose --model mlp:depth=30,act=sigmoid --data digits --steps 20`` run as
a subprocess (after one warm-up run, so the file cache is warm), median of ``--repeats``.
By phase, in a fresh interpreter each time (the same work as the command, timed inside):

- *start-up*: importing torch and gradmedic's CLI, diagnosis, report and workflow modules;
- *training*: :func:`gradmedic.workflows.checkup_run.run_checkup` (build the model and data,
  train 20 steps with the Monitor recording every step, diagnose); includes the first
  ``torch.optim`` construction, which imports ``torch._dynamo`` (about 1 s, PyTorch's own
  cost that every training script pays);
- *report*: :func:`gradmedic.report.write_diagnosis_report` (figures and HTML).

Run: ``python benchmarks/diagnose_time.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = ["diagnose", "--model", "mlp:depth=30,act=sigmoid", "--data", "digits", "--steps", "20"]

PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from gradmedic.cli.app import app
from gradmedic.report import print_diagnosis, write_diagnosis_report
from gradmedic.workflows.checkup_run import run_checkup
from gradmedic.workflows.train import TrainConfig
t1 = time.perf_counter()
out = sys.argv[1]
run = run_checkup("mlp:depth=30,act=sigmoid", "digits", config=TrainConfig(steps=20, every=1),
                  out=out, overwrite=True)
t2 = time.perf_counter()
write_diagnosis_report(f"{out}/report.html", run.diagnosis, run.trace, title="t")
t3 = time.perf_counter()
print(json.dumps({"start-up": t1 - t0, "training": t2 - t1, "report": t3 - t2}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    exe = [sys.executable, "-m", "gradmedic"]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out")
        cmd = [*exe, *COMMAND, "--out", out, "--overwrite"]
        subprocess.run(cmd, check=True, capture_output=True)  # warm-up
        whole, phases = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            whole.append(time.perf_counter() - t)
            res = subprocess.run(
                [sys.executable, "-c", PHASES, out], check=True, capture_output=True, text=True
            )
            phases.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(
        f"gradmedic {' '.join(COMMAND)}: median {statistics.median(whole):.2f} s "
        f"(min {min(whole):.2f}, max {max(whole):.2f}) over {args.repeats} runs"
    )
    for key in phases[0]:
        vals = [p[key] for p in phases]
        print(f"  {key:<9} {statistics.median(vals):.2f} s")


if __name__ == "__main__":
    main()
