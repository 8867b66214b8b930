"""User data: an ``.npz`` of arrays or a folder of images, validated into the same RawData as built-ins.

.npz layout
    Required keys ``x_train, y_train, x_test, y_test``; optional ``x_calib, y_calib`` (your own
    calibration set, both or neither), ``class_names`` (K strings) and ``kind`` ("image" or
    "timeseries"). Labels are integers 0..K-1 (integral floats accepted), every class present in train.
    How x is read, from the per-sample shape (x.shape[1:]):

    - 1-D ``(N, L)``: single-channel time series, becomes ``(N, 1, L)``.
    - 2-D ``(N, H, W)``: grayscale images, become ``(N, 1, H, W)``; with ``kind="timeseries"`` the
      same array is read as multichannel time series ``(N, C, L)``.
    - 3-D: images. ``(N, H, W, C)`` when the last dim is <= 4 (channels-last wins when both ends are
      <= 4), else ``(N, C, H, W)`` when dim 1 is <= 4; otherwise an error.

    Values stay in their own units (uint8 0..255, floats as saved); load_task normalises them.

Image folder layout
    ``root/<class>/<image>`` with class names = sorted sub-folder names, and a fixed stratified 20 %
    test split; or ``root/train/<class>/...`` plus optional ``root/test/<class>/...`` and
    ``root/calib/<class>/...`` (a ``train`` folder with sub-folders selects this layout). Files with
    image suffixes (png, jpg, jpeg, bmp, gif, tif, tiff, webp, ppm, pgm) are read with PIL; others are
    ignored. All images must have the same size (edgekd does not resize). If every image is grayscale
    the task has 1 channel, otherwise all are converted to RGB (3 channels, alpha dropped).

One module (over 400 lines) because both layouts share one validation path and one set of error messages
(labels, classes, shapes, calibration): a user sees the same rule worded the same way for either.
"""

from __future__ import annotations

import math
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgekd.data.core import RawData, TaskSpec
from edgekd.data.validate import check_classes, check_labels, check_pair, check_x
from edgekd.errors import EdgekdError
from edgekd.units import format_bytes

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
GRAY_8BIT = {"1", "L", "LA"}
GRAY_WIDE = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
KINDS = ("image", "timeseries")


def user_spec(path: Path) -> TaskSpec:
    """Spec from the .npz headers and labels, or the folder's file headers, without reading pixel data."""
    if path.is_dir():
        return _scan_folder(path)[0]
    f, headers = _open_npz(path)
    with f:
        return _npz_spec(path, f, headers["x_train"].shape)[0]


def load_user(path: Path) -> RawData:
    if path.is_dir():
        return _load_folder(path)
    return _load_npz(path)


# --- .npz -------------------------------------------------------------------------------------------


MAX_NPZ_BYTES = 8 * 1024**3  # all arrays together, as declared by their .npy headers: edgekd holds them in RAM


@dataclass(frozen=True)
class _Header:
    """One member's .npy header: what numpy would allocate for it before reading a byte of data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def _read_header(fp: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:  # 3.0 (utf-8 field names): same layout as 2.0, numpy only reads it through its private helper
        shape, _, dtype = np.lib.format._read_array_header(fp, version)
    return tuple(shape), dtype


def _scan_npz(path: Path) -> dict[str, _Header]:
    """Check every member's .npy header against the bytes the member really holds, before numpy allocates what a
    header declares (a 20-byte header can ask for 48 GiB) or reports a short member as "Python objects"."""
    headers: dict[str, _Header] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[: -len(".npy")]
                with z.open(info) as fp:
                    try:
                        shape, dtype = _read_header(fp)
                    except (ValueError, EOFError, SyntaxError) as exc:
                        raise EdgekdError(f"{path}: key {key} is truncated or corrupt (its .npy header cannot be "
                                          f"read: {_one_line(exc)}); save the file again with numpy.savez") from None
                    data_bytes = info.file_size - fp.tell()
                if dtype.hasobject:
                    raise EdgekdError(f"{path}: key {key} holds Python objects (dtype {dtype}), which edgekd does "
                                      "not unpickle; save plain numeric arrays (class names as a str array)")
                if any(not isinstance(d, int) or d < 0 for d in shape):
                    raise EdgekdError(f"{path}: key {key} is corrupt: its .npy header declares shape {shape}")
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes > data_bytes:
                    raise EdgekdError(f"{path}: key {key} is truncated or corrupt: its header declares {shape} "
                                      f"{dtype} ({_size(nbytes)}) but the member holds {_size(data_bytes)} of data; "
                                      "save the file again with numpy.savez")
                headers[key] = _Header(shape, dtype, nbytes)
    except EdgekdError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError) as exc:  # RuntimeError: an encrypted member; NotImplementedError: unknown compression
        raise EdgekdError(f"{path}: truncated or corrupt .npz archive ({_one_line(exc)}); save it again with "
                          "numpy.savez") from None
    total = sum(h.nbytes for h in headers.values())
    if total > MAX_NPZ_BYTES:
        biggest = max(headers, key=lambda k: headers[k].nbytes)
        raise EdgekdError(f"{path}: its arrays declare {_size(total)} ({biggest}: {headers[biggest].shape} "
                          f"{headers[biggest].dtype}), more than the {format_bytes(MAX_NPZ_BYTES)} edgekd loads into "
                          "memory; use a smaller sample of the data")
    return headers


def _size(nbytes: int) -> str:
    """Exact bytes (a truncated member may be a few bytes short), with the binary size when it is large."""
    return f"{nbytes:,} B" if nbytes < 1024**2 else f"{nbytes:,} B ({format_bytes(nbytes)})"


def _one_line(exc: BaseException) -> str:
    """A library's exception text as one short line, without object addresses."""
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", " ".join(str(exc).split()))
    return text[:200] or type(exc).__name__


