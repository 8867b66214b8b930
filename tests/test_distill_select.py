"""Which epoch a training run ships (edgekd.distill.train.selection): the best on validation when validation can
tell epochs apart, the final one when it is too small to (a best-of-E pick on a few hundred samples is noise)."""

from __future__ import annotations

from pathlib import Path

import distill_fixtures
import pytest
import torch

from edgekd.distill import augment
from edgekd.distill.losses import build_loss
from edgekd.distill.summary import distill_text
from edgekd.distill.train import MIN_SELECT_SAMPLES, TrainConfig, fit, selection
from edgekd.errors import EdgekdError
from edgekd.students import StudentConfig, build_student

isolated_teacher_cache = distill_fixtures.isolated_teacher_cache
digits = distill_fixtures.digits
SMALL = StudentConfig("dscnn", {"width": 8, "depth": 2, "resolution": None})


def test_the_rule_depends_on_the_validation_size_only() -> None:
    assert MIN_SELECT_SAMPLES == 2000
    assert selection("auto", 556)["rule"] == "final epoch"  # --labels 5000 on Fashion-MNIST
    assert selection("auto", 1999)["rule"] == "final epoch"
    assert selection("auto", 2000)["rule"] == "best validation"
    assert selection("auto", 5400)["rule"] == "best validation"  # every Fashion-MNIST label
    assert "only 556 validation samples (< 2000)" in selection("auto", 556)["why"]
    assert selection("best", 23)["rule"] == "best validation" and selection("final", 5400)["rule"] == "final epoch"
    with pytest.raises(EdgekdError, match="'median' is not one of auto, best, final"):
        selection("median", 100)


@pytest.fixture
def one_thread():
    """The trajectory asserted below (best epoch 4 of 6) is float arithmetic: pin it to one intra-op thread, so a
    2-core CI machine and a 1-thread helper run take the same path."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(splits, out: Path, select: str):
    torch.manual_seed(0)
    model = build_student(SMALL, splits.spec.input_shape, 10)
    result = fit(model, splits.x_train, splits.y_train, splits.x_val, splits.y_val, tuple(model.input_shape),
                 build_loss("ce"), TrainConfig(epochs=6, batch_size=64, lr=2e-2, select=select),
                 augment.Policy.for_task("digits", "image"), out, progress=False)
    return model, result, torch.load(out / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize("select", ["auto", "best"])
def test_fit_leaves_the_model_at_the_epoch_the_rule_picks(tmp_path: Path, digits, select: str, one_thread) -> None:
    assert len(digits.y_val) == 45  # 400 digits samples: far below MIN_SELECT_SAMPLES, so auto ships the final
    model, result, ckpt = _run(digits, tmp_path, select)
    history = result.history
    assert result.best_epoch == 4 and len(history) == 6  # this run's best validation epoch is not its last
    assert round(45 * history[3]["val_accuracy"]) == 19 and round(45 * history[5]["val_accuracy"]) == 16
    final = select == "auto"
    expected = ckpt["model"] if final else ckpt["best"]["state"]  # checkpoint: final weights, and the best ones
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    shipped = history[-1] if final else history[3]
    assert result.selection["rule"] == ("final epoch" if final else "best validation")
    assert result.selection["epoch"] == shipped["epoch"] == (6 if final else 4)
    assert result.shipped_val_accuracy == result.selection["val_accuracy"] == shipped["val_accuracy"]
    assert result.best_val_accuracy == history[3]["val_accuracy"]  # the best is recorded either way


@pytest.mark.slow  # a 2-epoch teacher and a --baseline distillation of digits (~30 s)
def test_distill_records_the_rule_for_the_student_and_its_twin(tmp_path: Path) -> None:
    from edgekd.distill import distill, train_teacher

    teacher = tmp_path / "t.pt"
    train_teacher("digits", teacher, epochs=2, limit=400, progress=False)
    d = distill("nrf52840-dk", "digits", str(teacher), tmp_path / "run", epochs=2, limit=400, labels=100,
                baseline=True, families=["dscnn"], verify_int8=False, progress=False)
    sel = d["epoch_selection"]
    assert sel["student"]["rule"] == sel["no_teacher"]["rule"] == "final epoch"  # same validation, same rule
    assert sel["student"]["epoch"] == 2 and sel["no_teacher"]["epoch"] == d["no_teacher"]["epochs_run"]
    assert "only 12 validation samples" in sel["student"]["why"]
    assert d["shipped"]["distilled"]["val_accuracy"] == d["training"]["history"][-1]["val_accuracy"]
    assert d["shipped"]["no_teacher"]["val_accuracy"] == d["no_teacher"]["history"][-1]["val_accuracy"]
    assert "epoch shipped: 2 (final epoch: only 12 validation samples" in distill_text(d, "run")


def test_the_build_report_says_which_epoch_was_shipped() -> None:
    from edgekd.build.report import Report

    report = object.__new__(Report)
    report.distillation = {"shipped": {"shipped": "distilled", "reason": "r"},
                           "epoch_selection": {"student": selection("auto", 23) | {"epoch": 20, "val_accuracy": 1.0}}}
    assert "Epoch shipped: 20 (final epoch: only 23 validation samples (< 2000)" in "\n".join(
        report.distillation_lines())
