"""Which modules the Monitor hooks, and every hook it registers, owned so all can be removed.

Three kinds: module hooks (a forward pre-hook and a forward hook per hooked module, and on
the root a pre-hook that runs first, a hook after a completed forward and one that runs even
when the forward raised; all present only on steps that record something, so other steps run
PyTorch's hook-free fast path), optimizer step hooks (for the whole attachment) and tensor
hooks (registered during a step's forward, removed when the step ends).
:meth:`Hooks.remove_all` leaves no hook of ours on the model, its modules, the optimizer or
any tensor, also after an exception in user code.

Which modules are hooked (default, ``modules=None``): :func:`select_modules` gives the
*measured* ones (every probe: leaves, and modules whose own code computes without calling
their children, ``nn.MultiheadAttention`` and parametrized layers); :func:`watched_modules`
every other module with children, the root included, which only the non-finite probe (where
a NaN is born) and the functional recorder (which of their code is running) see, at the
cost of two hook calls and one min/max reduction per module and recorded step.

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
from torch.nn.utils import parametrize

from gradmedic.errors import ConfigError
from gradmedic.nn.modelinfo import SELF_COMPUTING_TYPES

__all__ = [
    "Hooks",
    "ModuleSelector",
    "RootHooks",
    "computes_itself",
    "select_modules",
    "watched_modules",
]

#: the root's own hooks: (pre, post after a completed forward, cleanup run even on an exception)
RootHooks = tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]

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
        root: tuple[nn.Module, RootHooks] | None = None,
    ) -> None:
        """Register ``pre(name, module, args)`` and ``post(name, module, args, output)`` on
        every selected module (no-op when they are installed already), and with ``root`` =
        ``(model, (begin, end, cleanup))``: ``begin(model, args)`` before every other pre-hook
        of the model, ``end(model, args, output)`` after its other forward hooks, and
        ``cleanup(model, args, output)`` last, also when the forward raised."""
        if self._module:
            return
        if root is not None:
            model, (begin, _, _) = root
            self._module.append(model.register_forward_pre_hook(begin, prepend=True))
        for name, module in selected:
            self._trainable[name] = any(p.requires_grad for p in module.parameters())
            self._module.append(module.register_forward_pre_hook(functools.partial(pre, name)))
            self._module.append(module.register_forward_hook(functools.partial(post, name)))
        if root is not None:
            model, (_, end, cleanup) = root
            self._module.append(model.register_forward_hook(end))
            self._module.append(model.register_forward_hook(cleanup, always_call=True))

    def set_trainable(self, name: str, trainable: bool) -> None:
        """Whether a (pseudo-)module ``name`` has trainable parameters (see
        :meth:`private_inputs`)."""
        self._trainable[name] = trainable

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
        (the model's data) becomes a detached leaf that does, unless the module has no
        trainable parameter (a backward pass is never pulled through a frozen part of the
        model) or no listener asks for it this step (a probe's ``leaf_inputs``, default True:
        that gradient costs an extra product the model never needs). For a module that
        works in place, the hook goes on the input itself (it sees ``dL/d(input)``). A tensor
        passed at several positions (``attn(h, h, h)``) gets one view used at all of them, so
        the module's own ``is`` checks (the self-attention path) and its arithmetic stay those
        of the unmonitored model; its gradient is the sum over the positions. Returns the new
        arguments, or None when nothing was replaced.
        """
        on_grad = functools.partial(_to_listeners, listeners, name, module)
        inplace = bool(getattr(module, "inplace", False))
        new_args = list(args)
        changed = False
        seen: dict[int, torch.Tensor] = {}
        for i, a in enumerate(args):
            if not isinstance(a, torch.Tensor) or not a.is_floating_point():
                continue
            if id(a) in seen:
                new_args[i] = seen[id(a)]
                continue
            seen[id(a)] = a
            if inplace:
                if a.requires_grad:  # a hook before the in-place op sees dL/d(input)
                    self.tensor(a, functools.partial(on_grad, i))
                continue
            if not a.requires_grad and not (
                self._trainable.get(name, False)
                and any(getattr(p, "leaf_inputs", True) for p in listeners)
            ):
                continue
            a2 = a.view_as(a) if a.requires_grad else a.detach().requires_grad_(True)
            self.tensor(a2, functools.partial(on_grad, i))
            new_args[i] = seen[id(a)] = a2
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


def computes_itself(module: nn.Module) -> bool:
    """A module measured as a whole: a leaf, or a module whose own code computes without
    calling its children as modules (:data:`SELF_COMPUTING_TYPES`, parametrized layers)."""
    return (
        not any(True for _ in module.children())
        or isinstance(module, SELF_COMPUTING_TYPES)
        or parametrize.is_parametrized(module)
    )


def select_modules(model: nn.Module, selector: ModuleSelector) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs to measure: for ``None`` every module that
    :func:`computes_itself` (leaves, ``nn.MultiheadAttention``, parametrized layers) except
    those inside such a module that is not a leaf (``attn.out_proj``, whose weight the
    attention uses directly); else those matching a glob on the qualified name or one of the
    given module types.

    Raises:
        ConfigError: an element is neither a string nor a type, or nothing matches.

    >>> mha = torch.nn.Sequential(torch.nn.MultiheadAttention(4, 2), torch.nn.Linear(4, 4))
    >>> [n for n, _ in select_modules(mha, None)]
    ['0', '1']
    """
    items = list(model.named_modules())
    if selector is None:
        out, inside = [], ()
        for n, m in items:
            if inside and any(n.startswith(p + ".") for p in inside):
                continue
            if computes_itself(m):
                out.append((n, m))
                if any(True for _ in m.children()):
                    inside = (*inside, n)
        return out
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


def watched_modules(
    model: nn.Module, measured: list[tuple[str, nn.Module]], selector: ModuleSelector
) -> list[tuple[str, nn.Module]]:
    """The modules only watched (for where a NaN is born, and whose code a functional call
    runs in): with the default selector every module with children that is not measured and
    not inside a measured one, the root included; with an explicit selector the root alone
    (unless measured).

    >>> net = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    >>> [n for n, _ in watched_modules(net, select_modules(net, None), None)]
    ['', '0']
    """
    names = {n for n, _ in measured}
    if selector is not None:
        return [] if "" in names else [("", model)]
    inner = tuple(n for n, m in measured if any(True for _ in m.children()))
    return [
        (n, m)
        for n, m in model.named_modules()
        if n not in names
        and any(True for _ in m.children())
        and not any(n.startswith(p + ".") for p in inner)
    ]


def _to_listeners(
    listeners: list[Any], name: str, module: nn.Module, index: int, g: torch.Tensor
) -> None:
    for probe in listeners:
        probe.input_grad(name, module, index, g)
