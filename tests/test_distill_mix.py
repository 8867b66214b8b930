"""Function matching (edgekd.distill.mix) and the ship decision's evidence (edgekd.distill.guard)."""

from __future__ import annotations

from pathlib import Path

import distill_fixtures
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgekd.data import load_task
from edgekd.data.unlabelled import keep_labels
from edgekd.distill import augment, guard
from edgekd.distill import mix as mixing
from edgekd.distill.cache import TeacherCache
from edgekd.distill.losses import build_loss
from edgekd.distill.teachers import ResNetTeacher, Teacher
from edgekd.distill.train import TrainConfig, fit
from edgekd.errors import EdgekdError
from edgekd.students import StudentConfig, build_student, to_model_input

SMALL = StudentConfig("dscnn", {"width": 8, "depth": 2, "resolution": None})


isolated_teacher_cache = distill_fixtures.isolated_teacher_cache  # autouse: a fresh EDGEKD_CACHE per test
digits = distill_fixtures.digits


@pytest.fixture(scope="module")
def teacher(digits) -> Teacher:
    torch.manual_seed(0)
    module = ResNetTeacher(tuple(digits.spec.input_shape), 10, width=8, stages=2).eval()
    return Teacher(module, "0" * 64, "edgekd", "test-teacher")


def test_mix_draws_are_seeded_and_mix_exactly() -> None:
    mixup = mixing.build_mix("mixup")
    a, b, c = (mixup.draw(1000, (1, 8, 8), 0, 3), mixup.draw(1000, (1, 8, 8), 0, 3),
               mixup.draw(1000, (1, 8, 8), 0, 4))
    assert torch.equal(a.mixed, b.mixed) and torch.equal(a.partner, b.partner) and torch.equal(a.lam, b.lam)
    assert not torch.equal(a.mixed, c.mixed)
    assert 0.45 < float(a.mixed.float().mean()) < 0.55  # prob 0.5
    assert float(a.lam.min()) >= 0 and float(a.lam.max()) <= 1
    x, xp = torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
    out = mixup.combine(x, xp, torch.tensor([0.25, 0.75]), torch.zeros(2, 4, dtype=torch.long))
    assert torch.equal(out[0], torch.full((1, 8, 8), 0.25)) and torch.equal(out[1], torch.full((1, 8, 8), 0.75))

    cutmix = mixing.build_mix("cutmix")
    d = cutmix.draw(200, (1, 8, 8), 0, 0)
    pasted = cutmix.combine(torch.zeros(200, 1, 8, 8), torch.ones(200, 1, 8, 8), d.lam, d.boxes)
    # lam is the exact share of the sample kept; the rest is the partner's box.
    assert torch.allclose(pasted.mean((1, 2, 3)), 1 - d.lam)
    i = int(torch.argmin(d.lam))  # the largest box
    r0, r1, c0, c1 = (int(v) for v in d.boxes[i])
    assert r1 > r0 and c1 > c0 and float(pasted[i, 0, r0:r1, c0:c1].min()) == 1.0
    series = cutmix.draw(50, (6, 100), 1, 2)
    seg = cutmix.combine(torch.zeros(50, 6, 100), torch.ones(50, 6, 100), series.lam, series.boxes)
    assert torch.allclose(seg.mean((1, 2)), 1 - series.lam)
    assert mixing.build_mix("none") is None
    with pytest.raises(EdgekdError, match="unknown; known: none, cutmix, mixup"):
        mixing.build_mix("mosaic")


