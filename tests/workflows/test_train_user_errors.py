"""train(): whatever the user's model or loss raises or returns wrongly is one GradmedicError
line with the step, batch, module, shapes and what to do; targets off by a trailing 1 fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gradmedic.errors import DataError, GradmedicError, ModelError
from gradmedic.workflows.batches import BatchSource
from gradmedic.workflows.train import TrainConfig, train

G = torch.Generator().manual_seed(0)
X = torch.randn(8, 5, generator=G)
Y = torch.randint(0, 3, (8,), generator=G)
CFG = TrainConfig(steps=2, seed=0)


def _data(*batches):
    return BatchSource(factory=lambda: list(batches) or [(X, Y)])


class Returns(nn.Module):
    def __init__(self, what):
        super().__init__()
        self.lin = nn.Linear(5, 3)
        self.what = what

    def forward(self, x):
        out = self.lin(x)
        return {
            "dict": {"logits": out},
            "none": None,
            "pair": (None, out),
            "detached": out.detach(),
        }[self.what]


def _message(model, data=None, loss=None, monitor=False) -> str:
    with pytest.raises(GradmedicError) as exc:
        train(model, data or _data(), CFG, loss=loss, monitor=monitor)
    return str(exc.value)


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("dict", "the model's forward returned a dict (keys: logits) at step 0 (batch 0); gradmedic needs the output tensor: return it (e.g. out['logits']) or wrap the model so that forward returns one tensor"),
        ("none", "the model's forward returned None at step 0 (batch 0); it must return the output tensor (is a return statement missing?)"),
        ("pair", "the model's forward returned a tuple whose first item is NoneType (at step 0 (batch 0)); gradmedic trains on the first item: put the output tensor first, e.g. return logits, extra"),
        ("detached", "the output the model returned at step 0 (batch 0) does not depend on its trainable parameters (no grad_fn): forward cuts the graph (.detach(), .item(), .data, torch.no_grad() or a NumPy round trip); remove that so that gradients can flow"),
    ],
)  # fmt: skip
def test_what_forward_returns_is_checked(what, message):
    assert _message(Returns(what)) == message


def test_batchnorm_on_a_batch_of_one_names_the_module_and_the_batch():
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(ModelError) as exc:
        train(net, _data((X, Y), (X[:1], Y[:1])), CFG)  # monitored: hooks must not hide it
    assert str(exc.value) == (
        "the model failed at step 1 (batch 1) in module '1' (BatchNorm1d): ValueError: Expected "
        "more than 1 value per channel when training, got input size torch.Size([1, 4]) (module "
        "input (1, 4); batch input (1, 5) float32, target (1,) int64; data 'custom', task "
        "classification); BatchNorm cannot normalise a batch of one sample in training mode: "
        "drop the incomplete last batch (DataLoader(..., drop_last=True)) or use a batch size "
        "that divides the data"
    )


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(7, 3)

    def forward(self, x):
        return self.inner(torch.relu(x))


def test_the_innermost_module_and_its_input_are_named():
    net = nn.Sequential(nn.Linear(5, 6), nn.Sequential(Block()))
    msg = _message(net)
    assert msg.startswith(
        "the model cannot run on this data at step 0 (batch 0) in module '1.0.inner' (Linear): "
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (8x6 and 7x3) at "
        "test_train_user_errors.py:"
    ), msg
    assert msg.endswith(
        " (module input (8, 6); batch input (8, 5) float32, target (8,) int64; data 'custom', "
        "task classification); pick a model that fits the data (e.g. --model mlp for flat "
        "data, --model lstm for adding-T) or change its options"
    ), msg


ASSERTS = """
import torch
from torch import nn

class Asserts(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 3)

    def forward(self, x):
        assert x.shape[1] == 6
        return self.lin(x)
