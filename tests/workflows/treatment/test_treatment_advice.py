"""The lines that apply exactly the verified transform, learning rate included."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from gradmedic.diagnosis.finding import Prescription
from gradmedic.remedies import RemedyReport, make_clipper
from gradmedic.workflows.treatment.advice import advice, manual_changes
from gradmedic.workflows.treatment.choice import UNTREATED


def test_advice_lines_for_loss_clipper_and_the_verified_rate():
    clip = make_clipper("clip-grad-norm(max_norm=0.5)")
    rep = RemedyReport("x", loss="bce-logits", grad_transform=clip, lr_factor=0.1)
    best = {"name": "a+b", "specs": ["fix-loss", "clip-grad-norm(max_norm=0.5)"], "lr": 0.003}
    lines = advice(best, Path("o"), rep, user_lr=0.01).splitlines()
    assert lines[3] == (
        'model, report = apply(model, "fix-loss+clip-grad-norm(max_norm=0.5)", data_batch=(x, y))'
    )
    assert 'model.load_state_dict(torch.load("o/best_model.pt"))' in lines[5]
    assert "loss_fn = torch.nn.BCEWithLogitsLoss()" in lines
    assert "report.grad_transform(model.parameters())  # clip-grad-norm(max_norm=0.5)" in lines
    # the rate is the verified one as a number (grid rate x lower-lr factor), not a factor
    assert lines[-1] == "lr = 0.003  # the verified learning rate (0.3x yours)"


def test_untreated_advice_gives_the_rate_and_the_changes_by_hand():
    diag = SimpleNamespace(
        findings=[
            SimpleNamespace(
                prescriptions=[
                    Prescription("clip-grad-norm"),
                    Prescription("standardise-data", reason="inputs of 1e3", manual=True),
                ]
            )
        ]
    )
    assert manual_changes(diag) == ["standardise-data (inputs of 1e3)"]
    text = advice(
        {"name": UNTREATED, "specs": [], "lr": 0.1},
        None,
        None,
        user_lr=1.0,
        verdict="no cure within 30 steps: ...",
        diagnosis=diag,
    )
    assert text.splitlines() == [
        "no cure within 30 steps: ...",
        "Train at lr 0.1 instead of 1:",
        "lr = 0.1  # the verified learning rate (0.1x yours)",
        "Change by hand (the diagnosis): standardise-data (inputs of 1e3)",
        "Try other remedies with --remedy (gradmedic.remedies.applicable(model) lists them) or "
        "more steps.",
    ]
    same = advice({"name": UNTREATED, "specs": [], "lr": 0.01}, None, None, user_lr=0.01)
    assert "Train at lr" not in same and "keep the model as it is" not in same
