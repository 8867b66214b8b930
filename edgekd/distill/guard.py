"""Checks that keep distillation from making a student worse, and say so when it would.

* Before training: the teacher is measured on the validation split. At chance level (no better than always
  answering the most common class, within sampling noise) it is refused in one line (exit 2) unless
  ``--allow-weak-teacher``: a randomly initialised ``module:factory`` teacher without ``--teacher-weights``
  otherwise trains the student to imitate noise and every later gate passes. A teacher that is not better than
  a quick no-teacher run of the student (or than the full no-teacher twin of ``--baseline``) is warned about.
* After training, with ``--baseline``: the better of the distilled student and its no-teacher twin is shipped,
  and the record says which, why, on what evidence, and the test accuracies of both (float and int8). With few
  labels the validation split is tiny (23 samples for 200 digits labels: 100% vs 100% says nothing), so the
  labelled validation decides only when the two students' difference on it is significant (McNemar, paired);
  otherwise, when the teacher is at least as good as the twin on validation, agreement with the teacher on
  held-out unlabelled samples (up to 2,000, never trained on) decides.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from edgekd.data import Splits
from edgekd.errors import EdgekdError
from edgekd.logs import log

#: The quick no-teacher run: about this many optimizer steps on at most QUICK_SAMPLES labelled samples (~30 s for
#: a microcontroller student on Fashion-MNIST), whatever ``--epochs`` says.
QUICK_STEPS = 150
QUICK_SAMPLES = 5000
#: Unlabelled samples set aside for the ship decision under ``--baseline``: a tenth, at most this many, and none
#: below HOLDOUT_MIN_PER_CLASS per class (too few to say anything).
HOLDOUT_MAX = 2000
HOLDOUT_MIN_PER_CLASS = 2
#: |b - c| / sqrt(b + c) above this (two-sided 5% of McNemar's normal approximation) makes validation decisive.
DECISIVE_Z = 1.96


def chance_level(y: np.ndarray, num_classes: int) -> float:
    """Accuracy of always answering the most common class of ``y`` (1/K for a balanced set)."""
    return float(np.bincount(y, minlength=num_classes).max() / len(y)) if len(y) else 1.0 / num_classes


def chance_threshold(y: np.ndarray, num_classes: int) -> float:
    """Accuracy at or below which a model is at chance on ``y``: chance plus 3 standard errors of a chance-level
    guesser on ``len(y)`` samples, and at least 2 points (so a tiny split does not call a weak model chance)."""
    p = chance_level(y, num_classes)
    return p + max(0.02, 3 * math.sqrt(p * (1 - p) / max(1, len(y))))


def check_teacher(val_accuracy: float, splits: Splits, ref: str, allow_weak: bool) -> dict[str, Any]:
    """Refuse a chance-level teacher (unless ``allow_weak``); returns what was measured, for distill.json."""
    chance = chance_level(splits.y_val, splits.spec.num_classes)
    bar = chance_threshold(splits.y_val, splits.spec.num_classes)
    weak = val_accuracy <= bar
    record = {"val_accuracy": val_accuracy, "val_samples": int(len(splits.y_val)), "chance": chance,
              "chance_threshold": bar, "at_chance": weak, "allowed_weak": bool(weak and allow_weak)}
    if weak and not allow_weak:
        hint = (" (a module:factory teacher needs --teacher-weights, else it is randomly initialised)"
                if ":" in ref and not ref.endswith((".pt", ".pt2", ".onnx", ".tflite")) else "")
        raise EdgekdError(f"--teacher {ref}: {100 * val_accuracy:.2f}% on the {len(splits.y_val)} validation "
                          f"samples of {splits.spec.name!r}, chance level is {100 * chance:.2f}%{hint}; it would "
                          "teach noise. Give a trained teacher, or pass --allow-weak-teacher to distil anyway")
    if weak:
        log.warning("teacher %s is at chance level on validation (%.2f%%, chance %.2f%%); distilling anyway "
                    "(--allow-weak-teacher)", ref, 100 * val_accuracy, 100 * chance)
    return record


def quick_no_teacher(student: Any, splits: Splits, cfg: Any, progress: bool) -> dict[str, Any]:
    """Validation accuracy of the student trained briefly without a teacher: the bar a teacher must clear."""
    from edgekd.data import splitting as sp
    from edgekd.distill import train_student
    from edgekd.distill.train import TrainConfig

    small = splits
    if len(splits.y_train) > QUICK_SAMPLES:
        keep = sp.stratified_pick(splits.y_train, QUICK_SAMPLES, sp.rng_for(0, 9), splits.spec.num_classes)
        small = replace(splits, x_train=splits.x_train[keep], y_train=splits.y_train[keep], x_unlabelled=None)
    epochs = math.ceil(QUICK_STEPS / math.ceil(len(small.y_train) / cfg.batch_size))
    short = TrainConfig(**(cfg.to_dict() | {"epochs": epochs, "patience": 0}))
    _, rec = train_student(student, small, None, "ce", short, label="quick no-teacher check", progress=progress)
    return {"val_accuracy": rec["shipped_val_accuracy"], "epochs": short.epochs, "train_samples": len(small.y_train)}


def compare_teacher(teacher_val: float, student_val: float, what: str) -> str | None:
    """A warning when the teacher is not better on validation than a student trained without it (none when both
    are perfect: a tie at 100% says nothing)."""
    if teacher_val > student_val or teacher_val >= 1.0:
        return None
    text = (f"the teacher ({100 * teacher_val:.2f}% on validation) is not better than {what} "
            f"({100 * student_val:.2f}%): distilling from it may make the student worse; use --baseline to ship "
            "the better of the two, or a stronger teacher")
    log.warning("%s", text)
    return text


def hold_out_unlabelled(splits: Splits, seed: int = 0) -> tuple[Splits, np.ndarray | None]:
    """(splits without them, held-out samples): a seeded tenth of the unlabelled samples (at most HOLDOUT_MAX)
    that neither student trains on, so agreement with the teacher on them is not inflated for the distilled one
    (which learnt the teacher's outputs on the samples it saw). None when there are too few."""
    x = splits.x_unlabelled
    n = 0 if x is None else min(HOLDOUT_MAX, len(x) // 10)
    if x is None or n < HOLDOUT_MIN_PER_CLASS * splits.spec.num_classes:
        return splits, None
    held = np.sort(np.random.default_rng([4_231, seed]).choice(len(x), n, replace=False))
    keep = np.setdiff1d(np.arange(len(x)), held)
    ids = splits.indices | ({"unlabelled": splits.indices["unlabelled"][keep]} if "unlabelled" in splits.indices
                            else {})
    return replace(splits, x_unlabelled=x[keep], indices=ids), x[held]


def paired(d_correct: np.ndarray, t_correct: np.ndarray) -> dict[str, Any]:
    """McNemar's comparison of two students on the same samples: b (only the distilled one right), c (only the
    twin right), z = (b - c) / sqrt(b + c), decisive when |z| > DECISIVE_Z."""
    b = int((d_correct & ~t_correct).sum())
    c = int((~d_correct & t_correct).sum())
    z = (b - c) / math.sqrt(b + c) if b + c else 0.0
    return {"samples": int(len(d_correct)), "only_distilled_right": b, "only_twin_right": c, "z": round(z, 3),
            "decisive": abs(z) > DECISIVE_Z}


def choose(distilled: dict[str, Any], twin: dict[str, Any], evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """Which student to ship, and why in one line.

    Without ``evidence``: the better on validation (the distilled one on a tie). With it (``validation``: the
    :func:`paired` comparison; ``teacher_val``; ``agreement``: {distilled, no_teacher, samples, paired} on
    held-out unlabelled samples, or None): a decisive validation difference decides; otherwise, when the teacher
    is at least as good as the twin on validation and the students' agreement with it differs decisively (the
    same McNemar test on the held-out samples), the student agreeing more is shipped; otherwise validation
    accuracy as above. Each source of evidence must be significant on its own, so noise never overturns the
    distilled student's default."""
    d_val, t_val = distilled["val_accuracy"], twin["val_accuracy"]
    n_val = f", {evidence['validation']['samples']} samples" if evidence else ""
    on_val = f"on validation ({100 * d_val:.2f}% vs {100 * t_val:.2f}%{n_val}"
    agree = (evidence or {}).get("agreement")
    decided_by = "validation"
    trusted = bool(evidence) and evidence["teacher_val"] >= t_val
    if evidence and not evidence["validation"]["decisive"] and agree and trusted and agree["paired"]["decisive"]:
        decided_by = "teacher agreement"
        a_d, a_t = agree["distilled"], agree["no_teacher"]
        ship = "no-teacher" if a_t > a_d else "distilled"
        why = (f"validation does not separate the students ({100 * d_val:.2f}% vs {100 * t_val:.2f}%{n_val}, "
               f"McNemar z {evidence['validation']['z']}); "
               f"the teacher is at least as good as the twin there, and the "
               f"{'distilled student' if ship == 'distilled' else 'no-teacher twin'} agrees more with it on "
               f"{agree['samples']} held-out unlabelled samples ({100 * max(a_d, a_t):.2f}% vs "
               f"{100 * min(a_d, a_t):.2f}%, McNemar z {agree['paired']['z']})")
    else:
        if evidence:
            decided_by = "validation" if evidence["validation"]["decisive"] else "validation (not decisive)"
        ship = "no-teacher" if t_val > d_val else "distilled"
        if ship == "distilled":
            why = (f"the distilled student is {'as good as' if d_val == t_val else 'better than'} its no-teacher "
                   f"twin {on_val})")
        else:
            why = (f"the no-teacher twin is better than the distilled student {on_val}): the teacher did not help, "
                   "so the student trained on labels alone is shipped")
        if decided_by == "validation (not decisive)":
            why += (f"; the difference is not significant (McNemar z {evidence['validation']['z']}) and "
                    + ("no held-out unlabelled samples were available" if not agree else
                       "the teacher is not better than the twin on validation, so agreement with it is no evidence"
                       if not trusted else
                       f"neither is the students' agreement with the teacher on {agree['samples']} held-out "
                       f"unlabelled samples ({100 * agree['distilled']:.2f}% vs {100 * agree['no_teacher']:.2f}%, "
                       f"McNemar z {agree['paired']['z']})"))
    if ship == "no-teacher":
        log.warning("%s", why)
    out = {"shipped": ship, "reason": why, "distilled": distilled, "no_teacher": twin}
    return out | ({"decided_by": decided_by, "evidence": evidence} if evidence else {})
