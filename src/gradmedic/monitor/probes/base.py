"""What every probe shares: the :class:`Probe` interface and the device-side norm helpers.

A probe measures one family of quantities. The :class:`~gradmedic.monitor.Monitor` drives it
through one recorded step:

1. ``bind(model, selected, hooks)`` once at attach (``selected``: the hooked modules);
2. ``plan(step, recording)`` once per step: whether the probe is active this step;
3. ``pre_forward`` / ``forward`` for each call of a hooked module, ``wants_input`` /
   ``input_grad`` for the gradient at a module's private input view (see ``hooks``);
4. ``read(scale)`` at the step's end: device tensors (1-D or scalars), nothing synchronised;
5. ``rows(step, values, out)``: the host values of ``read`` (in order, flattened) become
   trace rows appended to ``out``;
6. ``reset()`` after every step, recorded or not.

Every method is a no-op here; a probe overrides only what it uses, and the Monitor calls a
hook method only on probes that override it.

Example::

    >>> class Count(Probe):
    ...     def plan(self, step, recording):
    ...         self.on, self.n = recording, 0
    ...         return self.on
    ...     def forward(self, name, module, outs):
    ...         self.n += 1
    ...     def read(self, scale):
    ...         return [torch.tensor([float(self.n)])]
    ...     def rows(self, step, values, out):
    ...         out.append((step, "", "", "calls", None, values[0]))
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gradmedic.monitor.hooks import Hooks
from gradmedic.trace import Row

__all__ = [
    "LEAF_INPUT_EVERY",
    "LeafPace",
    "Probe",
    "foreach_norms",
    "global_norm",
    "head",
    "norm",
    "norm32",
    "scaled",
    "segment_norms",
    "spread_sample",
    "tensors_in",
    "to_host",
    "wide_norm",
]

#: Tensors up to this size always get their norm in float64 (cheap); larger ones in float32
#: once their previous record showed a signal far from float32's underflow.
WIDE_NORM_MAX = 1 << 12
#: Entries used for activation statistics (whole leading samples of the batch, at least one):
#: a mean over 16,384 entries has a standard error below 1% of its spread; dead units use all.
STATS_MAX = 1 << 14
#: Entries of a parameter on which its update ratio is measured: ``UPDATE_SAMPLE //
#: UPDATE_BLOCK`` blocks of ``UPDATE_BLOCK`` contiguous entries spread evenly over the tensor
#: (every row region of an embedding table is seen); smaller parameters are measured whole.
UPDATE_SAMPLE = 1 << 15
UPDATE_BLOCK = 1 << 6
#: From this size on, a wide norm on the CPU is scaled in float32 (``wide_norm``): below it
#: the float64 reduction is cheaper (27 us against 50 us for 131k entries; 11 ms against
#: 1.1 ms for 4M).
WIDE_SCALED_MIN = 1 << 19
#: From this size on a float32 CPU norm goes through ``sdot`` (three operations, each
#: faster on large tensors); below it one ``vector_norm`` call costs less.
DOT_NORM_MIN = 1 << 17
#: float32 norms are safe between underflow (~1e-19 per entry) and overflow (~1e19 in norm).
F32_SAFE = (1e-8, 1e15)


class Probe:
    """One family of recorded quantities; see the module docstring for the call order."""

    #: active in the current step (set by :meth:`plan`)
    on: bool = False

    def bind(self, model: nn.Module, selected: list[tuple[str, nn.Module]], hooks: Hooks) -> None:
        """Called at attach with the model, the hooked modules and the Monitor's hook owner."""

    def plan(self, step: int, recording: bool) -> bool:
        """Decide whether this probe is active at ``step``; set and return ``self.on``."""
        self.on = recording
        return self.on

    def pre_forward(self, name: str, module: nn.Module, args: tuple) -> None:
        """Before a hooked module runs (grad mode on); ``args`` are its positional inputs."""

    def forward(self, name: str, module: nn.Module, outs: list[torch.Tensor]) -> None:
        """After a hooked module ran; ``outs``: its floating-point output tensors."""

    def wants_input(self, name: str) -> bool:
        """Whether this probe needs the gradient at module ``name``'s inputs this step."""
        return False

    def input_grad(self, name: str, module: nn.Module, index: int, g: torch.Tensor) -> None:
        """The gradient reaching positional input ``index`` of module ``name`` (through it alone)."""

    def read(self, scale: torch.Tensor | None) -> list[torch.Tensor]:
        """Device tensors to bring to the host; ``scale``: the AMP loss scale (or None)."""
        return []

    def rows(self, step: int, values: list[float], out: list[Row]) -> None:
        """Turn the host values of :meth:`read` (flattened, in order) into rows of ``out``."""

    def reset(self) -> None:
        """Drop the state of the step that just ended."""

    def needs_modules(self) -> bool:
        """Whether the module hooks must run for this probe when it is active (asked only of
        probes that override ``pre_forward``, ``forward`` or ``wants_input``)."""
        return True