"""


def test_a_bare_assert_quotes_its_line(tmp_path):
    from gradmedic._callspec import load_factory

    (tmp_path / "asserting.py").write_text(ASSERTS)  # outside pytest's assert rewriting
    msg = _message(load_factory(f"{tmp_path}/asserting.py:Asserts")())
    assert msg == (
        "the model failed at step 0 (batch 0) in Asserts: AssertionError (assert x.shape[1] == 6) "
        "at asserting.py:11 "
        "(module input (8, 5); batch input (8, 5) float32, target (8,) int64; data 'custom', "
        "task classification); an assert in the model failed: check what it expects (shape, "
        "dtype) against the data"
    )


class Exits(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 3)

    def forward(self, x):
        raise SystemExit(3)


def test_sys_exit_in_forward_is_an_error_not_an_exit():
    assert _message(Exits()).startswith(
        "the model failed at step 0 (batch 0) in Exits: sys.exit(3) (module input (8, 5);"
    )


def test_meta_device_model_is_refused():
    assert _message(nn.Linear(5, 3, device="meta")) == (
        "Linear has parameters on the meta device (shapes without values), so it cannot be "
        "trained; build it on a real device, or call model.to_empty(device='cpu') and "
        "initialise its weights"
    )


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (Y + 3, "class label 5 at step 0 (batch 0) is out of range for the model's 3 outputs (labels 3..5; batch input (8, 5) float32, output (8, 3) float32, target (8,) int64); class labels must be 0..2: give the model's last layer 6 outputs, or relabel the targets"),
        (Y - 2, "class label -2 at step 0 (batch 0) is out of range for the model's 3 outputs (labels -2..0; batch input (8, 5) float32, output (8, 3) float32, target (8,) int64); class labels must be 0..2: negative labels are skipped only when they equal ignore_index (-100)"),
        (torch.full((8,), 10**9), "class label 1000000000 at step 0 (batch 0) is out of range for the model's 3 outputs (labels 1000000000..1000000000; batch input (8, 5) float32, output (8, 3) float32, target (8,) int64); class labels must be 0..2: is the target the right column? (regression targets must be float tensors)"),
    ],
)  # fmt: skip
def test_labels_out_of_range(labels, message):
    msg = _message(nn.Linear(5, 3), _data((X, Y), (X, labels)), loss="ce")
    assert msg == message.replace("step 0 (batch 0)", "step 1 (batch 1)")


def test_ignore_index_labels_train():
    y = Y.clone()
    y[0] = -100
    run = train(nn.Linear(5, 3), _data((X, y)), CFG, loss=F.cross_entropy, monitor=False)
    assert len(run.losses) == 2


def test_batch_sizes_that_differ_and_bce_on_class_labels():
    msg = _message(nn.Linear(5, 3), _data((X, Y[:6])), loss="ce")
    assert msg.endswith(
        "(batch input (8, 5) float32, output (8, 3) float32, target (6,) int64); the model's "
        "output holds 8 samples but the target 6: the inputs and targets of a batch must have "
        "the same first (batch) dimension"
    ), msg
    msg = _message(nn.Linear(5, 3), loss="bce")
    assert msg.startswith(
        "the loss (BCELoss) failed at step 0 (batch 0): ValueError: Using a target"
    )
    assert msg.endswith(
        "; BCELoss needs float targets in [0, 1] of the output's shape, but the targets are "
        "integer class labels: use --loss ce for class labels"
    )


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        (lambda o, y: float(F.cross_entropy(o, y)), "the loss (<lambda>) returned a Python float (1.237) at step 0 (batch 0), expected a scalar tensor: return the torch.Tensor itself (not .item() or float(...)) so that gradients can flow"),
        (lambda o, y: None, "the loss (<lambda>) returned None at step 0 (batch 0), expected a scalar tensor; is a return statement missing in the loss?"),
        (lambda o, y: F.cross_entropy(o, y, reduction="none"), "the loss (<lambda>) returned a tensor of shape (8,) float32 at step 0 (batch 0), expected a scalar (gradmedic backpropagates one number); reduce it, e.g. with .mean()"),
        ("ce:reduction=none", "the loss (CrossEntropyLoss) returned a tensor of shape (8,) float32 at step 0 (batch 0), expected a scalar (gradmedic backpropagates one number); the loss has reduction='none': use reduction='mean' (the default) or 'sum'"),
        (lambda o, y: F.cross_entropy(o.detach(), y), "the loss (<lambda>) at step 0 (batch 0) does not depend on the model's output (no grad_fn): it cuts the graph (.detach(), .item(), torch.tensor(number)); compute it from the output with torch operations"),
    ],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_what_the_loss_returns_is_checked(loss, message):
    torch.manual_seed(0)
    assert _message(nn.Linear(5, 3), loss=loss) == message


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 3)

    def forward(self, x):
        out = torch.sigmoid(self.lin(x))
        out += 1  # sigmoid's backward needs its output
        return out


def test_a_backward_failure_says_what_to_do():
    msg = _message(InPlace(), loss="ce")
    assert msg.startswith("the backward pass failed at step 0 (batch 0): RuntimeError: one of")
    assert msg.endswith(
        "(batch input (8, 5) float32, output (8, 3) float32, target (8,) int64); an in-place "
        "operation changed a tensor that the gradient needs: use the out-of-place form "
        "(x = x + y instead of x += y, inplace=False)"
    )


def test_a_target_off_by_a_trailing_one_is_reshaped_with_a_note():
    xb, yb = X, torch.rand(8, 1, generator=G)
    flat = nn.Sequential(nn.Linear(5, 1), nn.Flatten(0))  # outputs (B,)
    run = train(flat, _data((xb, yb)), CFG, loss="bce-logits", monitor=False)
    assert run.notes == [
        "the targets of shape (8, 1) were reshaped to the output's shape (8,) (they differ "
        "only by a trailing dimension of size 1)"
    ]
    net = nn.Linear(5, 1)
    with torch.no_grad():
        expected = F.mse_loss(net(xb), yb).item()  # not the (8, 8) broadcast of (8, 1) vs (8,)
    run = train(net, _data((xb, yb[:, 0])), CFG, loss="mse", monitor=False)
    assert run.notes == [
        "the targets of shape (8,) were reshaped to the output's shape (8, 1) (they differ "
        "only by a trailing dimension of size 1)"
    ]
    assert run.losses[0] == pytest.approx(expected, rel=1e-6)


def test_integer_class_labels_are_not_reshaped_to_a_single_logit():
    with pytest.raises(DataError):
        train(nn.Linear(5, 1), _data((X, (Y > 0).long())), CFG, loss="bce-logits", monitor=False)


def test_input_dtype_and_embedding_ids_say_what_to_convert():
    msg = _message(nn.Linear(5, 3), _data((X.double(), Y)))
    assert msg.endswith(
        "; the batch input is float64 and the model's weights are float32: convert the data in "
        "the factory (e.g. x.to(torch.float32))"
    ), msg
    net = nn.Sequential(nn.Embedding(4, 2), nn.Flatten(), nn.Linear(10, 3))
    msg = _message(net, _data((torch.arange(40).reshape(8, 5) % 9, Y)))
    assert msg == (
        "the model failed at step 0 (batch 0) in module '0' (Embedding): IndexError: index out "
        "of range in self (module input (8, 5); batch input (8, 5) int64, target (8,) int64; "
        "data 'custom', task classification); the ids fed to this Embedding must lie in 0..3 "
        "(it has 4 rows)"
    )
