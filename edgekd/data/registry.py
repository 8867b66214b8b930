"""Task registry and the one entry point that turns a task name or user path into normalised splits."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.data import splitting as sp
from edgekd.data.core import RawData, Splits, TaskSpec
from edgekd.data.knowledge import Augmentation, TeacherRecipe
from edgekd.errors import EdgekdError

#: Share of the training source held out for validation (stratified, seeded by ``seed``).
VAL_FRACTION = 0.1
#: Share carved out as the test set when a source has no official test split (fixed seed).
TEST_FRACTION = 0.2

Loader = Callable[[str | None], RawData]
SpecFn = Callable[[str | None], TaskSpec]


@dataclass(frozen=True)
class Task:
    """A registered built-in: ``load(data_dir)`` returns raw arrays, ``spec(data_dir)`` is cheap; ``augment`` and
    ``teacher`` are its training knowledge (None: the default for its kind, see :mod:`edgekd.data.knowledge`)."""

    name: str
    load: Loader
    spec_fn: SpecFn | None = None
    augment: Augmentation | None = None
    teacher: TeacherRecipe | None = None

    def spec(self, data_dir: str | None = None) -> TaskSpec:
        if self.spec_fn is not None:
            return self.spec_fn(data_dir)
        return self.load(data_dir).spec


TASKS: dict[str, Task] = {}


def register_task(name: str, spec: TaskSpec | SpecFn | None = None, augment: Augmentation | None = None,
                  teacher: TeacherRecipe | None = None) -> Callable[[Loader], Loader]:
    """Register ``fn(data_dir) -> RawData`` as built-in task ``name``: a task is one function.

    ``spec`` (a TaskSpec, or a function of data_dir) lets ``get_spec`` answer without loading the data;
    ``augment`` and ``teacher`` say how to train on it (label-preserving augmentation, built-in teacher).
    """

    def deco(fn: Loader) -> Loader:
        if name in TASKS:
            raise ValueError(f"task {name!r} registered twice")
        spec_fn = (lambda _data_dir: spec) if isinstance(spec, TaskSpec) else spec
        TASKS[name] = Task(name, fn, spec_fn, augment, teacher)
        return fn

    return deco


def task_names() -> list[str]:
    """Built-in task names, sorted."""
    return sorted(TASKS)


def _builtin(task: str) -> Task | None:
    """Built-in names win over same-named local paths; a ``user:`` prefix forces a path."""
    if task.startswith("user:"):
        return None
    key = task.strip().lower().replace("_", "-")
    return TASKS.get(key)


def _user_path(task: str) -> Path:
    """The user data path named by ``task``, or an error listing what a task may be."""
    text = task[len("user:") :] if task.startswith("user:") else task
    looks_like_path = (
        task.startswith("user:")
        or os.sep in text
        or "/" in text
        or text.endswith(".npz")
        or Path(text).exists()
    )
    if not looks_like_path or not text:
        raise EdgekdError(
            f"unknown task {task!r}: choose one of {', '.join(task_names())}, or give a path to an .npz file "
            "or an image folder (optionally prefixed user:)"
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise EdgekdError(
            f"user data path {path} does not exist; give an .npz file or a folder of class folders"
        )
    return path


def get_spec(task: str, data_dir: str | None = None) -> TaskSpec:
    """The task's static description; built-ins read no data, user data only headers/labels."""
    if not isinstance(task, str):
        raise EdgekdError(f"task must be a name or a path, got {type(task).__name__}")
    found = _builtin(task)
    if found is not None:
        return found.spec(data_dir)
    from edgekd.data import user

    return user.user_spec(_user_path(task))