#: Recorded steps between two measurements of the gradient at an input that needs none
#: (the model's data): that gradient is not part of training, and asking autograd for it adds
#: a product as large as the first layer's weight gradient (2% of a step of a 20-layer MLP,
#: 8% of a small conv net, 9% of an LSTM on raw features; benchmarks/RESULTS.md).
LEAF_INPUT_EVERY = 10


class LeafPace:
    """Mixin of a probe that listens to module inputs: ``leaf_inputs`` (read by
    ``Hooks.private_inputs``) is True on the first of its active steps and then on every
    ``LEAF_INPUT_EVERY``-th, so the data-input gradient is asked for at that pace; inputs that
    need a gradient anyway are measured on every active step."""

    leaf_inputs = True
    _paced = 0
    _paced_step = -1

    def pace(self, step: int, active: bool) -> None:
        """Count ``step`` once (the Monitor plans a step again at attach) when ``active``."""
        if active and step != self._paced_step:
            self._paced_step = step
            self.leaf_inputs = self._paced % LEAF_INPUT_EVERY == 0
            self._paced += 1


def tensors_in(obj: Any) -> list[torch.Tensor]:
    """Floating-point (or complex) tensors in a nested output (tensor, list, tuple, dict)."""
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() or obj.is_complex() else []
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in tensors_in(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in tensors_in(o)]
    return []


def norm(g: torch.Tensor, wide: bool = True) -> torch.Tensor:
    """L2 norm as a 0-d tensor on ``g``'s device: float64, or ``g``'s dtype in the fast path.

    In float64 a vanished signal of 1e-30 per entry does not square to 0; float32 (8x cheaper
    on a large feature map, 30x on the CPU) is used only when ``wide`` is False and ``g`` has
    more than ``WIDE_NORM_MAX`` entries. Callers stack the norms (float64 wins the promotion)
    before they are read.
    """
    g = g.detach()
    if g.numel() <= WIDE_NORM_MAX:
        return torch.linalg.vector_norm(g, dtype=torch.float64)
    if wide:
        return wide_norm(g)
    return norm32(g)