def test_student_and_teacher_see_the_same_mixed_image_and_mixed_rows_get_the_soft_term(digits,
                                                                                      teacher: Teacher) -> None:
    policy = augment.Policy.for_task("digits", "image")
    plain = TeacherCache(teacher, digits.x_train, digits.y_train, policy, aug_seed=0)
    mixed = TeacherCache(teacher, digits.x_train, digits.y_train, policy, aug_seed=0, mix="mixup")
    assert plain.dir != mixed.dir  # a mix is part of the key
    epoch = 1
    t_logits = mixed.epoch_logits(epoch)
    # Recompute the mixed batch of samples 0..31 as fit() builds it.
    x = torch.from_numpy(digits.x_train)
    idx = torch.arange(32)
    draw = augment.draw(policy, len(x), 0, epoch)
    m = mixing.build_mix("mixup")
    md = m.draw(len(x), tuple(x.shape[1:]), 0, epoch)
    xb, rows = mixing.apply(m, md, augment.apply(x[idx], idx, draw, policy), idx,
                            lambda p: augment.apply(x[p], p, draw, policy))
    assert 5 < int(rows.sum()) < 27
    i = int(torch.nonzero(rows)[0])
    p, lam = int(md.partner[i]), float(md.lam[i])
    by_hand = lam * augment.apply(x[[i]], idx[[i]], draw, policy) + \
        (1 - lam) * augment.apply(x[[p]], torch.tensor([p]), draw, policy)
    assert torch.allclose(xb[i], by_hand[0], atol=1e-6)
    assert torch.allclose(t_logits[idx], teacher.logits(xb), atol=1e-4)  # the teacher saw the mixed image
    assert torch.equal(xb[~rows], augment.apply(x[idx], idx, draw, policy)[~rows])  # the others are untouched
    # The loss on that batch: mixed rows have no label, only T^2 KL against the teacher on the mixed image.
    y = torch.where(rows, -1, torch.from_numpy(digits.y_train[:32]))
    torch.manual_seed(0)
    student = build_student(SMALL, digits.spec.input_shape, 10)
    s = student(to_model_input(xb, tuple(digits.spec.input_shape)))
    loss = build_loss("kd", temperature=4.0, alpha=0.5)
    total, parts = loss.mixed(s, t_logits[idx], y)
    share = 1 - float(rows.float().mean())
    q_t = F.softmax(t_logits[idx][rows] / 4, 1)
    kl = (q_t * (q_t.log() - F.log_softmax(s[rows] / 4, 1))).sum(1).mean().detach() * 16
    labelled, _ = loss(s[~rows], t_logits[idx][~rows], y[~rows])
    # rel 1e-4: float32 log(softmax) by hand vs the loss's log_softmax differ in the fifth digit
    assert parts["soft_unlabelled"] == pytest.approx((1 - share) * float(kl), rel=1e-4)
    assert float(total) == pytest.approx(share * float(labelled) + (1 - share) * float(kl), rel=1e-4)


def test_fit_with_mix_is_deterministic_and_uses_the_soft_term(digits, teacher: Teacher) -> None:
    policy = augment.Policy.for_task("digits", "image")
    shape = tuple(digits.spec.input_shape)
    runs = []
    for mix in ("mixup", "mixup", "none"):
        cache = TeacherCache(teacher, digits.x_train, digits.y_train, policy, aug_seed=0, mix=mix)
        torch.manual_seed(0)
        model = build_student(SMALL, shape, 10)
        res = fit(model, digits.x_train, digits.y_train, digits.x_val, digits.y_val, shape, build_loss("kd"),
                  TrainConfig(epochs=2, batch_size=64, mix=mix), policy, teacher=cache, progress=False)
        runs.append((model.state_dict(), res.history))
    (w1, h1), (w2, h2), (w3, h3) = runs
    assert all(torch.equal(w1[k], w2[k]) for k in w1)  # same seeds, same mixes, same student
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)
    assert all(row["loss_soft_unlabelled"] > 0 for row in h1)  # no unlabelled data: the mixed rows are soft-only
    assert all("loss_soft_unlabelled" not in row for row in h3)
    # Without a teacher (the no-teacher twin) the option mixes nothing.
    torch.manual_seed(0)
    model = build_student(SMALL, shape, 10)
    res = fit(model, digits.x_train, digits.y_train, digits.x_val, digits.y_val, shape, build_loss("ce"),
              TrainConfig(epochs=1, batch_size=64, mix="cutmix"), policy, progress=False)
    assert "loss_soft_unlabelled" not in res.history[0]


