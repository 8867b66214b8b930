"""A labelled sample of a build's test split, in the student's input layout: what emulator tests feed."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_sample(build: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` test samples of the data the build in ``build`` was exported from, and their labels."""
    from edgekd.data import load_task
    from edgekd.distill import DATA_SEED
    from edgekd.export.student import load_export
    from edgekd.students import to_model_input

    export = load_export(build)
    src = export.data_source
    splits = load_task(src.task, src.data_dir, seed=DATA_SEED, limit=src.limit)
    x = to_model_input(splits.x_test[:n], tuple(export.input_shape)).numpy()
    return x, splits.y_test[:n]
