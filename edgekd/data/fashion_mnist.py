"""Built-in ``fashion-mnist``: read straight from the Debian package's gzip IDX files with numpy only."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from edgekd.data.core import RawData, TaskSpec
from edgekd.data.knowledge import Augmentation, TeacherRecipe
from edgekd.data.registry import register_task
from edgekd.data.validate import check_classes
from edgekd.errors import EdgekdError

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _dir(data_dir: str | None) -> Path:
    return Path(data_dir if data_dir is not None else DEFAULT_DIR).expanduser()


def _spec(data_dir: str | None = None) -> TaskSpec:
    return TaskSpec(
        name="fashion-mnist",
        kind="image",
        input_shape=(1, 28, 28),
        num_classes=10,
        class_names=CLASS_NAMES,
        description="Zalando Fashion-MNIST: 60,000 train / 10,000 test clothing images, 28x28 grayscale "
        "uint8, 10 classes",
        source=f"Fashion-MNIST IDX files in {_dir(data_dir)} (Debian package dataset-fashion-mnist, MIT)",
    )


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise EdgekdError(
        f"fashion-mnist: {folder / (stem + '.gz')} is missing; reinstall with "
        "`apt-get install dataset-fashion-mnist` or pass --data-dir to a folder with the four IDX files"
    )


MAX_IDX_BYTES = 256 * 1024**2  # the largest real file (train images) is 47,040,016 bytes


def read_idx(path: Path, magic: int, expected_dims: tuple[int | None, ...]) -> np.ndarray:
    """One IDX file (gzip or plain) as a uint8 array, after checking its magic number and declared sizes."""
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            d = zlib.decompressobj(wbits=31)  # 31: gzip container; faster than the gzip module
            data = d.decompress(data, MAX_IDX_BYTES + 1)  # bounded: a gzip bomb must not fill memory
            if len(data) > MAX_IDX_BYTES:
                raise EdgekdError(f"fashion-mnist: {path} decompresses to more than {MAX_IDX_BYTES >> 20} MiB (the "
                                  "real files are at most 45 MiB); the file is not Fashion-MNIST, reinstall it")
            if not d.eof:
                raise EdgekdError(f"fashion-mnist: cannot read {path} (the gzip stream is truncated); the file is "
                                  "corrupt, reinstall it")
    except (OSError, zlib.error) as exc:
        raise EdgekdError(
            f"fashion-mnist: cannot read {path} ({exc}); the file is corrupt, reinstall it"
        ) from exc
    ndim = len(expected_dims)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise EdgekdError(f"fashion-mnist: {path} is truncated ({len(data)} bytes); reinstall it")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise EdgekdError(
            f"fashion-mnist: {path} has IDX magic number 0x{found:08x}, expected 0x{magic:08x}; "
            "the file is corrupt or not the right IDX file"
        )
    dims = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    for want, got in zip(expected_dims, dims, strict=True):
        if want is not None and want != got:
            raise EdgekdError(f"fashion-mnist: {path} declares dimensions {dims}, expected {expected_dims}")
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) != header + size:
        raise EdgekdError(
            f"fashion-mnist: {path} holds {len(data) - header} data bytes but its header declares {size}; "
            "the file is truncated or corrupt, reinstall it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    img_stem, lbl_stem = FILES[split]
    img_path, lbl_path = _find(folder, img_stem), _find(folder, lbl_stem)
    labels = read_idx(lbl_path, IDX_LABELS_MAGIC, (None,))
    images = read_idx(img_path, IDX_IMAGES_MAGIC, (None, 28, 28))
    if len(images) != len(labels):
        raise EdgekdError(
            f"fashion-mnist: {img_path} has {len(images)} images but {lbl_path} has {len(labels)} labels"
        )
    if len(labels) == 0:
        raise EdgekdError(f"fashion-mnist: {lbl_path} holds no samples; reinstall it")
    if int(labels.max()) >= len(CLASS_NAMES):
        raise EdgekdError(f"fashion-mnist: {lbl_path} has label {int(labels.max())}, expected 0..9")
    return images[:, None, :, :], labels.astype(np.int64)


TEACHER = TeacherRecipe(params={"width": 32, "blocks": 1, "stages": 3}, epochs=15, lr=3e-3, batch_size=128)


# Clothes are mirror-symmetric: flips keep the label.
@register_task("fashion-mnist", spec=_spec, augment=Augmentation(shift=2, flip=True), teacher=TEACHER)
def load_fashion_mnist(data_dir: str | None = None) -> RawData:
    """The official 60k/10k split; ``data_dir`` points at a folder with the four IDX files (gzip or not)."""
    folder = _dir(data_dir)
    if not folder.is_dir():
        raise EdgekdError(
            f"fashion-mnist data not found: {folder} is not a folder; run `apt-get install "
            "dataset-fashion-mnist` or pass --data-dir to a folder with the four IDX files"
        )
    x_train, y_train = _read_split(folder, "train")
    x_test, y_test = _read_split(folder, "test")
    check_classes(y_train, {"fashion-mnist test labels": y_test}, "fashion-mnist train labels", 10)
    return RawData(spec=_spec(data_dir), x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