def test_held_out_unlabelled_samples_are_set_aside(digits) -> None:
    few = keep_labels(digits, 64)
    n_unl = len(few.x_unlabelled)
    rest, held = guard.hold_out_unlabelled(few)
    assert held is not None and len(held) == n_unl // 10 and len(rest.x_unlabelled) == n_unl - len(held)
    assert len(rest.indices["unlabelled"]) == len(rest.x_unlabelled)
    together = np.concatenate([rest.x_unlabelled, held]).reshape(n_unl, -1)
    assert len(np.unique(together, axis=0)) == len(np.unique(few.x_unlabelled.reshape(n_unl, -1), axis=0))
    again_rest, again = guard.hold_out_unlabelled(few)
    assert np.array_equal(held, again)  # seeded
    assert guard.hold_out_unlabelled(digits) == (digits, None)  # no unlabelled samples: nothing to hold out
    tiny = keep_labels(load_task("digits", limit=120), 64)  # 56 unlabelled: 5 held out would be < 2 per class
    assert guard.hold_out_unlabelled(tiny)[1] is None


def test_ship_decision_uses_decisive_validation_else_teacher_agreement() -> None:
    d_right = np.array([True] * 20 + [False] * 0 + [True] * 2)
    t_right = np.array([True] * 20 + [False] * 2)
    close = guard.paired(d_right, t_right)  # 2 vs 0: not significant
    assert close == {"samples": 22, "only_distilled_right": 2, "only_twin_right": 0, "z": 1.414, "decisive": False}
    far = guard.paired(np.array([False] * 10 + [True] * 90), np.array([True] * 100))
    assert far["only_twin_right"] == 10 and far["z"] == pytest.approx(-3.162, abs=1e-3) and far["decisive"]
    dist = {"loss": "kd", "val_accuracy": 0.90, "test_float": 0.8, "test_int8": 0.8}
    twin = {"loss": "ce", "val_accuracy": 0.90, "test_float": 0.8, "test_int8": 0.8}
    apart = guard.paired(np.array([True] * 465 + [False] * 35), np.array([True] * 425 + [False] * 75))
    agree = {"samples": 500, "distilled": 0.93, "no_teacher": 0.85, "paired": apart}  # 40 vs 0: z 6.3
    # Not decisive, teacher at least as good as the twin: a decisive agreement on held-out samples decides.
    c = guard.choose(dist, twin, {"validation": close, "teacher_val": 0.95, "agreement": agree})
    assert c["shipped"] == "distilled" and c["decided_by"] == "teacher agreement"
    assert "500 held-out unlabelled samples (93.00% vs 85.00%, McNemar z 6.325)" in c["reason"]
    flipped = {"samples": 500, "distilled": 0.85, "no_teacher": 0.93, "paired": guard.paired(
        np.array([True] * 425 + [False] * 75), np.array([True] * 465 + [False] * 35))}
    assert guard.choose(dist, twin, {"validation": close, "teacher_val": 0.95, "agreement": flipped})[
        "shipped"] == "no-teacher"
    # Agreement that differs by noise (the quickstart's 107 vs 106 of 109) does not overturn the distilled student:
    # validation accuracy decides (2 vs 0 here, not significant either), the distilled one on a tie.
    noise = {"samples": 109, "distilled": 106 / 109, "no_teacher": 107 / 109, "paired": guard.paired(
        np.array([True] * 106 + [False] * 3), np.array([True] * 107 + [False] * 2))}
    assert not noise["paired"]["decisive"]
    n = guard.choose(dist | {"val_accuracy": 0.92}, twin,
                     {"validation": close, "teacher_val": 0.95, "agreement": noise})
    assert n["shipped"] == "distilled" and n["decided_by"] == "validation (not decisive)"
    assert "neither is the students' agreement with the teacher on 109 held-out" in n["reason"]
    # A teacher worse than the twin on validation: agreement with it is no evidence; validation decides.
    worse = guard.choose(dist, twin | {"val_accuracy": 0.91}, {"validation": close, "teacher_val": 0.85,
                                                                "agreement": agree})
    assert worse["shipped"] == "no-teacher" and worse["decided_by"] == "validation (not decisive)"
    assert "not better than the twin" in worse["reason"]
    # A decisive validation difference wins over agreement.
    decisive = guard.choose(dist | {"val_accuracy": 0.80}, twin, {"validation": far, "teacher_val": 0.95,
                                                                   "agreement": agree})
    assert decisive["shipped"] == "no-teacher" and decisive["decided_by"] == "validation"


