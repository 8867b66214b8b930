"""Checks on raw arrays, shared by built-in and user loaders, each failing with one actionable line."""

from __future__ import annotations

import numpy as np

from edgekd.errors import EdgekdError


def check_x(x: np.ndarray, where: str) -> np.ndarray:
    """Numeric, non-empty, finite: anything else would silently poison training or int8 ranges."""
    if not isinstance(x, np.ndarray) or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        dtype = getattr(x, "dtype", type(x).__name__)
        raise EdgekdError(f"{where}: samples must be a numeric array, got dtype {dtype}; save numbers")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise EdgekdError(f"{where}: complex samples are not supported; save real numbers")
    if x.ndim < 2:
        raise EdgekdError(f"{where}: expected an array of samples (N, ...), got shape {x.shape}")
    if len(x) == 0:
        raise EdgekdError(f"{where}: no samples (shape {x.shape}); the set must not be empty")
    if 0 in x.shape:
        raise EdgekdError(f"{where}: a sample dimension is zero (shape {x.shape})")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            first = int(np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))[0])
            kind = "NaN" if np.isnan(x).any() else "infinite"
            raise EdgekdError(
                f"{where}: contains {kind} values ({int(bad.sum())} in total, first in sample {first}); "
                "clean or drop those samples"
            )
    return x


def check_labels(y: np.ndarray, where: str) -> np.ndarray:
    """Integer class ids as int64; integral floats are accepted because many tools save labels that way."""
    if not isinstance(y, np.ndarray):
        raise EdgekdError(f"{where}: labels must be an array, got {type(y).__name__}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise EdgekdError(
            f"{where}: labels must be 1-D class ids 0..K-1, got shape {y.shape} "
            "(one-hot? use y.argmax(axis=1))"
        )
    if len(y) == 0:
        raise EdgekdError(f"{where}: no labels; the set must not be empty")
    if np.issubdtype(y.dtype, np.bool_):
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise EdgekdError(
                f"{where}: labels contain NaN or infinite values; labels must be integers 0..K-1"
            )
        if not np.array_equal(y, np.round(y)):
            raise EdgekdError(f"{where}: labels must be integers 0..K-1, found non-integer values")
    elif not np.issubdtype(y.dtype, np.integer):
        raise EdgekdError(
            f"{where}: labels must be integers 0..K-1, got dtype {y.dtype}; map class names to ids and "
            "pass the names as class_names"
        )
    if y.min() < 0:
        raise EdgekdError(f"{where}: labels must be integers 0..K-1, found negative label {int(y.min())}")
    return y.astype(np.int64)


def check_pair(x: np.ndarray, y: np.ndarray, where_x: str, where_y: str) -> None:
    if len(x) != len(y):
        raise EdgekdError(
            f"{where_x} has {len(x)} samples but {where_y} has {len(y)} labels; "
            "they must have the same length"
        )


def check_classes(
    y_train: np.ndarray, others: dict[str, np.ndarray], where_train: str, num_classes: int | None = None
) -> int:
    """Number of classes K; every class 0..K-1 must occur in train and other splits must stay in range."""
    k = int(y_train.max()) + 1 if num_classes is None else num_classes
    if int(y_train.max()) >= k:
        raise EdgekdError(f"{where_train}: label {int(y_train.max())} is out of range 0..{k - 1}")
    if k < 2:
        raise EdgekdError(f"{where_train}: only one class (0) found; classification needs at least 2 classes")
    missing = np.flatnonzero(np.bincount(y_train, minlength=k) == 0)
    if len(missing):
        shown = ", ".join(str(int(c)) for c in missing[:10])
        raise EdgekdError(
            f"{where_train}: labels must be 0..K-1 with every class present in train, but class(es) {shown} "
            f"of 0..{k - 1} have no training samples; renumber the labels consecutively"
        )
    for where, y in others.items():
        if int(y.max()) >= k:
            raise EdgekdError(
                f"{where}: label {int(y.max())} is not a training class (train has 0..{k - 1}); "
                "every label must occur in train"
            )
    return k
