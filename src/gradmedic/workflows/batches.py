"""Where the training batches come from: a built-in :class:`~gradmedic.zoo.Dataset` or the
user's data factory, with every way a factory can fail told in one line.

A factory (``path/to/file.py:factory``) is called with no arguments and returns an iterable
of ``(input, target)`` batches; it is called again for each pass over the data, so it must
return a fresh iterable every time (a list of batches, a new DataLoader or generator). Each
failure is a :class:`~gradmedic.errors.DataError` naming the factory and the batch index:

- the factory raises (any exception, ``sys.exit`` too) when called, or its iterable raises
  while yielding batch *i* (the message quotes the exception's first line);
- a batch that is not an ``(input, target)`` pair of tensors, or that is empty;
- a factory that hands back the same, already exhausted iterator (it would spin forever).

Example::

    >>> import torch
    >>> src = BatchSource(factory=lambda: [(torch.zeros(4, 3), torch.tensor([0, 1, 0, 2]))])
    >>> src.info.num_outputs, next(src.batches(64, 0))[0].shape
    (3, torch.Size([4, 3]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from gradmedic._callspec import is_factory_ref, load_factory
from gradmedic.errors import DataError, GradmedicError
from gradmedic.zoo import DataInfo, Dataset, load_data

__all__ = ["MAX_CLASSES", "BatchSource", "resolve_data"]

#: The largest class label a factory's data may hold (a built-in model gets one output per
#: class; a label beyond this is almost always a wrong column, not a class).
MAX_CLASSES = 1_000_000

_END = object()


def _detail(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class BatchSource:
    """Batches from a built-in :class:`Dataset` or from a user factory's iterable.

    ``name`` words the errors (``'data.py:batches'``). :attr:`index` is the index of the last
    batch handed out within its pass over the data, :attr:`passes` the passes completed.
    Raises DataError (see the module docstring) when the factory or a batch is unusable.
    """

    def __init__(
        self,
        dataset: Dataset | None = None,
        factory: Callable[[], Any] | None = None,
        *,
        name: str = "the data factory",
    ) -> None:
        self.dataset = dataset
        self.factory = factory
        self.name = name
        self.index = 0
        self.passes = 0
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None
        if factory is not None:
            first = self._next(self._iterator(), 0)
            if first is _END:
                raise DataError(
                    f"{self.name} yielded no batch; it must return an iterable of (input, "
                    "target) batches, e.g. a list of (x, y) tuples or a DataLoader"
                )
            self._first = self._check(first, 0)

    @property
    def where(self) -> str:
        """The last batch handed out, in words: ``batch 2`` (``batch 2 of pass 3``)."""
        return f"batch {self.index}" + (f" of pass {self.passes + 1}" if self.passes else "")

    @property
    def info(self) -> DataInfo:
        """The data set's description; for a factory, read from its first batch (integer
        targets: classification with ``max label + 1`` classes; float: regression)."""
        if self.dataset is not None:
            return self.dataset.info
        x, y = self._first  # type: ignore[misc]
        task = "classification" if not y.is_floating_point() else "regression"
        if task == "classification":  # negative labels (ignore_index) are checked per step
            hi = int(y.max())
            if hi >= MAX_CLASSES:
                raise DataError(
                    f"the first batch of {self.name} holds the integer target {hi}, which is "
                    f"not a class index (at most {MAX_CLASSES - 1:,}); class labels must be "
                    "0..C-1 (relabel them), and regression targets must be float tensors"
                )
            outputs = max(hi + 1, 1)
        else:
            outputs = int(y.shape[-1]) if y.dim() > 1 else 1
        return DataInfo(
            name="custom",
            input_shape=tuple(x.shape[1:]),
            task=task,
            num_outputs=outputs,
            seq_len=None,
            default_loss="ce" if task == "classification" else "mse",
        )

    def _iterator(self) -> Iterator[Any]:
        try:
            it = self.factory()  # type: ignore[misc]
        except GradmedicError:
            raise
        except SystemExit as exc:
            raise DataError(
                f"{self.name} called sys.exit({exc.code!r}) instead of returning batches; make "
                "it return an iterable of (input, target) batches"
            ) from None
        except Exception as exc:
            raise DataError(
                f"{self.name} raised {_detail(exc)} when called; fix the factory or what it "
                "reads (it is called with no arguments and must return an iterable of "
                "(input, target) batches)"
            ) from exc
        if not isinstance(it, Iterable):
            raise DataError(
                f"{self.name} returned {type(it).__name__}, expected an iterable of "
                "(input, target) batches, e.g. a list of tuples or a DataLoader"
            )
        try:
            return iter(it)
        except GradmedicError:
            raise
        except Exception as exc:
            raise DataError(
                f"iterating over what {self.name} returned raised {_detail(exc)}; fix its "
                "__iter__ or return a list of (input, target) batches"
            ) from exc

    def _next(self, it: Iterator[Any], index: int) -> Any:
        try:
            return next(it)
        except StopIteration:
            return _END
        except GradmedicError:
            raise
        except (Exception, SystemExit) as exc:
            where = f"batch {index}" + (f" of pass {self.passes + 1}" if self.passes else "")
            raise DataError(
                f"{self.name} raised {_detail(exc)} while yielding {where} (the batches "
                "before it were read); fix the data pipeline at that batch"
            ) from exc

    def _check(self, batch: Any, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        where = f"batch {index} of {self.name}"
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            if isinstance(batch, dict):
                what = f"a dict with keys {', '.join(map(str, batch))}"
            elif isinstance(batch, (tuple, list)):
                what = f"a {type(batch).__name__} of {len(batch)} items"
            else:
                what = f"a {type(batch).__name__}"
            raise DataError(
                f"{where} is {what}, expected an (input, target) pair; yield (x, y) tensors "
                "from the data factory"
            )
        x, y = batch
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise DataError(
                f"{where} holds ({type(x).__name__}, {type(y).__name__}), expected tensors: "
                "yield (torch.Tensor, torch.Tensor), e.g. torch.as_tensor(array)"
            )
        if x.dim() == 0 or y.dim() == 0:
            raise DataError(
                f"{where} has a 0-dimensional {'input' if x.dim() == 0 else 'target'}; a "
                "batch needs a first (batch) dimension: input (B, ...), target (B, ...)"
            )
        if x.shape[0] == 0 or y.shape[0] == 0:
            raise DataError(
                f"{where} is empty (input shape {tuple(x.shape)}, target shape "
                f"{tuple(y.shape)}); a batch needs at least one sample: drop empty batches"
            )
        return x, y

    def batches(self, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield batches forever: the Dataset's seeded batches, or the factory's iterable
        pass after pass (calling the factory again for each pass)."""
        if self.dataset is not None:
            for i, batch in enumerate(self.dataset.batches(batch_size, seed)):
                self.index = i
                yield batch
            return
        while True:
            it = self._iterator()
            count = 0
            while (batch := self._next(it, count)) is not _END:
                self.index = count
                yield self._check(batch, count)
                count += 1
            if count == 0:
                raise DataError(
                    f"{self.name} returned an iterable that yielded no batch when called again "
                    "(an iterator or generator is used up after one pass); the factory must "
                    "return a fresh iterable on every call, e.g. a list of batches or a new "
                    "DataLoader"
                )
            self.passes += 1


def resolve_data(spec: str | Dataset | BatchSource, *, seed: int = 0) -> BatchSource:
    """A built-in data spec (``digits``, ``adding-200``, ...), a factory reference or a Dataset.

    Raises UnknownNameError / ConfigError for a bad spec and DataError for a factory that
    fails or yields unusable batches.
    """
    if isinstance(spec, BatchSource):
        return spec
    if isinstance(spec, Dataset):
        return BatchSource(dataset=spec)
    if is_factory_ref(spec):
        return BatchSource(factory=load_factory(spec), name=f"data factory '{spec}'")
    return BatchSource(dataset=load_data(spec, seed=seed))