@pytest.mark.slow
def test_baseline_with_unlabelled_records_the_ship_evidence(tmp_path: Path, digits, teacher: Teacher) -> None:
    from edgekd.distill import distill, train_teacher

    path = tmp_path / "t.pt"
    train_teacher("digits", path, epochs=3, limit=400, progress=False)
    d = distill("nrf52840-dk", "digits", str(path), tmp_path / "run", epochs=3, limit=400, labels=100,
                baseline=True, families=["dscnn"], progress=False, mix="cutmix", views=2)
    unl = d["unlabelled"]
    assert unl["held_out_for_ship_decision"] > 0
    assert unl["used"] == unl["samples"] == d["training"]["unlabelled_samples"]
    ev = d["shipped"]["evidence"]
    assert ev["validation"]["samples"] == d["data"]["val"] == 12
    assert ev["agreement"]["samples"] == unl["held_out_for_ship_decision"]
    assert 0 <= ev["agreement"]["distilled"] <= 1 and d["shipped"]["decided_by"] in (
        "validation", "validation (not decisive)", "teacher agreement")
    assert d["function_matching"]["name"] == "cutmix" and d["train_config"]["mix"] == "cutmix"
    # --views 2: three epochs over two cached draws, the teacher ran twice (a fresh cache: both misses).
    assert d["train_config"]["views"] == 2
    assert d["teacher_cache"]["draws"] == 2 and d["teacher_cache"]["misses"] == 2


def test_cli_unknown_mix_is_exit_2_and_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgekd.cli import main

    res = CliRunner().invoke(main, ["distill", "--target", "nrf52840-dk", "--task", "digits", "--out",
                                    str(tmp_path / "run"), "--mix", "mosaic"])
    assert res.exit_code == 2 and "--mix 'mosaic': unknown; known: none, cutmix, mixup" in res.output
    assert not (tmp_path / "run").exists()


def test_build_refuses_an_unknown_mix_before_any_stage(tmp_path: Path) -> None:
    from cli_helpers import one_line_exit_2

    line = one_line_exit_2(["build", "--target", "nrf52840-dk", "--task", "digits", "--out", str(tmp_path / "b"),
                            "--mix", "mosaic"])
    assert "--mix 'mosaic': unknown; known: none, cutmix, mixup" in line
    assert not (tmp_path / "b").exists()


@pytest.mark.slow  # a --fast build: about 2 minutes on shared cores
def test_build_passes_mix_and_views_to_the_distill_stage(tmp_path: Path, cost_cache: Path) -> None:
    import json

    from click.testing import CliRunner

    from edgekd.cli import main

    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["build", "--target", "nrf52840-dk", "--task", "digits", "--fast", "--epochs",
                                    "3", "--labels", "200", "--mix", "mixup", "--views", "2", "--emulator", "none",
                                    "--family", "dscnn", "--out", str(out), "--json"])
    assert res.exit_code in (0, 1), (res.output, res.exception)  # 1: a gate; the distill stage ran either way
    d = json.loads((out / "student" / "distill.json").read_text())
    assert d["train_config"]["mix"] == "mixup" and d["train_config"]["views"] == 2
    assert d["function_matching"]["name"] == "mixup" and d["teacher_cache"]["draws"] == 2