def _open_npz(path: Path) -> tuple[np.lib.npyio.NpzFile, dict[str, _Header]]:
    """The archive and its checked member headers; every way the file can be wrong is one EdgekdError line."""
    if path.suffix.lower() != ".npz":
        raise EdgekdError(
            f"unsupported user data file {path}: give an .npz with {', '.join(REQUIRED_KEYS)} "
            "or a folder with one sub-folder of images per class"
        )
    try:
        with path.open("rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise EdgekdError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not magic:
        raise EdgekdError(f"{path}: empty file; save the data with numpy.savez(path, x_train=..., y_train=..., "
                          "x_test=..., y_test=...)")
    if magic == b"\x93NUMPY":
        raise EdgekdError(
            f"{path}: holds a single array, not an .npz archive; save with numpy.savez(path, x_train=..., "
            "y_train=..., x_test=..., y_test=...)"
        )
    if not zipfile.is_zipfile(path):
        raise EdgekdError(f"{path}: not an .npz archive (no zip directory: not an .npz, or truncated); save it "
                          "with numpy.savez")
    headers = _scan_npz(path)
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EdgekdError(f"{path}: not a readable .npz file ({_one_line(exc)}); save it with numpy.savez") from None
    missing = [k for k in REQUIRED_KEYS if k not in f.files]
    if missing:
        f.close()
        raise EdgekdError(
            f"{path}: missing key(s) {', '.join(missing)} (found: {', '.join(f.files) or 'none'}); save with "
            "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
        )
    if ("x_calib" in f.files) != ("y_calib" in f.files):
        f.close()
        raise EdgekdError(f"{path}: x_calib and y_calib must be given together (or neither)")
    raw = [k for k in f.files if k not in headers]
    if raw:
        f.close()
        raise EdgekdError(f"{path}: member {raw[0]} is not a .npy array; save the file with numpy.savez")
    return f, headers


def _get(f: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One member; headers were checked by _scan_npz, so a failure here is a damaged body (CRC, short data)."""
    try:
        return f[key]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise EdgekdError(f"{path}: key {key} is truncated or corrupt ({_one_line(exc)}); save the file again with "
                          "numpy.savez") from None


def _npz_kind(f: np.lib.npyio.NpzFile, path: Path) -> str | None:
    if "kind" not in f.files:
        return None
    value = _get(f, "kind", path).reshape(-1)
    kind = str(value[0]) if value.size == 1 else repr(value.tolist())
    if kind not in KINDS:
        raise EdgekdError(f"{path}: key kind is {kind!r}; use 'image' or 'timeseries'")
    return kind


def _layout(shape: tuple[int, ...], kind: str | None, where: str) -> tuple[str, tuple[int, ...], str]:
    """(kind, channels-first sample shape, how) for a raw x shape; see the module docstring."""
    s = shape[1:]
    if len(s) == 1:
        if kind == "image":
            raise EdgekdError(f"{where}: kind is 'image' but samples are 1-D {s}; images need (N, H, W[, C])")
        return "timeseries", (1, s[0]), "N,L"
    if len(s) == 2:
        if kind == "timeseries":
            return "timeseries", s, "N,C,L"
        return "image", (1, *s), "N,H,W"
    if len(s) == 3:
        if kind == "timeseries":
            raise EdgekdError(
                f"{where}: kind is 'timeseries' but samples are 3-D {s}; time series are (N, C, L)"
            )
        if s[2] <= 4:
            return "image", (s[2], s[0], s[1]), "N,H,W,C"
        if s[0] <= 4:
            return "image", s, "N,C,H,W"
        raise EdgekdError(
            f"{where}: 4-D samples of shape {shape} have no channel axis of size <= 4; "
            "save images as (N, H, W, C) or (N, C, H, W)"
        )
    raise EdgekdError(
        f"{where}: unsupported shape {shape}; use (N, L) or (N, C, L) time series (with kind='timeseries'), "
        "or (N, H, W), (N, H, W, C) images"
    )


def _to_channels_first(x: np.ndarray, how: str) -> np.ndarray:
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)
    if how in ("N,L", "N,H,W"):
        return x[:, None]
    if how == "N,H,W,C":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _class_names(f: np.lib.npyio.NpzFile, path: Path, k: int) -> tuple[str, ...]:
    if "class_names" not in f.files:
        return tuple(str(i) for i in range(k))
    names = _get(f, "class_names", path).reshape(-1)
    if len(names) != k:
        raise EdgekdError(
            f"{path}: class_names has {len(names)} entries but y_train has {k} classes (0..{k - 1})"
        )
    return tuple(str(v) for v in names)


def _npz_spec(path: Path, f: np.lib.npyio.NpzFile, x_shape: tuple[int, ...]) -> tuple[TaskSpec, str]:
    """The spec and how x is laid out (see the module docstring)."""
    y_train = check_labels(_get(f, "y_train", path), f"{path}: y_train")
    k = check_classes(y_train, {}, f"{path}: y_train")
    kind, shape, how = _layout(x_shape, _npz_kind(f, path), f"{path}: x_train")
    spec = TaskSpec(
        name=f"user:{path}",
        kind=kind,
        input_shape=tuple(shape),
        num_classes=k,
        class_names=_class_names(f, path, k),
        description=f"user .npz, x read as ({how}), {k} classes",
        source=f"npz file {path.resolve()}",
    )
    return spec, how


def _load_npz(path: Path) -> RawData:
    f, _ = _open_npz(path)
    with f:
        xs, ys = {}, {}
        splits = ["train", "test"] + (["calib"] if "x_calib" in f.files else [])
        for split in splits:
            xs[split] = check_x(_get(f, f"x_{split}", path), f"{path}: x_{split}")
            ys[split] = check_labels(_get(f, f"y_{split}", path), f"{path}: y_{split}")
            check_pair(xs[split], ys[split], f"{path}: x_{split}", f"{path}: y_{split}")
        spec, how = _npz_spec(path, f, xs["train"].shape)
        for split in splits[1:]:
            if xs[split].shape[1:] != xs["train"].shape[1:]:
                raise EdgekdError(
                    f"{path}: x_{split} samples have shape {xs[split].shape[1:]} but x_train samples have "
                    f"{xs['train'].shape[1:]}; all splits need the same sample shape"
                )
        others = {f"{path}: y_{s}": ys[s] for s in splits[1:]}
        check_classes(ys["train"], others, f"{path}: y_train", spec.num_classes)
        xs = {s: _to_channels_first(x, how) for s, x in xs.items()}
    return RawData(
        spec=spec,
        x_train=xs["train"],
        y_train=ys["train"],
        x_test=xs["test"],
        y_test=ys["test"],
        x_calib=xs.get("calib"),
        y_calib=ys.get("calib"),
    )


# --- image folder -----------------------------------------------------------------------------------


MAX_IMAGE_PIXELS = 4096 * 4096  # per image; students see small inputs, and PIL's own bomb guard allows 89 M


def _image_error(p: Path, exc: BaseException) -> EdgekdError:
    """One line naming the image for whatever PIL raised (its decoders raise OSError, SyntaxError, ValueError...)."""
    from PIL import Image

    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return EdgekdError(f"{p}: image too large to read safely ({_one_line(exc)}); edgekd reads at most "
                           f"{MAX_IMAGE_PIXELS:,} pixels per image, resize it")
    return EdgekdError(f"{p}: not a readable image ({_one_line(exc)}); remove or fix it")


@contextmanager
def _open_image(p: Path) -> Iterator[Any]:
    """PIL's lazy open (header only), refusing decompression bombs before a pixel is decoded."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(p)
    except Exception as exc:  # noqa: BLE001 - see _image_error
        raise _image_error(p, exc) from None
    with im:
        w, h = im.size
        if w * h > MAX_IMAGE_PIXELS:
            raise EdgekdError(f"{p}: image is {w}x{h} ({w * h:,} pixels), more than the {MAX_IMAGE_PIXELS:,} "
                              "edgekd reads per image (a decompression-bomb guard); resize it")
        yield im


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _scan_folder(root: Path) -> tuple[TaskSpec, dict[str, list[tuple[Path, int]]], str, bool]:
    """(spec, files per split, PIL mode to convert to, split layout?) from file headers only."""
    try:
        import PIL  # noqa: F401
    except ImportError as exc:
        raise EdgekdError("image folders need Pillow: pip install pillow") from exc

    train_dir = root / "train"
    split_layout = train_dir.is_dir() and bool(_class_dirs(train_dir))
    class_root = train_dir if split_layout else root
    classes = _class_dirs(class_root)
    if len(classes) < 2:
        raise EdgekdError(
            f"image folder {class_root}: found {len(classes)} class sub-folder(s); need at least 2, "
            "one sub-folder of images per class"
        )
    names = tuple(c.name for c in classes)
    splits = {"train": class_root}
    if split_layout:
        for extra in ("test", "calib"):
            if (root / extra).is_dir():
                splits[extra] = root / extra
    files: dict[str, list[tuple[Path, int]]] = {}
    for split, folder in splits.items():
        files[split] = []
        for sub in _class_dirs(folder):
            if sub.name not in names:
                raise EdgekdError(
                    f"image folder {sub}: class {sub.name!r} is not among the train classes {list(names)}"
                )
            imgs = _images_in(sub)
            if not imgs and split == "train":
                raise EdgekdError(
                    f"image folder {sub}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                    "every class needs training images"
                )
            files[split] += [(p, names.index(sub.name)) for p in imgs]
        if not files[split]:
            raise EdgekdError(f"image folder {folder}: no images in any class sub-folder")

    first: tuple[Path, tuple[int, int]] | None = None
    modes = set()
    for split_files in files.values():
        for p, _ in split_files:
            with _open_image(p) as im:
                size, mode = im.size, im.mode
            if first is None:
                first = (p, size)
            elif size != first[1]:
                raise EdgekdError(
                    f"image folder {root}: images differ in size: {first[0]} is "
                    f"{first[1][0]}x{first[1][1]} but {p} is {size[0]}x{size[1]}; "
                    "all images must have the same size (edgekd does not resize)"
                )
            modes.add(mode)
    if modes <= GRAY_8BIT:
        target, channels = "L", 1
    elif modes <= GRAY_WIDE:
        target, channels = "F", 1
    elif modes & GRAY_WIDE:
        raise EdgekdError(
            f"image folder {root}: mixes 16-bit/float grayscale with other images ({sorted(modes)}); "
            "convert them to one format"
        )
    else:
        target, channels = "RGB", 3
    assert first is not None
    w, h = first[1]
    counts = {s: len(v) for s, v in files.items()}
    test_note = "" if "test" in files else "; no test folder, so a fixed 20 % test split is carved"
    spec = TaskSpec(
        name=f"user:{root}",
        kind="image",
        input_shape=(channels, h, w),
        num_classes=len(names),
        class_names=names,
        description=f"user image folder, {w}x{h} {target}, {len(names)} classes, files {counts}{test_note}",
        source=f"image folder {root.resolve()}",
    )
    return spec, files, target, split_layout


def _read_images(items: list[tuple[Path, int]], target: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for p, _ in items:
        with _open_image(p) as im:
            try:
                if target == "F":
                    arr = np.asarray(im, dtype=np.float32)
                else:
                    arr = np.asarray(im.convert(target), dtype=np.uint8)
            except Exception as exc:  # noqa: BLE001 - any decoder failure on a user's file is that file's fault
                raise _image_error(p, exc) from None
        arrays.append(arr)
    x = np.stack(arrays)
    x = x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x, np.array([c for _, c in items], dtype=np.int64)


def _load_folder(root: Path) -> RawData:
    spec, files, target, _ = _scan_folder(root)
    x_train, y_train = _read_images(files["train"], target)
    out = RawData(spec=spec, x_train=x_train, y_train=y_train)
    if "test" in files:
        out.x_test, out.y_test = _read_images(files["test"], target)
    if "calib" in files:
        out.x_calib, out.y_calib = _read_images(files["calib"], target)
    return out
