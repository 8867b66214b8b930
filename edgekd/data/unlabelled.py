"""Unlabelled samples for distillation: the student learns the teacher's outputs on them (no label term).

Two ways to get them, both giving ``Splits.x_unlabelled`` (normalised like the rest) and
``Splits.indices["unlabelled"]``:

* ``--unlabelled PATH``: an ``.npz`` with an ``x`` array only (labels, if present, are ignored), a ``.npy``
  array, a folder of images with no class folders (every image file under it, sorted by path), or, from
  Python, any array of task-shaped samples. Samples are read like the task's own data: ``(N, *input_shape)``
  channels-first, ``(N, H, W, C)`` images, ``(N, H, W)`` grayscale images or ``(N, L)`` single-channel series.
* ``--labels N`` on any task: keep a stratified, seeded ``N`` of the training split's labels and use the other
  training samples as unlabelled (the everyday edge situation: few labels, many recordings). The validation
  split shrinks with it to ``max(ceil(N / 9), classes)`` samples (a 90/10 split of the labels one would have),
  since a user with 1,000 labels does not have 6,000 more to validate on; the test split is untouched.

Normalisation (per-channel mean/std of the task's training images) needs no labels, so it stays the task's.
Unlabelled ids in ``indices`` follow the training source's own row ids (``--labels``) or come after every
source row (a file), so the union of labelled and unlabelled samples in id order does not depend on ``N``: runs
with 1,000 and 5,000 labels of the same images share one teacher-output cache.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgekd.data import splitting as sp
from edgekd.data.core import Splits, TaskSpec
from edgekd.data.validate import check_x
from edgekd.errors import EdgekdError

#: Labels seed of ``--labels``: fixed so that every training seed and every teacher sees the same labelled subset.
LABELS_SEED = 0
HOW = "an .npz with an 'x' array, a .npy array, or a folder of images (no class folders)"


def _layout(x: np.ndarray, spec: TaskSpec, where: str) -> np.ndarray:
    """``x`` as channels-first samples of ``spec.input_shape``, or one line saying what shape was expected."""
    want = tuple(spec.input_shape)
    s = tuple(x.shape[1:])
    if s == want:
        return x
    if spec.kind == "image" and len(s) == 3 and (s[2], s[0], s[1]) == want:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if want[0] == 1 and s == want[1:]:
        return x[:, None]
    raise EdgekdError(f"{where}: samples have shape {s}, task {spec.name!r} needs {want} (channels-first)"
                      + (f" or {(*want[1:], want[0])} (channels-last)" if spec.kind == "image" else "")
                      + "; give samples of the task's shape")


def _from_npz(path: Path) -> np.ndarray:
    if not zipfile.is_zipfile(path):
        raise EdgekdError(f"--unlabelled {path}: not an .npz archive (truncated or another format); give {HOW}")
    try:
        with np.load(path, allow_pickle=False) as f:
            key = "x" if "x" in f.files else "x_unlabelled" if "x_unlabelled" in f.files else None
            if key is None:
                raise EdgekdError(f"--unlabelled {path}: no array 'x' (found: {', '.join(f.files) or 'none'}); save "
                                  "it with numpy.savez(path, x=samples)")
            return f[key]
    except EdgekdError:
        raise
    except Exception as exc:  # damaged members fail in many ways (CRC, short data, object arrays)
        raise EdgekdError(f"--unlabelled {path}: not a readable .npz ({type(exc).__name__}: "
                          f"{str(exc)[:120]}); save it with numpy.savez(path, x=samples)") from None


def _from_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # truncated files and object arrays fail in many ways
        raise EdgekdError(f"--unlabelled {path}: not a readable .npy ({type(exc).__name__}: {str(exc)[:120]}); "
                          "save it with numpy.save(path, samples)") from None


def _from_folder(path: Path, spec: TaskSpec) -> np.ndarray:
    from edgekd.data.user import IMAGE_SUFFIXES, _image_error, _open_image

    if spec.kind != "image":
        raise EdgekdError(f"--unlabelled {path}: a folder holds images, task {spec.name!r} is {spec.kind}; give an "
                          ".npz with an 'x' array")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise EdgekdError(f"--unlabelled {path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
    channels, h, w = spec.input_shape
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), channels, h, w), dtype=np.uint8)
    for i, p in enumerate(files):
        with _open_image(p) as im:
            if im.size != (w, h):
                raise EdgekdError(f"--unlabelled {p}: image is {im.size[0]}x{im.size[1]}, task {spec.name!r} needs "
                                  f"{w}x{h} (edgekd does not resize); resize the images")
            try:
                arr = np.asarray(im.convert(mode), dtype=np.uint8)
            except Exception as exc:  # noqa: BLE001 - any decoder failure on a user's file is that file's fault
                raise _image_error(p, exc) from None
        out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return out


def read_unlabelled(source: str | Path | np.ndarray, spec: TaskSpec) -> tuple[np.ndarray, str]:
    """Raw (unnormalised) channels-first samples from ``source`` and a short description of where they came from."""
    if isinstance(source, np.ndarray):
        x, where, what = source, "unlabelled array", f"array {tuple(source.shape)}"
    else:
        path = Path(source).expanduser()
        where, what = f"--unlabelled {path}", str(path)
        if path.is_dir():
            x = _from_folder(path, spec)
            what = f"image folder {path} ({len(x)} images)"
        elif not path.is_file():
            raise EdgekdError(f"--unlabelled {path}: no such file or folder; give {HOW}")
        elif path.suffix.lower() == ".npz":
            x = _from_npz(path)
        elif path.suffix.lower() == ".npy":
            x = _from_npy(path)
        else:
            raise EdgekdError(f"--unlabelled {path}: unsupported file type {path.suffix or '(none)'}; give {HOW}")
    x = check_x(x, where)
    return _layout(x, spec, where), what


def add_unlabelled(splits: Splits, source: str | Path | np.ndarray) -> Splits:
    """``splits`` with the samples of ``source`` appended to its unlabelled set, normalised like the task."""
    raw, what = read_unlabelled(source, splits.spec)
    mean = np.asarray(splits.normalization["mean"])
    std = np.asarray(splits.normalization["std"])
    x = sp.normalise(raw, mean, std)
    start = 1 + max(int(v.max()) for v in splits.indices.values() if len(v))
    ids = start + np.arange(len(x), dtype=np.int64)
    old_x = splits.x_unlabelled
    x_all = x if old_x is None else np.concatenate([old_x, x])
    old_ids = splits.indices.get("unlabelled")
    ids_all = ids if old_ids is None else np.concatenate([old_ids, ids])
    sources = [*splits.unlabelled_sources, f"{what}: {len(x)} samples"]
    return replace(splits, x_unlabelled=x_all, indices=splits.indices | {"unlabelled": ids_all},
                   unlabelled_sources=sources)


def keep_labels(splits: Splits, n: int, seed: int = LABELS_SEED) -> Splits:
    """Keep a stratified ``n`` labelled training samples (seeded by ``seed``); the rest become unlabelled and the
    validation split shrinks to ``max(ceil(n / 9), classes)`` (see the module docstring)."""
    k = splits.spec.num_classes
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < k:
        raise EdgekdError(f"--labels must be an integer >= the number of classes ({k}), got {n!r}")
    if n >= len(splits.y_train):
        raise EdgekdError(f"--labels {n}: the training split has only {len(splits.y_train)} samples; give fewer "
                          "labels, or leave --labels out to use them all")
    rng = sp.rng_for(seed, sp.STREAM_LIMIT + 17)
    keep = sp.stratified_pick(splits.y_train, int(n), rng, k)
    rest = np.setdiff1d(np.arange(len(splits.y_train)), keep)
    n_val = min(len(splits.y_val), max(math.ceil(n / 9), k))
    val = sp.stratified_pick(splits.y_val, n_val, rng, k)
    ids = splits.indices
    x_unl = splits.x_train[rest]
    unl_ids = ids["train"][rest] if "train" in ids else np.arange(len(rest))
    if splits.x_unlabelled is not None:  # a file given as well: its samples keep their ids (after every source row)
        x_unl = np.concatenate([x_unl, splits.x_unlabelled])
        unl_ids = np.concatenate([unl_ids, ids["unlabelled"]])
    new_ids = dict(ids)
    if "train" in ids:
        new_ids["train"] = ids["train"][keep]
    if "val" in ids:
        new_ids["val"] = ids["val"][val]
    new_ids["unlabelled"] = unl_ids
    return replace(splits, x_train=splits.x_train[keep], y_train=splits.y_train[keep], x_val=splits.x_val[val],
                   y_val=splits.y_val[val], x_unlabelled=x_unl, indices=new_ids,
                   unlabelled_sources=[f"training split without labels ({len(rest)} samples, --labels {n}, labels "
                                       f"seed {seed})", *splits.unlabelled_sources],
                   labels_kept=int(n))


def training_union(splits: Splits) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of labelled and unlabelled training samples in id order; unlabelled rows have label -1."""
    x_unl = splits.x_unlabelled
    if x_unl is None or len(x_unl) == 0:
        return splits.x_train, splits.y_train
    ids = np.concatenate([splits.indices.get("train", np.arange(len(splits.y_train))), splits.indices["unlabelled"]])
    order = np.argsort(ids, kind="stable")
    x = np.concatenate([splits.x_train, x_unl])[order]
    y = np.concatenate([splits.y_train, np.full(len(x_unl), -1, dtype=np.int64)])[order]
    return np.ascontiguousarray(x), y


def prepare(splits: Splits, labels: int | None = None,
            unlabelled: str | Path | np.ndarray | list[str | Path | np.ndarray] | None = None) -> Splits:
    """``splits`` with ``--unlabelled`` sources added and ``--labels N`` applied (either may be None)."""
    sources = unlabelled if isinstance(unlabelled, list | tuple) else [] if unlabelled is None else [unlabelled]
    for source in sources:
        splits = add_unlabelled(splits, source)
    if labels is not None:
        splits = keep_labels(splits, labels)
    return splits
