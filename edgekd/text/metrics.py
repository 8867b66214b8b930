"""How close a text student is to its teacher, and whether its embeddings are still useful downstream.

* mean cosine between student and teacher embeddings of held-out sentences;
* nearest-neighbour agreement among a pool of held-out sentences (the issue asks for 10,000): for each
  sentence, its nearest other sentence by cosine under the teacher and under the student; ``top1`` is the share
  where they are the same sentence, ``top10`` the mean overlap of the two top-10 sets (|T10 & S10| / 10);
* a linear probe on WordNet's lexicographer categories with one recipe for teacher and student (L2 normalise,
  standardise, multinomial logistic regression, C=1, lbfgs, 500 iterations, trained on labelled sentences of the
  training split, scored on held-out ones).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError

PROBE_C = 1.0
PROBE_ITERS = 500


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mean_cosine(student: np.ndarray, teacher: np.ndarray) -> float:
    if student.shape != teacher.shape:
        raise EdgekdError(f"student embeddings {student.shape} and teacher embeddings {teacher.shape} differ")
    return float((_unit(student) * _unit(teacher)).sum(1).mean())


def _neighbours(x: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """Indices of each row's k nearest other rows by cosine, nearest first (ties broken by index)."""
    u = _unit(x)
    out = np.zeros((len(u), k), dtype=np.int64)
    for i in range(0, len(u), block):
        sim = u[i : i + block] @ u.T
        rows = np.arange(i, min(i + block, len(u)))
        sim[rows - i, rows] = -np.inf
        part = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, part, 1), axis=1, kind="stable")
        out[rows] = np.take_along_axis(part, order, 1)
    return out


def neighbour_agreement(student: np.ndarray, teacher: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(top-1 agreement, mean top-k overlap) of student and teacher nearest neighbours within the pool."""
    if len(student) <= k:
        raise EdgekdError(f"nearest-neighbour agreement needs more than {k} sentences, got {len(student)}")
    ns, nt = _neighbours(student, k), _neighbours(teacher, k)
    top1 = float((ns[:, 0] == nt[:, 0]).mean())
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(ns, nt, strict=True)])
    return top1, float(overlap)


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   seed: int = 0) -> float:
    """Accuracy of the fixed linear-probe recipe (same for teacher and student embeddings)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(_unit(x_train))
    clf = LogisticRegression(C=PROBE_C, max_iter=PROBE_ITERS, random_state=seed)
    with warnings.catch_warnings():  # the recipe is fixed at PROBE_ITERS for both sides, converged or not
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(_unit(x_train)), y_train)
    return float((clf.predict(scaler.transform(_unit(x_test))) == y_test).mean())


@dataclass
class TextMetrics:
    """One student against its teacher on held-out text; params and MACs per sentence of both."""

    mean_cosine: float
    nn_top1: float
    nn_top10: float
    nn_pool: int  # sentences in the nearest-neighbour pool
    probe_student: float | None  # None: no labelled sentences (user text)
    probe_teacher: float | None
    probe_train: int
    probe_test: int
    student_params: int
    student_macs: int
    teacher_params: int
    teacher_macs: int
    tokens: int  # sentence length the MACs are counted at

    @property
    def probe_ratio(self) -> float:
        if self.probe_student is None or not self.probe_teacher:
            return 0.0
        return self.probe_student / self.probe_teacher

    @property
    def mac_reduction(self) -> float:
        return self.teacher_macs / self.student_macs if self.student_macs else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"probe_ratio": round(self.probe_ratio, 4), "mac_reduction": round(self.mac_reduction, 1)}
