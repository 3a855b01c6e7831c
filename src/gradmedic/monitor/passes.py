"""Which forward passes belong to the step being recorded: an aborted step never bleeds.

A training loop that catches an exception (a batch that runs out of memory, a bad batch) and
trains on leaves a recorded step half done: forward calls, backward signals or an optimizer
step pre-hook that never reached the step's end. Those values must not be folded into the
next step's record. :class:`PassGuard` follows the model's forward passes through the root's
hooks and the backward passes through a hook on the model's output, and at the start of each
forward on a recorded step decides whether what was recorded so far belongs to a step that
was abandoned. It was, and is discarded, when:

1. the previous forward of the model raised (exception in ``forward``, or in a hook);
2. the optimizer's step began (its pre-hook ran) and did not finish (exception in
   ``optimizer.step()`` with ``optimizer=``);
3. a backward reached the model's output and then either raised (no end-of-backward callback
   ran: exception in ``backward``) or the parameter gradients were reset after it ended
   (``zero_grad()`` sets them to None or zeroes them in place: the loop started a new step
   without ending the old one, e.g. an exception in ``optimizer.step()`` without
   ``optimizer=``).

Otherwise the forward continues the step: gradient accumulation (forward, backward, forward,
backward, step) leaves the gradients exactly as the last backward left them, and a model
called twice before one backward (siamese inputs) has no backward in between. What cannot be
told apart from the latter is an exception raised *between* a finished forward and the
backward (in the loss function): call :meth:`gradmedic.Monitor.discard_step` in the
``except`` clause for that (it is always safe to call). Gradients are compared by the identity
and version counter of each ``.grad`` (no host sync, no copy).

Example::

    >>> p = torch.nn.Parameter(torch.ones(2))
    >>> guard = PassGuard(lambda: [p])
    >>> guard.begin_forward(), guard.end_forward()
    (False, None)
    >>> guard.begin_forward()  # the first forward never reached backward: a second input
    False
    >>> guard.forward_open = True  # as if that forward had raised
    >>> guard.begin_forward()
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["PassGuard", "grads_signature"]

Signature = tuple[tuple[int, int] | None, ...]


def grads_signature(params: list[nn.Parameter]) -> Signature:
    """Identity and version counter of each parameter's ``.grad`` (None where it is None):
    any ``zero_grad`` (to None, or in place) or accumulation changes it."""
    return tuple(None if p.grad is None else (id(p.grad), p.grad._version) for p in params)


class PassGuard:
    """State of the step being recorded, as seen through forward, backward and optimizer
    hooks. ``params()`` gives the monitored parameters."""

    def __init__(self, params: Callable[[], list[nn.Parameter]]) -> None:
        self._params = params
        self.reset()

    def reset(self) -> None:
        """A step ended or was discarded: nothing is open."""
        #: a forward began and has not finished
        self.forward_open = False
        #: the optimizer's step began and has not finished
        self.step_open = False
        #: a backward reached the model's output since the step began
        self.backward_seen = False
        #: the gradients as the last completed backward left them (None: it did not complete)
        self._after_backward: Signature | None = None
        self._queued = False

    def begin_forward(self) -> bool:
        """A forward of the model begins; True when the state recorded so far belongs to an
        abandoned step and must be discarded (the guard is then reset)."""
        abandoned = (
            self.forward_open
            or self.step_open
            or (
                self.backward_seen
                and (
                    self._after_backward is None
                    or self._after_backward != grads_signature(self._params())
                )
            )
        )
        if abandoned:
            self.reset()
        self.forward_open = True
        return abandoned

    def end_forward(self) -> None:
        """The forward finished without an exception."""
        self.forward_open = False

    def backward_reached(self) -> None:
        """The gradient reached the model's output: a backward is under way. Its end (if it
        does not raise) is noted by a callback at the end of the autograd pass."""
        self.backward_seen = True
        self._after_backward = None
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._backward_done)

    def _backward_done(self) -> None:
        self._queued = False
        self._after_backward = grads_signature(self._params())

    def step_begins(self) -> None:
        """The optimizer's step pre-hook ran."""
        self.step_open = True
