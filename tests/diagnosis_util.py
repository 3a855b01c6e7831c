"""Helpers shared by the diagnosis test files (test_diagnosis.py, test_diagnosis_unseen.py):
a per-process data cache, finding lookup, and the slow autograd reference of the end-to-end
backward-signal ratio the diagnosis judges."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from gradmedic.diagnosis import Diagnosis
from gradmedic.zoo import Dataset, load_data

_DATA: dict[str, Dataset] = {}


def data(spec: str) -> Dataset:
    """``load_data(spec)``, loaded once per test process."""
    if spec not in _DATA:
        _DATA[spec] = load_data(spec)
    return _DATA[spec]


def finding(d: Diagnosis, slug: str):
    """The first finding with ``slug``; fails the test, listing what was found, when none."""
    hits = [f for f in d.findings if f.slug == slug]
    assert hits, f"{slug} not in {[(f.slug, f.severity) for f in d.findings]}"
    return hits[0]


def output_grad_ratio(model: nn.Module, x, y, first: str, last: str) -> float:
    """``||dL/d out(first)|| / ||dL/d out(last)||`` by plain autograd (retain_grad on the two
    modules' outputs) for the cross-entropy of ``model(x)``, on a copy with in-place ReLUs
    turned off; the caller's model is untouched."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    mods = dict(model.named_modules())
    keep: dict[str, torch.Tensor] = {}

    def grab(name):
        def hook(_m, _a, out):
            out.retain_grad()
            keep[name] = out

        return hook

    hs = [mods[n].register_forward_hook(grab(n)) for n in (first, last)]
    torch.manual_seed(0)  # train() seeds the same way before its first forward (dropout mask)
    model.train()
    F.cross_entropy(model(x), y).backward()
    for h in hs:
        h.remove()
    return float(keep[first].grad.double().norm() / keep[last].grad.double().norm())
