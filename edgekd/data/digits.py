"""Built-in ``digits``: scikit-learn's 8x8 handwritten digits, always installed, the tiny default task."""

from __future__ import annotations

import numpy as np

from edgekd.data.core import RawData, TaskSpec
from edgekd.data.registry import register_task
from edgekd.errors import EdgekdError

SPEC = TaskSpec(
    name="digits",
    kind="image",
    input_shape=(1, 8, 8),
    num_classes=10,
    class_names=tuple(str(i) for i in range(10)),
    description="1,797 handwritten digits, 8x8 grayscale (values 0..16), 10 classes; no official test split",
    source="scikit-learn sklearn.datasets.load_digits (bundled with the package)",
)


@register_task("digits", spec=SPEC)
def load_digits(data_dir: str | None = None) -> RawData:
    """No official test split: load_task carves a fixed stratified 20 % test set."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:
        raise EdgekdError("task digits needs scikit-learn: pip install scikit-learn") from exc
    bunch = sk_load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]
    return RawData(spec=SPEC, x_train=x, y_train=bunch.target.astype(np.int64))
