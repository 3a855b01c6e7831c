"""Test-wide settings: one intra-op thread (the suite's models are small; on a 2-core machine
two threads per process only add contention and make timings noisy)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