def wide_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm that neither underflows nor overflows, as a float64 0-d tensor.

    On the CPU, where a float64 reduction of a float32 tensor is not vectorised (11 ms
    against 0.15 ms for 4M entries), the tensor is scaled by its largest magnitude ``m`` and
    ``m * ||t / m||`` taken in its own dtype: every scaled entry is at most 1, so the sum of
    squares cannot overflow, and entries too small to square are below 1e-19 of the largest,
    which they cannot move. NaN stays NaN, an infinite entry gives inf, all zeros give 0.
    Elsewhere (CUDA) the float64 norm.

    >>> float(wide_norm(torch.full((1 << 20,), 1e-30)))  # float32 squares would be 0
    1.024...e-27
    """
    if (
        t.device.type != "cpu"
        or t.dtype == torch.float64
        or not t.is_floating_point()
        or t.numel() < WIDE_SCALED_MIN
    ):
        return torch.linalg.vector_norm(t, dtype=torch.float64)
    lo, hi = torch.aminmax(t)
    m = torch.maximum(hi, lo.neg())
    scaled = norm32(t / m.clamp_min(torch.finfo(t.dtype).tiny)).double() * m.double()
    return torch.where(torch.isinf(m), m.double(), scaled)


def norm32(t: torch.Tensor) -> torch.Tensor:
    """L2 norm in ``t``'s own dtype. A large contiguous float32 CPU tensor goes through BLAS
    ``sdot``, measured 1.4-2x faster than ``vector_norm`` and closer to the float64 norm
    (relative error 1e-5 against 9e-5 on 4M entries; benchmarks/RESULTS.md)."""
    big = t.numel() >= DOT_NORM_MIN
    if big and t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous():
        v = t.view(-1)
        return torch.dot(v, v).sqrt()
    return torch.linalg.vector_norm(t)


def segment_norms(norms: list[torch.Tensor], segments: list[int]) -> torch.Tensor:
    """Root of the summed squares of ``norms`` within each segment (``segments[i]``: the
    segment of ``norms[i]``, numbered from 0 in first-seen order), as one float64 vector: one
    stack and, when a segment has several entries, one ``index_add``.

    >>> segment_norms([torch.tensor(3.0), torch.tensor(1.0), torch.tensor(4.0)], [0, 1, 0])
    tensor([5., 1.], dtype=torch.float64)
    """
    vec = torch.stack(norms).double()
    n = max(segments) + 1
    if n == len(segments):
        return vec
    idx = torch.tensor(segments, device=vec.device)
    return vec.new_zeros(n).index_add_(0, idx, vec.square()).sqrt()


def foreach_norms(
    tensors: list[torch.Tensor], wide: Sequence[bool] | None = None
) -> list[torch.Tensor]:
    """L2 norms of many tensors with one fused kernel per (device, dtype, width) group.

    ``wide[i]`` accumulates tensor i in float64 (no underflow for entries below 1e-19, at the
    price of a conversion); the others use their own dtype. Results are 0-d tensors (float64
    where wide; stacking them promotes to float64). On
    the CPU, where ``torch._foreach_norm`` is a loop of its own that measured slower than
    this one (benchmarks/RESULTS.md, "Recorded-step profile"), each tensor gets its own norm.
    """
    out: dict[int, torch.Tensor] = {}
    groups: dict[tuple[Any, Any, bool], list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        w = True if wide is None else bool(wide[i])
        groups[(t.device, t.dtype, w or t.numel() <= WIDE_NORM_MAX)].append(i)
    with torch.no_grad():
        for (_, _, w), idxs in groups.items():
            ts = [tensors[i] for i in idxs]
            if (
                ts[0].device.type == "cpu"
                and len(ts) > 2
                and all(t.numel() <= WIDE_NORM_MAX and not hasattr(t, "_local_tensor") for t in ts)
            ):  # many small tensors (biases): one concatenation, one segmented sum
                norms = _small_norms(ts)
            elif ts[0].device.type == "cpu":
                if w:
                    norms = [
                        wide_norm(t) if t.numel() > WIDE_NORM_MAX
                        else torch.linalg.vector_norm(t, dtype=torch.float64)
                        for t in ts
                    ]  # fmt: skip
                else:
                    norms = [norm32(t) for t in ts]
            elif w:
                norms = torch._foreach_norm(ts, 2, dtype=torch.float64)
            else:
                norms = torch._foreach_norm(ts)
            for i, n in zip(idxs, norms, strict=True):
                out[i] = n
    return [out[i] for i in range(len(tensors))]


def _small_norms(ts: list[torch.Tensor]) -> list[torch.Tensor]:
    """float64 norms of small CPU tensors with a fixed number of operations."""
    flat = torch.cat([t.reshape(-1) for t in ts]).double()
    sizes = torch.tensor([t.numel() for t in ts])
    seg = torch.repeat_interleave(torch.arange(len(ts)), sizes, output_size=flat.numel())
    return list(flat.new_zeros(len(ts)).index_add_(0, seg, flat.square()).sqrt().unbind(0))


def global_norm(tensors: list[torch.Tensor], wide: Sequence[bool]) -> torch.Tensor:
    """The L2 norm of all ``tensors`` together (0-d, on their device): the large float32 ones
    (not ``wide``) one by one in their dtype, the small or wide ones (biases, norms' scales)
    concatenated into one float64 norm per device: a few reductions where there are many
    small tensors. Mixed devices are summed on the first one's.

    >>> float(global_norm([torch.full((5000,), 1.0), torch.tensor([3.0, 4.0])], [False, True]))
    70.887...
    """
    if any(hasattr(t, "_local_tensor") for t in tensors):  # DTensors (FSDP2): norm by norm
        return torch.linalg.vector_norm(torch.stack(foreach_norms(tensors, wide)))
    big = [t for t, w in zip(tensors, wide, strict=True) if not w and t.numel() > WIDE_NORM_MAX]
    small = [t for t, w in zip(tensors, wide, strict=True) if w or t.numel() <= WIDE_NORM_MAX]
    with torch.no_grad():
        parts = foreach_norms(big, [False] * len(big))
        by_dev: dict[Any, list[torch.Tensor]] = defaultdict(list)
        for t in small:
            by_dev[t.device].append(t.reshape(-1))
        for ts in by_dev.values():
            flat = torch.cat(ts) if len(ts) > 1 else ts[0]
            parts.append(torch.linalg.vector_norm(flat, dtype=torch.float64))
        dev = tensors[0].device
        return torch.linalg.vector_norm(torch.stack([p.to(dev) for p in parts]))


def head(t: torch.Tensor) -> torch.Tensor:
    """At most ``STATS_MAX`` entries of ``t``, as whole leading samples (a view, no copy)."""
    n = t.numel()
    if n <= STATS_MAX or t.dim() < 2:
        return t.reshape(-1)
    keep = max(1, STATS_MAX * t.shape[0] // n)
    return t[:keep].reshape(-1)


def spread_sample(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when it has at most ``UPDATE_SAMPLE`` entries (or is not contiguous), else
    a view of ``UPDATE_SAMPLE // UPDATE_BLOCK`` blocks of ``UPDATE_BLOCK`` contiguous entries
    spread over it at an odd stride of blocks, so that they do not all fall in the same
    columns of a matrix whose rows are a power of two long (shape ``(blocks,
    UPDATE_BLOCK)``; no copy). The same shape always gives the same entries.

    >>> spread_sample(torch.zeros(1 << 20)).shape
    torch.Size([512, 64])
    """
    n = t.numel()
    if n <= UPDATE_SAMPLE or not t.is_contiguous():
        return t
    blocks = n // UPDATE_BLOCK
    keep = UPDATE_SAMPLE // UPDATE_BLOCK
    rows = t.reshape(-1)[: blocks * UPDATE_BLOCK].view(blocks, UPDATE_BLOCK)
    step = blocks // keep
    step -= 1 - step % 2  # odd: blocks do not line up with a power-of-two row length
    return rows[:: max(step, 1)][:keep]


def scaled(vec: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``vec / scale`` under AMP (signals measured on the scaled loss), else ``vec``."""
    return vec / scale if scale is not None else vec


def to_host(tensors: list[torch.Tensor]) -> list[float]:
    """Flattened values of ``tensors`` as floats: one concatenation and copy per device."""
    if not tensors:
        return []
    by_dev: dict[Any, list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        by_dev[t.device].append(i)
    values: list[list[float]] = [[] for _ in tensors]
    for idxs in by_dev.values():
        # cat promotes to the widest dtype; one conversion for all
        flat = torch.cat([tensors[i].reshape(-1) for i in idxs]).double().cpu().tolist()
        pos = 0
        for i in idxs:
            n = tensors[i].numel()
            values[i] = flat[pos : pos + n]
            pos += n
    return [v for vs in values for v in vs]
