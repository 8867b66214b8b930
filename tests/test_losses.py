"""Distillation losses: values and gradients on known inputs, registry errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgekd.distill.losses import LOSSES, build_loss, kl_div_temperature
from edgekd.errors import EdgekdError

S = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
T = torch.tensor([[1.5, 1.0, -0.5], [0.0, 1.0, 2.0]])
Y = torch.tensor([0, 2])


def test_registry_has_the_required_losses() -> None:
    assert {"ce", "kd", "dkd", "dist", "feature"} <= set(LOSSES)
    with pytest.raises(EdgekdError, match="unknown loss 'nope'"):
        build_loss("nope")
    with pytest.raises(EdgekdError, match="loss 'kd'"):
        build_loss("kd", bogus=1)
    with pytest.raises(EdgekdError, match="temperature > 0"):
        build_loss("kd", temperature=0)


def test_ce_is_plain_cross_entropy() -> None:
    loss, parts = build_loss("ce")(S, None, Y)
    assert loss.item() == pytest.approx(F.cross_entropy(S, Y).item())
    assert parts == {"ce": pytest.approx(loss.item())}


def test_kd_value_matches_hand_computation() -> None:
    temp, alpha = 4.0, 0.7
    loss, parts = build_loss("kd", temperature=temp, alpha=alpha)(S, T, Y)
    p_t = torch.softmax(T / temp, 1)
    log_p_s = torch.log_softmax(S / temp, 1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(1).mean() * temp**2
    ce = F.cross_entropy(S, Y)
    assert parts["kd"] == pytest.approx(kl.item(), rel=1e-5)
    assert loss.item() == pytest.approx(alpha * kl.item() + (1 - alpha) * ce.item(), rel=1e-5)


def test_kd_gradient_is_temperature_times_probability_gap() -> None:
    temp = 3.0
    s = S.clone().requires_grad_(True)
    kl_div_temperature(s, T, temp).backward()
    expected = temp * (torch.softmax(S / temp, 1) - torch.softmax(T / temp, 1)) / len(S)
    assert torch.allclose(s.grad, expected, atol=1e-6)


@pytest.mark.parametrize("name", ["kd", "dkd", "dist"])
def test_teacher_terms_vanish_when_student_equals_teacher(name: str) -> None:
    loss, parts = build_loss(name)(T, T, Y)
    teacher_terms = {k: v for k, v in parts.items() if k != "ce"}
    assert teacher_terms and all(abs(v) < 1e-5 for v in teacher_terms.values())
    assert math.isfinite(loss.item())


def test_dkd_splits_target_and_non_target_terms() -> None:
    loss, parts = build_loss("dkd", alpha=1.0, beta=8.0, ce_weight=1.0)(S, T, Y)
    assert set(parts) == {"ce", "tckd", "nckd"}
    assert parts["tckd"] > 0 and parts["nckd"] > 0
    assert loss.item() == pytest.approx(parts["ce"] + parts["tckd"] + 8.0 * parts["nckd"], rel=1e-5)


def test_dist_is_invariant_to_teacher_logit_shift() -> None:
    a, _ = build_loss("dist")(S, T, Y)
    b, _ = build_loss("dist")(S, T + 5.0, Y)  # softmax ignores a constant shift per sample
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_feature_loss_learns_a_projection_and_reduces_the_hint() -> None:
    torch.manual_seed(0)
    loss_fn = build_loss("feature", hint_weight=1.0)
    fs = torch.randn(8, 4, 3, 3)
    ft = torch.randn(8, 6, 6, 6)
    loss_fn.init_projection(4, 6)
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        _, parts = loss_fn(S.repeat(4, 1), T.repeat(4, 1), Y.repeat(4), student_feature=fs, teacher_feature=ft)
        first = parts["hint"] if first is None else first
        total, _ = loss_fn(S.repeat(4, 1), T.repeat(4, 1), Y.repeat(4), student_feature=fs, teacher_feature=ft)
        opt.zero_grad()
        total.backward()
        opt.step()
    assert loss_fn.projection.weight.shape == (6, 4, 1, 1)
    assert parts["hint"] < first
    with pytest.raises(EdgekdError, match="feature maps"):
        loss_fn(S, T, Y)


def test_a_new_loss_is_one_registered_class() -> None:
    """Adding a loss is one file: a registered DistillLoss is found by name, takes --loss-arg values, and the
    training loop runs it (here: half label loss, half squared logit distance to the teacher)."""
    from edgekd.data import load_task
    from edgekd.distill.losses import DistillLoss, parse_loss_args, register_loss
    from edgekd.distill.teachers import Teacher
    from edgekd.distill.train import TrainConfig
    from edgekd.students import StudentConfig

    @register_loss("edgekd-test-mse")
    class MSELoss(DistillLoss):
        def __init__(self, weight: float = 0.5, label_smoothing: float = 0.0) -> None:
            super().__init__(label_smoothing)
            self.weight = weight

        def forward(self, student, teacher, labels, **features):
            mse = F.mse_loss(student, teacher)
            loss = (1 - self.weight) * self.ce(student, labels) + self.weight * mse
            return loss, {"mse": float(mse.detach())}

    try:
        loss = build_loss("edgekd-test-mse", **parse_loss_args(["weight=1"]))
        value, parts = loss(S, T, Y)
        assert math.isclose(float(value), float(F.mse_loss(S, T)), rel_tol=1e-6) and loss.hparams()["weight"] == 1
        from edgekd.distill import train_student

        splits = load_task("digits", limit=200)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
        teacher = Teacher(net, "0" * 64, "factory", "test")
        _, record = train_student(StudentConfig("mlp", {"width": 16, "depth": 1}), splits, teacher,
                                  "edgekd-test-mse", TrainConfig(epochs=1, batch_size=64), progress=False)
        assert record["history"][0]["loss_mse"] > 0
    finally:
        LOSSES.pop("edgekd-test-mse")
