"""BatchSource: every way a data factory fails is one DataError line naming the batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradmedic.errors import DataError
from gradmedic.workflows.batches import BatchSource, resolve_data

X = torch.randn(4, 3)
Y = torch.tensor([0, 1, 2, 1])


def _error(factory, steps: int = 3) -> str:
    with pytest.raises(DataError) as exc:
        src = BatchSource(factory=factory, name="data factory 'd.py:f'")
        it = src.batches(64, 0)
        for _ in range(steps):
            next(it)
    return str(exc.value)


def _raises(exc):
    def factory():
        raise exc

    return factory


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (ValueError("no column 'label'"), "data factory 'd.py:f' raised ValueError: no column 'label' when called; fix the factory or what it reads (it is called with no arguments and must return an iterable of (input, target) batches)"),
        (FileNotFoundError(2, "No such file or directory", "/data/train.csv"), "data factory 'd.py:f' raised FileNotFoundError: [Errno 2] No such file or directory: '/data/train.csv' when called; fix the factory or what it reads (it is called with no arguments and must return an iterable of (input, target) batches)"),
        (SystemExit(0), "data factory 'd.py:f' called sys.exit(0) instead of returning batches; make it return an iterable of (input, target) batches"),
    ],
)  # fmt: skip
def test_a_factory_that_raises_when_called(exc, message):
    assert _error(_raises(exc)) == message


def test_a_factory_that_raises_mid_iteration_names_the_batch():
    def factory():
        for i in range(5):
            if i == 2:
                raise RuntimeError("corrupt record 17")
            yield X, Y

    assert _error(factory) == (
        "data factory 'd.py:f' raised RuntimeError: corrupt record 17 while yielding batch 2 "
        "(the batches before it were read); fix the data pipeline at that batch"
    )


def test_the_same_exhausted_iterator_is_refused_instead_of_spinning():
    shared = iter([(X, Y), (X, Y)])
    assert _error(lambda: shared) == (
        "data factory 'd.py:f' returned an iterable that yielded no batch when called again "
        "(an iterator or generator is used up after one pass); the factory must return a "
        "fresh iterable on every call, e.g. a list of batches or a new DataLoader"
    )


def test_a_fresh_iterable_is_read_pass_after_pass():
    src = BatchSource(factory=lambda: [(X, Y), (X * 2, Y)])
    it = src.batches(64, 0)
    seen = [next(it)[0][0, 0].item() for _ in range(5)]
    assert seen == [X[0, 0].item(), 2 * X[0, 0].item()] * 2 + [X[0, 0].item()]
    assert (src.index, src.passes, src.where) == (0, 2, "batch 0 of pass 3")


@pytest.mark.parametrize(
    ("batches", "message"),
    [
        ([(X, Y), (X[:0], Y[:0])], "batch 1 of data factory 'd.py:f' is empty (input shape (0, 3), target shape (0,)); a batch needs at least one sample: drop empty batches"),
        ([{"x": X, "y": Y}], "batch 0 of data factory 'd.py:f' is a dict with keys x, y, expected an (input, target) pair; yield (x, y) tensors from the data factory"),
        ([(X, Y, Y)], "batch 0 of data factory 'd.py:f' is a tuple of 3 items, expected an (input, target) pair; yield (x, y) tensors from the data factory"),
        ([(X.numpy(), Y)], "batch 0 of data factory 'd.py:f' holds (ndarray, Tensor), expected tensors: yield (torch.Tensor, torch.Tensor), e.g. torch.as_tensor(array)"),
        ([(X, torch.tensor(1))], "batch 0 of data factory 'd.py:f' has a 0-dimensional target; a batch needs a first (batch) dimension: input (B, ...), target (B, ...)"),
        ([], "data factory 'd.py:f' yielded no batch; it must return an iterable of (input, target) batches, e.g. a list of (x, y) tuples or a DataLoader"),
    ],
)  # fmt: skip
def test_unusable_batches(batches, message):
    assert _error(lambda: batches) == message


def test_a_factory_returning_a_non_iterable():
    assert _error(lambda: 42) == (
        "data factory 'd.py:f' returned int, expected an iterable of (input, target) batches, "
        "e.g. a list of tuples or a DataLoader"
    )


def test_info_of_factory_data():
    reg = BatchSource(factory=lambda: [(X, torch.randn(4))]).info
    assert (reg.task, reg.num_outputs, reg.default_loss) == ("regression", 1, "mse")
    multi = BatchSource(factory=lambda: [(X, torch.randn(4, 2))]).info
    assert multi.num_outputs == 2
    cls = BatchSource(factory=lambda: [(X, torch.tensor([0, -100, 4, 1]))]).info
    assert (cls.task, cls.num_outputs) == ("classification", 5)  # -100 is ignore_index
    huge = BatchSource(factory=lambda: [(X, torch.full((4,), 10**9))])
    with pytest.raises(DataError) as exc:
        _ = huge.info
    assert str(exc.value) == (
        "the first batch of the data factory holds the integer target 1000000000, which is not "
        "a class index (at most 999,999); class labels must be 0..C-1 (relabel them), and "
        "regression targets must be float tensors"
    )


def test_resolve_data_names_the_factory(tmp_path):
    f = tmp_path / "d.py"
    f.write_text("def batches():\n    raise OSError(28, 'No space left on device')\n")
    with pytest.raises(DataError) as exc:
        resolve_data(f"{f}:batches")
    assert str(exc.value).startswith(
        f"data factory '{f}:batches' raised OSError: [Errno 28] No space left on device when called"
    )
    assert np.isfinite(resolve_data("digits").dataset.x.numpy()).all()
