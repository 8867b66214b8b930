"""The data types every other module sees: a task's static description and its prepared splits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Fewer calibration samples than this give noisy int8 activation ranges (see calibration/README.md).
MIN_CALIB_SAMPLES = 200


@dataclass(frozen=True)
class TaskSpec:
    """What the planner needs to size a student, known without loading the data where possible."""

    name: str  # "digits", "fashion-mnist", "basic-motions", or "user:<path>"
    kind: str  # "image" | "timeseries"
    input_shape: tuple[int, ...]  # channels-first, no batch: (C, H, W) or (C, L)
    num_classes: int
    class_names: tuple[str, ...]
    description: str
    source: str  # where the data comes from (package, path), for reports

    def to_dict(self) -> dict:
        """JSON-able form, for reports and run records."""
        return {
            "name": self.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "description": self.description,
            "source": self.source,
        }


@dataclass
class RawData:
    """What a task loader returns: raw (unnormalised) channels-first arrays before any splitting.

    ``x_test``/``y_test`` may be None when the source has no official test split; ``load_task`` then
    carves a fixed stratified 20 % test split. ``x_calib``/``y_calib`` are set only when the user
    supplied their own calibration set.
    """

    spec: TaskSpec
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_calib: np.ndarray | None = None
    y_calib: np.ndarray | None = None


@dataclass
class Splits:
    """Normalised float32 arrays for one task, ready for training, evaluation and int8 calibration.

    ``indices`` maps each split name to the source row ids it was built from (training-source rows
    first, then test-source rows; user-supplied calibration rows after those), so provenance and
    disjointness can be checked without hashing.
    """

    spec: TaskSpec
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_calib: np.ndarray
    y_calib: np.ndarray
    normalization: dict
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    #: Normalised samples without labels (``--unlabelled``, ``--labels N``): distillation learns the teacher's
    #: outputs on them; see :mod:`edgekd.data.unlabelled`.
    x_unlabelled: np.ndarray | None = None
    unlabelled_sources: list[str] = field(default_factory=list)
    labels_kept: int | None = None  # ``--labels N``: the labelled training samples kept

    def split_names(self) -> tuple[str, ...]:
        return ("train", "val", "test", "calib")

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one split by name, so callers can loop over splits."""
        if split not in self.split_names():
            raise KeyError(split)
        return getattr(self, f"x_{split}"), getattr(self, f"y_{split}")

    def calibration_warnings(self) -> list[str]:
        """Why int8 ranges drawn from this calibration set may be unrepresentative (empty when fine)."""
        out = []
        n = len(self.y_calib)
        if n < MIN_CALIB_SAMPLES:
            out.append(
                f"calibration set has only {n} samples (< {MIN_CALIB_SAMPLES}); int8 activation ranges "
                "may be noisy"
            )
        missing = sorted(set(range(self.spec.num_classes)) - {int(v) for v in np.unique(self.y_calib)})
        if missing:
            names = ", ".join(self.spec.class_names[i] for i in missing)
            out.append(f"calibration set lacks class(es) {names}; their activation ranges are not seen")
        return out

    def summary(self) -> dict:
        """Sizes, shape, classes and source as plain JSON-able values, for reports."""
        k = self.spec.num_classes
        sizes, counts = {}, {}
        for split in self.split_names():
            _, y = self.arrays(split)
            sizes[split] = int(len(y))
            counts[split] = [int(c) for c in np.bincount(y, minlength=k)]
        return {
            "task": self.spec.name,
            "kind": self.spec.kind,
            "input_shape": list(self.spec.input_shape),
            "num_classes": k,
            "class_names": list(self.spec.class_names),
            "source": self.spec.source,
            "sizes": sizes,
            "class_counts": counts,
            "normalization": self.normalization,
            "calibration_warnings": self.calibration_warnings(),
            "unlabelled": self.unlabelled_summary(),
        }

    def unlabelled_summary(self) -> dict:
        """How many unlabelled samples there are and where they came from (``--labels``, ``--unlabelled``)."""
        return {"samples": 0 if self.x_unlabelled is None else int(len(self.x_unlabelled)),
                "sources": list(self.unlabelled_sources), "labels_kept": self.labels_kept}
