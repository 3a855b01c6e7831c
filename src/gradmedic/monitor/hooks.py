"""Which modules the Monitor hooks, and every hook it registers, owned so all can be removed.

Three kinds: module hooks (a forward pre-hook and a forward hook per selected module, present
only on steps that record something, so other steps run PyTorch's hook-free fast path),
optimizer step hooks (for the whole attachment) and tensor hooks (registered during a step's
forward, removed when the step ends). :meth:`Hooks.remove_all` leaves no hook of ours on the
model, its modules, the optimizer or any tensor, also after an exception in user code.

The Monitor uses tensor hooks only, never ``register_full_backward_hook``: that refuses modules
followed by in-place ops (``nn.ReLU(inplace=True)``), while a hook registered on a tensor before
an in-place op sees the gradient with respect to its old value, which is exactly ``dL/dy`` of
the layer before the activation.

Example::

    >>> hooks = Hooks()
    >>> lin = torch.nn.Linear(2, 2)
    >>> hooks.install_modules([("", lin)], lambda n, m, a: None, lambda n, m, a, o: None)
    >>> len(hooks), len(lin._forward_hooks)
    (2, 1)
    >>> hooks.remove_all(); len(hooks), len(lin._forward_hooks)
    (0, 0)
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from gradmedic.errors import ConfigError

__all__ = ["Hooks", "ModuleSelector", "select_modules"]

ModuleSelector = str | type | Sequence[str | type] | None


class Hooks:
    """The handles of every module, optimizer and tensor hook the Monitor registered.

    ``len(hooks)`` is the number of live handles (0 after :meth:`remove_all`).
    """

    def __init__(self) -> None:
        self._module: list[Any] = []
        self._optimizer: list[Any] = []
        self._tensor: list[Any] = []
        self._trainable: dict[str, bool] = {}

    def __len__(self) -> int:
        return len(self._module) + len(self._optimizer) + len(self._tensor)

    @property
    def modules_on(self) -> bool:
        """Whether the module hooks are installed now."""
        return bool(self._module)

    def install_modules(
        self,
        selected: list[tuple[str, nn.Module]],
        pre: Callable[[str, nn.Module, tuple], tuple | None],
        post: Callable[[str, nn.Module, tuple, Any], None],
    ) -> None:
        """Register ``pre(name, module, args)`` and ``post(name, module, args, output)`` on
        every selected module (no-op when they are installed already)."""
        if self._module:
            return
        for name, module in selected:
            self._trainable[name] = any(p.requires_grad for p in module.parameters())
            self._module.append(module.register_forward_pre_hook(functools.partial(pre, name)))
            self._module.append(module.register_forward_hook(functools.partial(post, name)))

    def remove_modules(self) -> None:
        """Remove the module hooks (the model then runs as without the Monitor)."""
        for h in self._module:
            h.remove()
        self._module.clear()

    def install_optimizer(
        self, optimizer: torch.optim.Optimizer, pre: Callable[..., None], post: Callable[..., None]
    ) -> None:
        """Register step pre- and post-hooks ``(optimizer, args, kwargs)`` on ``optimizer``."""
        self._optimizer.append(optimizer.register_step_pre_hook(pre))
        self._optimizer.append(optimizer.register_step_post_hook(post))

    def tensor(self, t: torch.Tensor, fn: Callable[[torch.Tensor], None]) -> None:
        """Call ``fn(grad)`` when the gradient of ``t`` is computed (until the step ends)."""
        self._tensor.append(t.register_hook(fn))

    def private_inputs(
        self, name: str, module: nn.Module, args: tuple, listeners: list[Any]
    ) -> tuple | None:
        """Give module ``name`` a private view of each floating-point positional input and call
        ``probe.input_grad(name, module, index, grad)`` of every listener with the gradient that
        flows back through ``module`` alone.

        The view is an identity node (training is unchanged); an input that needs no gradient
        becomes a detached leaf that does, unless the module has no trainable parameter (a
        backward pass is never pulled through a frozen part of the model). For a module that
        works in place, the hook goes on the input itself (it sees ``dL/d(input)``). Returns
        the new arguments, or None when nothing was replaced.
        """
        on_grad = functools.partial(_to_listeners, listeners, name, module)
        inplace = bool(getattr(module, "inplace", False))
        new_args = list(args)
        changed = False
        for i, a in enumerate(args):
            if not isinstance(a, torch.Tensor) or not a.is_floating_point():
                continue
            if inplace:
                if a.requires_grad:  # a hook before the in-place op sees dL/d(input)
                    self.tensor(a, functools.partial(on_grad, i))
                continue
            if not a.requires_grad and not self._trainable[name]:
                continue
            a2 = a.view_as(a) if a.requires_grad else a.detach().requires_grad_(True)
            self.tensor(a2, functools.partial(on_grad, i))
            new_args[i] = a2
            changed = True
        return tuple(new_args) if changed else None

    def remove_tensor_hooks(self) -> None:
        """Remove the tensor hooks of the current step."""
        for h in self._tensor:
            h.remove()
        self._tensor.clear()

    def remove_all(self) -> None:
        """Remove every module, optimizer and tensor hook of ours."""
        for h in self._optimizer:
            h.remove()
        self._optimizer.clear()
        self.remove_tensor_hooks()
        self.remove_modules()


def select_modules(model: nn.Module, selector: ModuleSelector) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs to hook: leaf modules for ``None``, else those matching a glob
    on the qualified name or one of the given module types.

    Raises:
        ConfigError: an element is neither a string nor a type, or nothing matches.

    >>> [n for n, _ in select_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)), None)]
    ['0']
    """
    items = list(model.named_modules())
    if selector is None:
        return [(n, m) for n, m in items if not any(True for _ in m.children())]
    sels = [selector] if isinstance(selector, (str, type)) else list(selector)
    globs = [s for s in sels if isinstance(s, str)]
    types = tuple(s for s in sels if isinstance(s, type))
    bad = [s for s in sels if not isinstance(s, (str, type))]
    if bad:
        raise ConfigError(
            f"modules= takes glob strings and nn.Module types, got {bad!r}; "
            "e.g. modules=['encoder.*', torch.nn.Linear]"
        )
    out = [
        (n, m)
        for n, m in items
        if (types and isinstance(m, types)) or any(fnmatch.fnmatchcase(n, g) for g in globs)
    ]
    if not out:
        names = ", ".join(n for n, _ in items if n)[:300]
        raise ConfigError(
            f"modules={selector!r} matches no module of {type(model).__name__}; "
            f"module names are: {names}"
        )
    return out


def _to_listeners(
    listeners: list[Any], name: str, module: nn.Module, index: int, g: torch.Tensor
) -> None:
    for probe in listeners:
        probe.input_grad(name, module, index, g)