def _load_raw(task: str, data_dir: str | None) -> RawData:
    if not isinstance(task, str):
        raise EdgekdError(f"task must be a name or a path, got {type(task).__name__}")
    found = _builtin(task)
    if found is not None:
        return found.load(data_dir)
    from edgekd.data import user

    return user.load_user(_user_path(task))


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise EdgekdError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_raw(raw: RawData) -> None:
    """Loader output must match its spec; a mismatch is a bug in the loader or a malformed user file."""
    spec = raw.spec
    pairs = [("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)]
    pairs.append(("calib", raw.x_calib, raw.y_calib))
    for split, x, y in pairs:
        if x is None:
            continue
        if tuple(x.shape[1:]) != spec.input_shape:
            raise EdgekdError(
                f"{spec.source}: {split} samples have shape {tuple(x.shape[1:])}, expected {spec.input_shape}"
            )
        if y is None or len(x) != len(y) or len(y) == 0:
            raise EdgekdError(f"{spec.source}: {split} split is empty or has mismatched samples and labels")
        if y.min() < 0 or y.max() >= spec.num_classes:
            raise EdgekdError(f"{spec.source}: {split} labels outside 0..{spec.num_classes - 1}")


def _shrink(labels: np.ndarray, keep: int, rng: np.random.Generator, k: int) -> np.ndarray:
    """Positions of a stratified subset of ``keep`` samples (all positions when keep >= len)."""
    if keep >= len(labels):
        return np.arange(len(labels))
    return sp.stratified_pick(labels, keep, rng, k)


def load_task(
    task: str,
    data_dir: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    calib_size: int = 500,
) -> Splits:
    """Load a built-in task or user data and return deterministic, normalised train/val/test/calib splits.

    - test: the source's official test split, untouched; if it has none, a stratified 20 % carved with a
      fixed seed (independent of ``seed``).
    - val: a stratified 10 % of the training source, seeded by ``seed``; never a class's last sample.
    - calib: a stratified sample of ``calib_size`` (capped) drawn from the train split, so it overlaps
      train but never val or test; a user-supplied calibration set replaces it.
    - limit: keeps a stratified ``limit`` of train and the same fraction (at least one per class) of val
      and test, each a subset of the unlimited split; calib is then drawn from the limited train.
    - normalisation: per-channel mean/std of the train split, applied to every split.

    ``data_dir`` applies to built-ins that read files (fashion-mnist); user paths ignore it.
    """
    seed = _check_int(seed, "seed", 0)
    calib_size = _check_int(calib_size, "calib_size", 1)
    if limit is not None:
        limit = _check_int(limit, "limit", 1)
    raw = _load_raw(task, data_dir)
    _check_raw(raw)
    spec = raw.spec
    k = spec.num_classes

    # A single pool of source rows: ids are training-source rows first, then test-source rows.
    if raw.x_test is None:
        x_pool, y_pool = raw.x_train, raw.y_train
        train_src, test_pos = sp.split_off(
            y_pool, TEST_FRACTION, sp.rng_for(sp.FIXED_TEST_SEED, sp.STREAM_TEST), k
        )
    else:
        x_pool = np.concatenate([raw.x_train, raw.x_test])
        y_pool = np.concatenate([raw.y_train, raw.y_test])
        train_src = np.arange(len(raw.y_train))
        test_pos = len(raw.y_train) + np.arange(len(raw.y_test))
    keep, val_rel = sp.split_off(y_pool[train_src], VAL_FRACTION, sp.rng_for(seed, sp.STREAM_VAL), k)
    train_pos, val_pos = train_src[keep], train_src[val_rel]
    if len(val_pos) == 0:
        raise EdgekdError(
            f"{spec.source}: too few training samples ({len(train_src)}) to hold out a validation set; "
            "every class needs at least 2"
        )

    if limit is not None and limit < len(train_pos):
        if limit < k:
            raise EdgekdError(f"limit must be at least the number of classes ({k}), got {limit}")
        frac = limit / len(train_pos)
        rng = sp.rng_for(seed, sp.STREAM_LIMIT)
        train_pos = train_pos[_shrink(y_pool[train_pos], limit, rng, k)]
        val_pos = val_pos[_shrink(y_pool[val_pos], max(math.ceil(frac * len(val_pos)), k), rng, k)]
        test_rng = sp.rng_for(sp.FIXED_TEST_SEED, sp.STREAM_LIMIT)
        test_pos = test_pos[_shrink(y_pool[test_pos], max(math.ceil(frac * len(test_pos)), k), test_rng, k)]

    calib_rng = sp.rng_for(seed, sp.STREAM_CALIB)
    if raw.x_calib is None:
        calib_from = "train split (subset, overlaps train)"
        x_calib_src, y_calib_src = x_pool, y_pool
        calib_pos = train_pos[_shrink(y_pool[train_pos], calib_size, calib_rng, k)]
        calib_ids = calib_pos
    else:
        calib_from = "user-supplied x_calib/y_calib"
        x_calib_src, y_calib_src = raw.x_calib, raw.y_calib
        cap = calib_size if limit is None else min(calib_size, max(limit, k))
        calib_pos = _shrink(raw.y_calib, cap, calib_rng, k)
        calib_ids = len(y_pool) + calib_pos

    x_train_raw = x_pool[train_pos]
    mean, std = sp.channel_stats(x_train_raw)
    normalization = {
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "channel_axis": 1,
        "formula": "x = (raw - mean[c]) / std[c] for each channel c",
        "computed_on": f"train split ({len(train_pos)} samples, seed {seed})",
        "raw_dtype": str(x_pool.dtype),
        "raw_min": float(x_train_raw.min()),
        "raw_max": float(x_train_raw.max()),
        "calibration_from": calib_from,
    }
    return Splits(
        spec=spec,
        x_train=sp.normalise(x_train_raw, mean, std),
        y_train=y_pool[train_pos].astype(np.int64),
        x_val=sp.normalise(x_pool[val_pos], mean, std),
        y_val=y_pool[val_pos].astype(np.int64),
        x_test=sp.normalise(x_pool[test_pos], mean, std),
        y_test=y_pool[test_pos].astype(np.int64),
        x_calib=sp.normalise(x_calib_src[calib_pos], mean, std),
        y_calib=y_calib_src[calib_pos].astype(np.int64),
        normalization=normalization,
        indices={"train": train_pos, "val": val_pos, "test": test_pos, "calib": calib_ids},
    )
