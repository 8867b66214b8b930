"""Tests for edgekd.data: built-in tasks, user data, deterministic splits and every bad-input message."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.data import TASKS, RawData, Splits, TaskSpec, get_spec, load_task, register_task, task_names
from edgekd.data.fashion_mnist import DEFAULT_DIR, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from edgekd.errors import EdgekdError

SPLITS = ("train", "val", "test", "calib")


def _channel_axes(x: np.ndarray) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.ndim))


def _assert_normalised(s: Splits) -> None:
    """Train split is ~N(0, 1) per channel and the stored constants reproduce it."""
    axes = _channel_axes(s.x_train)
    np.testing.assert_allclose(s.x_train.mean(axis=axes), 0.0, atol=1e-4)
    np.testing.assert_allclose(s.x_train.std(axis=axes), 1.0, atol=1e-4)
    assert len(s.normalization["mean"]) == len(s.normalization["std"]) == s.spec.input_shape[0]
    for split in SPLITS:
        x, y = s.arrays(split)
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape == (len(y), *s.spec.input_shape)
        assert y.min() >= 0 and y.max() < s.spec.num_classes


def _assert_disjoint(s: Splits) -> None:
    idx = {k: set(v.tolist()) for k, v in s.indices.items()}
    for split in ("train", "val", "calib"):
        assert not idx["test"] & idx[split], f"test rows leak into {split}"
    assert not idx["train"] & idx["val"]
    assert not idx["val"] & idx["calib"]
    for split in SPLITS:
        assert len(idx[split]) == len(s.arrays(split)[1])  # no duplicate rows within a split


def _one_line_error(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(EdgekdError, match=match) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# --- registry and specs -------------------------------------------------------------------------------


def test_registry_and_cheap_specs(tmp_path: Path) -> None:
    assert task_names() == ["basic-motions", "digits", "fashion-mnist", "text-embedding"]
    assert set(TASKS) == set(task_names())
    d = get_spec("digits")
    assert (d.kind, d.input_shape, d.num_classes, d.class_names[0]) == ("image", (1, 8, 8), 10, "0")
    f = get_spec("fashion-mnist", data_dir=str(tmp_path / "absent"))  # no files needed for the spec
    assert (f.input_shape, f.num_classes, f.class_names[-1]) == ((1, 28, 28), 10, "Ankle boot")
    assert str(tmp_path / "absent") in f.source
    b = get_spec("basic-motions")
    assert (b.kind, b.input_shape, b.class_names) == (
        "timeseries",
        (6, 100),
        ("Badminton", "Running", "Standing", "Walking"),
    )
    assert get_spec("Fashion_MNIST").name == "fashion-mnist"  # CLI-friendly spelling
    record = json.loads(json.dumps(d.to_dict()))  # what reports store: it survives JSON unchanged
    assert record == {"name": "digits", "kind": "image", "input_shape": [1, 8, 8], "num_classes": 10,
                      "class_names": [str(i) for i in range(10)], "description": d.description,
                      "source": d.source}
    assert TaskSpec(**{**record, "input_shape": tuple(record["input_shape"]),
                       "class_names": tuple(record["class_names"])}) == d


def test_register_task_adds_a_task_without_test_split() -> None:
    spec = TaskSpec("toy", "timeseries", (2, 5), 3, ("a", "b", "c"), "toy", "test")

    @register_task("toy", spec=spec)
    def _toy(data_dir: str | None) -> RawData:
        rng = np.random.default_rng(0)
        return RawData(spec, rng.normal(size=(60, 2, 5)), np.repeat(np.arange(3), 20))

    try:
        assert get_spec("toy") is spec
        s = load_task("toy")
        assert s.summary()["sizes"] == {"train": 43, "val": 5, "test": 12, "calib": 43}
        assert s.summary()["class_counts"]["test"] == [4, 4, 4]
        _assert_disjoint(s)
        with pytest.raises(ValueError, match="registered twice"):
            register_task("toy", spec=spec)(_toy)
    finally:
        TASKS.pop("toy")


def test_training_knowledge_is_registered_with_the_task() -> None:
    from edgekd.data.knowledge import DEFAULT_IMAGE, DEFAULT_SERIES, GENERIC_TEACHER, Augmentation, TeacherRecipe
    from edgekd.distill import augment
    from edgekd.distill.teachers import recipe

    # the built-ins' values (students and teachers train bit-identically to before the move)
    assert augment.Policy.for_task("digits", "image") == Augmentation(shift=1)
    assert augment.Policy.for_task("fashion-mnist", "image") == Augmentation(shift=2, flip=True)
    assert augment.Policy.for_task("basic-motions", "timeseries") == Augmentation(shift=10, scale=0.1)
    assert augment.Policy.for_task("user:x.npz", "image") == DEFAULT_IMAGE == Augmentation(shift=2)
    assert augment.Policy.for_task("user:x.npz", "timeseries") == DEFAULT_SERIES
    assert not augment.Policy.for_task("fashion-mnist", "image", enabled=False).active
    assert recipe("digits") == TeacherRecipe(params={"width": 32, "blocks": 1, "stages": 2}, epochs=60,
                                             batch_size=64, augment=False)
    assert recipe("fashion-mnist") == TeacherRecipe(epochs=15)
    assert recipe("basic-motions") == TeacherRecipe(params={"width": 32, "blocks": 1, "stages": 2}, epochs=60,
                                                    batch_size=8)
    assert recipe("user:x.npz") is GENERIC_TEACHER

    # a new task brings its own knowledge in its one registration
    spec = TaskSpec("toy-knowledge", "image", (1, 4, 4), 2, ("a", "b"), "toy", "test")
    teacher = TeacherRecipe(epochs=3, batch_size=16)

    @register_task("toy-knowledge", spec=spec, augment=Augmentation(flip=True), teacher=teacher)
    def _toy(data_dir: str | None) -> RawData:
        raise AssertionError("not loaded")

    try:
        assert augment.Policy.for_task("toy-knowledge", "image") == Augmentation(flip=True)
        assert recipe("toy-knowledge") is teacher
    finally:
        TASKS.pop("toy-knowledge")
    assert augment.Policy.for_task("toy-knowledge", "image") == DEFAULT_IMAGE


# --- digits -------------------------------------------------------------------------------------------


def test_digits_shapes_classes_and_normalisation() -> None:
    s = load_task("digits")
    summary = s.summary()
    assert summary["sizes"] == {"train": 1294, "val": 144, "test": 359, "calib": 500}
    assert sum(summary["sizes"][k] for k in ("train", "val", "test")) == 1797
    assert s.x_train.shape == (1294, 1, 8, 8)
    assert s.spec.num_classes == 10 and set(np.unique(s.y_train)) == set(range(10))
    # stratified: every class within one sample of its share in test and calibration
    assert min(summary["class_counts"]["test"]) >= 35 and max(summary["class_counts"]["test"]) <= 37
    assert min(summary["class_counts"]["calib"]) >= 48 and max(summary["class_counts"]["calib"]) <= 51
    _assert_normalised(s)
    assert s.normalization["mean"][0] == pytest.approx(4.88, abs=0.1)  # raw 0..16 pixel units
    assert s.normalization["std"][0] == pytest.approx(6.0, abs=0.2)
    assert (s.normalization["raw_min"], s.normalization["raw_max"]) == (0.0, 16.0)
    assert summary["calibration_warnings"] == []
    json.dumps(summary)


def test_digits_splits_are_disjoint_and_traceable() -> None:
    from sklearn.datasets import load_digits

    s = load_task("digits")
    _assert_disjoint(s)
    all_rows = set().union(*(set(s.indices[k].tolist()) for k in ("train", "val", "test")))
    assert all_rows == set(range(1797))
    assert set(s.indices["calib"].tolist()) <= set(s.indices["train"].tolist())
    raw = load_digits()
    mean, std = s.normalization["mean"][0], s.normalization["std"][0]
    for split in SPLITS:
        x, y = s.arrays(split)
        rows = s.indices[split]
        np.testing.assert_allclose(x[:, 0], (raw.images[rows] - mean) / std, atol=1e-5)
        np.testing.assert_array_equal(y, raw.target[rows])


def test_determinism_same_seed_equal_different_seed_different() -> None:
    a, b, c = load_task("digits", seed=0), load_task("digits", seed=0), load_task("digits", seed=1)
    for split in SPLITS:
        for left, right in zip(a.arrays(split), b.arrays(split), strict=True):
            np.testing.assert_array_equal(left, right)
    assert not np.array_equal(a.indices["val"], c.indices["val"])
    assert not np.array_equal(a.indices["calib"], c.indices["calib"])
    assert a.x_train.shape == c.x_train.shape and not np.array_equal(a.x_train, c.x_train)
    np.testing.assert_array_equal(a.indices["test"], c.indices["test"])  # test never moves with the seed


def test_limit_takes_stratified_subsets_of_the_full_splits() -> None:
    full, small = load_task("digits"), load_task("digits", limit=200, calib_size=50)
    assert small.summary()["sizes"] == {"train": 200, "val": 23, "test": 56, "calib": 50}
    assert set(np.unique(small.y_train)) == set(range(10))
    for split in ("train", "val", "test"):
        assert set(small.indices[split].tolist()) <= set(full.indices[split].tolist())
    assert set(small.indices["calib"].tolist()) <= set(small.indices["train"].tolist())
    _assert_normalised(small)
    _assert_disjoint(small)
    assert load_task("digits", limit=10_000).summary()["sizes"] == full.summary()["sizes"]


# --- fashion-mnist ------------------------------------------------------------------------------------


def _need_fashion() -> None:
    if not Path(DEFAULT_DIR).is_dir():
        if not os.environ.get("CI"):
            pytest.skip(f"{DEFAULT_DIR} missing: apt-get install dataset-fashion-mnist")
        pytest.fail(f"{DEFAULT_DIR} missing in CI: install the Debian package dataset-fashion-mnist")


def test_fashion_mnist_limited_slice() -> None:
    _need_fashion()
    s = load_task("fashion-mnist", limit=500, calib_size=200)
    assert s.summary()["sizes"] == {"train": 500, "val": 56, "test": 93, "calib": 200}
    assert s.x_train.shape == (500, 1, 28, 28) and s.x_test.shape == (93, 1, 28, 28)
    for split in SPLITS:
        assert set(np.unique(s.arrays(split)[1])) == set(range(10))
    assert s.summary()["class_counts"]["train"] == [50] * 10
    _assert_normalised(s)
    _assert_disjoint(s)
    assert 55 < s.normalization["mean"][0] < 90 and (
        s.normalization["raw_min"],
        s.normalization["raw_max"],
    ) == (
        0.0,
        255.0,
    )
    assert s.indices["test"].min() >= 60_000  # test rows come from the t10k files


def test_fashion_mnist_idx_files_sizes() -> None:
    _need_fashion()
    folder = Path(DEFAULT_DIR)
    train = read_idx(folder / "train-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC, (None,))
    test = read_idx(folder / "t10k-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC, (None,))
    assert (len(train), len(test)) == (60_000, 10_000)
    assert np.bincount(train).tolist() == [6000] * 10 and np.bincount(test).tolist() == [1000] * 10


def _write_idx(path: Path, magic: int, arr: np.ndarray, compress: bool = True) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def _fake_fashion(folder: Path, n_train: int = 40, n_test: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC, labels)
        images = rng.integers(0, 256, size=(n, 28, 28))
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", IDX_IMAGES_MAGIC, images)
    return folder


def test_fashion_mnist_reader_on_synthetic_idx(tmp_path: Path) -> None:
    folder = _fake_fashion(tmp_path / "fm")
    s = load_task("fashion-mnist", data_dir=str(folder))
    assert s.summary()["sizes"] == {"train": 30, "val": 10, "test": 20, "calib": 30}
    assert str(folder) in s.spec.source
    # plain (not gzipped) IDX files are read too
    labels = np.arange(20) % 10
    _write_idx(folder / "t10k-labels-idx1-ubyte", IDX_LABELS_MAGIC, labels, compress=False)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert len(load_task("fashion-mnist", data_dir=str(folder)).y_test) == 20


def test_fashion_mnist_missing_dir_and_files(tmp_path: Path) -> None:
    msg = _one_line_error(
        "apt-get install dataset-fashion-mnist", load_task, "fashion-mnist", str(tmp_path / "no")
    )
    assert "--data-dir" in msg
    _one_line_error(
        "train-images-idx3-ubyte.gz is missing", load_task, "fashion-mnist", data_dir=str(tmp_path)
    )


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("magic", "magic number 0x00000802, expected 0x00000803"),
        ("truncate", "holds 1000 data bytes but its header declares 31360"),
        ("garbage", "is corrupt"),
        ("gzip-cut", "cannot read"),
        ("count", "has 40 images but"),
        ("label", "has label 12, expected 0..9"),
    ],
)
def test_fashion_mnist_corrupt_idx(tmp_path: Path, damage: str, match: str) -> None:
    folder = _fake_fashion(tmp_path / "fm")
    images = folder / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if damage == "magic":
        images.write_bytes(gzip.compress((0x802).to_bytes(4, "big") + raw[4:]))
    elif damage == "truncate":
        images.write_bytes(gzip.compress(raw[: 16 + 1000]))
    elif damage == "garbage":
        images.write_bytes(b"this is not gzip data at all")
    elif damage == "gzip-cut":
        images.write_bytes(images.read_bytes()[:200])
    elif damage == "count":
        _write_idx(folder / "train-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC, np.arange(39) % 10)
    elif damage == "label":
        _write_idx(folder / "train-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC, np.full(40, 12))
    _one_line_error(match, load_task, "fashion-mnist", data_dir=str(folder))


# --- basic-motions ------------------------------------------------------------------------------------


def test_basic_motions_shapes_and_classes() -> None:
    s = load_task("basic-motions")
    assert s.summary()["sizes"] == {"train": 36, "val": 4, "test": 40, "calib": 36}
    assert s.x_train.shape == (36, 6, 100) and s.x_test.shape == (40, 6, 100)
    assert s.summary()["class_counts"]["test"] == [10, 10, 10, 10]
    assert s.summary()["class_counts"]["val"] == [1, 1, 1, 1]
    assert len(s.normalization["mean"]) == 6
    _assert_normalised(s)
    _assert_disjoint(s)
    warnings = s.calibration_warnings()
    assert len(warnings) == 1 and "only 36 samples (< 200)" in warnings[0]


# --- user .npz ----------------------------------------------------------------------------------------


def _npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return str(path)


def _image_arrays(n_train: int = 60, n_test: int = 20, shape: tuple[int, ...] = (6, 5)) -> dict:
    rng = np.random.default_rng(1)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % 3,
        "x_test": rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8),
        "y_test": np.arange(n_test) % 3,
    }


def test_npz_grayscale_round_trip(tmp_path: Path) -> None:
    arrays = _image_arrays()
    path = _npz(tmp_path / "d.npz", class_names=np.array(["cat", "dog", "owl"]), **arrays)
    spec = get_spec(path)
    assert (spec.kind, spec.input_shape, spec.num_classes) == ("image", (1, 6, 5), 3)
    assert spec.class_names == ("cat", "dog", "owl") and spec.name == f"user:{path}"
    s = load_task(path, calib_size=12)
    assert s.spec == spec
    assert s.summary()["sizes"] == {"train": 54, "val": 6, "test": 20, "calib": 12}
    _assert_normalised(s)
    _assert_disjoint(s)
    raw_train = arrays["x_train"][s.indices["train"]].astype(np.float64)
    assert s.normalization["mean"][0] == pytest.approx(raw_train.mean())
    assert s.normalization["std"][0] == pytest.approx(raw_train.std())
    expected = (arrays["x_test"].astype(np.float64) - raw_train.mean()) / raw_train.std()
    np.testing.assert_allclose(s.x_test[:, 0], expected, atol=1e-5)
    # disjointness by content too: no test row appears in train/val/calib
    digest = {hashlib.sha1(r.tobytes()).hexdigest() for r in s.x_test}
    for split in ("train", "val", "calib"):
        assert not digest & {hashlib.sha1(r.tobytes()).hexdigest() for r in s.arrays(split)[0]}
    assert load_task("user:" + path).spec.input_shape == (1, 6, 5)


def test_npz_layouts_hwc_chw_and_timeseries(tmp_path: Path) -> None:
    hwc = _image_arrays(shape=(6, 5, 3))
    s = load_task(_npz(tmp_path / "hwc.npz", **hwc))
    assert s.spec.input_shape == (3, 6, 5) and len(s.normalization["mean"]) == 3
    m, sd = s.normalization["mean"], s.normalization["std"]
    np.testing.assert_allclose(s.x_test[2, 1, 4, 3], (hwc["x_test"][2, 4, 3, 1] - m[1]) / sd[1], rtol=1e-5)

    chw = _image_arrays(shape=(3, 6, 5))
    assert get_spec(_npz(tmp_path / "chw.npz", **chw)).input_shape == (3, 6, 5)

    ts = {
        k: (v.astype(np.float32) if k.startswith("x") else v) for k, v in _image_arrays(shape=(4, 30)).items()
    }
    assert get_spec(_npz(tmp_path / "img.npz", **ts)).input_shape == (1, 4, 30)  # 3-D default: images
    spec = get_spec(_npz(tmp_path / "ts.npz", kind=np.array("timeseries"), **ts))
    assert (spec.kind, spec.input_shape) == ("timeseries", (4, 30))
    s = load_task(str(tmp_path / "ts.npz"))
    assert s.x_train.shape == (54, 4, 30)
    _assert_normalised(s)

    flat = _image_arrays(shape=(30,))
    spec = get_spec(_npz(tmp_path / "flat.npz", **flat))
    assert (spec.kind, spec.input_shape) == ("timeseries", (1, 30))


def test_npz_user_calibration_set(tmp_path: Path) -> None:
    arrays = _image_arrays()
    rng = np.random.default_rng(7)
    calib = {"x_calib": rng.integers(0, 256, size=(30, 6, 5), dtype=np.uint8), "y_calib": np.arange(30) % 3}
    s = load_task(_npz(tmp_path / "c.npz", **arrays, **calib), calib_size=24)
    assert s.normalization["calibration_from"] == "user-supplied x_calib/y_calib"
    assert len(s.y_calib) == 24 and np.bincount(s.y_calib).tolist() == [8, 8, 8]
    assert s.indices["calib"].min() >= 80  # rows after the train and test sources
    mean, std = s.normalization["mean"][0], s.normalization["std"][0]
    rows = s.indices["calib"] - 80
    np.testing.assert_allclose(s.x_calib[:, 0], (calib["x_calib"][rows] - mean) / std, atol=1e-5)


# --- user image folders -------------------------------------------------------------------------------


def _png(path: Path, value: int | tuple[int, int, int], size: tuple[int, int] = (6, 5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if isinstance(value, int) else "RGB"
    Image.new(mode, size, value).save(path)


def test_image_folder_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for c, name in enumerate(["bird", "cat", "dog"]):
        for i in range(10):
            _png(root / name / f"{i:02d}.png", 20 * c + i)
    (root / "cat" / "notes.txt").write_text("ignored")
    spec = get_spec(str(root))
    assert (spec.kind, spec.input_shape, spec.class_names) == ("image", (1, 5, 6), ("bird", "cat", "dog"))
    s = load_task(str(root))
    assert s.summary()["sizes"] == {"train": 21, "val": 3, "test": 6, "calib": 21}
    assert s.summary()["class_counts"]["test"] == [2, 2, 2]
    _assert_normalised(s)
    _assert_disjoint(s)
    # each image is constant 20*class + file number: undo the normalisation and check the pixel value
    mean, std = s.normalization["mean"][0], s.normalization["std"][0]
    rows = s.indices["test"]
    np.testing.assert_allclose(s.x_test[:, 0, 0, 0] * std + mean, 20 * (rows // 10) + rows % 10, atol=1e-3)


def test_image_folder_split_layout_rgb(tmp_path: Path) -> None:
    root = tmp_path / "rgb"
    for c, name in enumerate(["a", "b"]):
        for i in range(6):
            _png(root / "train" / name / f"{i}.png", (100 * c, i, 7))
        _png(root / "test" / name / "t.png", (100 * c, 50, 7))
    _png(root / "train" / "a" / "gray.png", 9)  # mixed gray + RGB: everything becomes RGB
    s = load_task(str(root))
    assert s.spec.input_shape == (3, 5, 6)
    assert s.summary()["sizes"] == {"train": 11, "val": 2, "test": 2, "calib": 11}
    assert len(s.normalization["mean"]) == 3
    _assert_normalised(s)


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"y_test": None}, r"missing key\(s\) y_test \(found: x_train, y_train, x_test\)"),
        (
            {"y_train": np.r_[np.arange(59) % 3, -1]},
            "y_train: labels must be integers 0..K-1, found negative",
        ),
        ({"y_train": np.arange(60) % 3 * 2}, r"class\(es\) 1, 3 of 0..4 have no training samples"),
        ({"y_test": np.arange(20) % 4}, "y_test: label 3 is not a training class"),
        ({"y_train": np.arange(60) % 3 + 0.5}, "y_train: labels must be integers 0..K-1, found non-integer"),
        (
            {"y_train": np.array(["a", "b", "c"] * 20)},
            "y_train: labels must be integers 0..K-1, got dtype <U1",
        ),
        ({"y_train": np.eye(3)[np.arange(60) % 3]}, "one-hot"),
        ({"y_train": np.arange(59) % 3}, "x_train has 60 samples but .*y_train has 59 labels"),
        ({"x_test": np.zeros((20, 6, 4), np.uint8)}, r"x_test samples have shape \(6, 4\) but x_train"),
        ({"x_test": np.zeros((0, 6, 5)), "y_test": np.zeros(0, int)}, "x_test: no samples"),
        ({"y_train": np.zeros(60, int)}, "only one class"),
        ({"x_train": np.zeros((60, 2, 3, 4, 5))}, "unsupported shape"),
        ({"x_train": np.zeros((60, 6, 5, 7))}, "no channel axis of size <= 4"),
        ({"kind": np.array("audio")}, "key kind is 'audio'"),
        ({"class_names": np.array(["a", "b"])}, "class_names has 2 entries but y_train has 3 classes"),
        ({"x_calib": np.zeros((5, 6, 5))}, "x_calib and y_calib must be given together"),
        ({"x_train": np.array([object()] * 60)}, "holds Python objects"),
    ],
)
def test_bad_npz(tmp_path: Path, change: dict, match: str) -> None:
    arrays = _image_arrays()
    arrays.update(change)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = _npz(tmp_path / "bad.npz", **arrays)
    msg = _one_line_error(match, load_task, path)
    assert "bad.npz" in msg


def test_bad_npz_nan_names_sample(tmp_path: Path) -> None:
    arrays = _image_arrays()
    x = arrays["x_train"].astype(np.float32)
    x[7, 2, 3] = np.nan
    arrays["x_train"] = x
    _one_line_error(
        r"bad.npz: x_train: contains NaN values \(1 in total, first in sample 7\)",
        load_task,
        _npz(tmp_path / "bad.npz", **arrays),
    )
    arrays["x_train"][7, 2, 3] = np.inf
    _one_line_error("contains infinite values", load_task, _npz(tmp_path / "bad.npz", **arrays))


def test_bad_files_and_paths(tmp_path: Path) -> None:
    _one_line_error(
        "unknown task 'nope': choose one of basic-motions, digits, fashion-mnist", load_task, "nope"
    )
    _one_line_error("unknown task", get_spec, "cifar10")
    _one_line_error("does not exist", load_task, str(tmp_path / "missing.npz"))
    _one_line_error("does not exist", load_task, "user:missing-folder")
    (tmp_path / "d.csv").write_text("1,2\n")
    _one_line_error("unsupported user data file", load_task, str(tmp_path / "d.csv"))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    _one_line_error(r"broken.npz: not an .npz archive \(no zip directory", load_task, str(tmp_path / "broken.npz"))
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    _one_line_error("holds a single array", load_task, str(tmp_path / "single.npz"))


def test_bad_image_folders(tmp_path: Path) -> None:
    sizes = tmp_path / "sizes"
    _png(sizes / "a" / "1.png", 1)
    _png(sizes / "b" / "1.png", 1, size=(7, 5))
    _one_line_error(
        r"images differ in size: .*a/1.png is 6x5 but .*b/1.png is 7x5; all images must have the same",
        load_task,
        str(sizes),
    )
    one = tmp_path / "one"
    _png(one / "a" / "1.png", 1)
    _one_line_error(r"found 1 class sub-folder\(s\); need at least 2", get_spec, str(one))
    empty = tmp_path / "empty"
    _png(empty / "a" / "1.png", 1)
    (empty / "b").mkdir()
    _one_line_error("b: no images", load_task, str(empty))
    broken = tmp_path / "broken"
    _png(broken / "a" / "1.png", 1)
    (broken / "b").mkdir()
    (broken / "b" / "x.png").write_bytes(b"not a png")
    _one_line_error("x.png: not a readable image", load_task, str(broken))
    extra = tmp_path / "extra"
    for name in ("a", "b"):
        _png(extra / "train" / name / "1.png", 1)
    _png(extra / "test" / "c" / "1.png", 1)
    _one_line_error("class 'c' is not among the train classes", load_task, str(extra))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"seed": 1.5}, "seed must be an integer >= 0"),
        ({"limit": 0}, "limit must be an integer >= 1"),
        ({"limit": 5}, r"limit must be at least the number of classes \(10\)"),
        ({"calib_size": 0}, "calib_size must be an integer >= 1"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    _one_line_error(match, load_task, "digits", **kwargs)


def test_tiny_classes_keep_a_training_sample(tmp_path: Path) -> None:
    arrays = _image_arrays(n_train=7)  # classes with 3, 2, 2 samples
    s = load_task(_npz(tmp_path / "tiny.npz", **arrays))
    assert set(np.unique(s.y_train)) == {0, 1, 2}
    assert s.summary()["class_counts"]["val"] == [1, 1, 1]  # one per class that can spare one
    assert s.summary()["class_counts"]["train"] == [2, 1, 1]
    arrays = {**_image_arrays(n_train=3)}  # one sample per class: nothing to validate on
    _one_line_error("too few training samples", load_task, _npz(tmp_path / "tiny.npz", **arrays))


# --- hostile user data (issue 12) ---------------------------------------------------------------------


def _npy(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _zip_npz(path: Path, members: dict[str, bytes], compress: bool = False) -> str:
    """An .npz built member by member, so a member can be a crafted or damaged .npy."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for key, data in members.items():
            z.writestr(f"{key}.npy", data)
    return str(path)


def _members(**change: bytes) -> dict[str, bytes]:
    members = {k: _npy(v) for k, v in _image_arrays().items()}
    members.update(change)
    return members


def _header_only(shape: tuple[int, ...], descr: str = "<f4", body: bytes = b"\0" * 64) -> bytes:
    """A valid .npy header declaring ``shape`` followed by a tiny body: numpy would allocate the whole shape."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + body


def _plan_cli(task: str) -> str:
    """`edgekd plan --task TASK` must exit 2 with exactly one stderr line."""
    from click.testing import CliRunner

    from edgekd.cli import main

    result = CliRunner().invoke(main, ["plan", "--target", "nrf52840-dk", "--task", task])
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, lines
    return lines[0].removeprefix("edgekd: error: ")


@pytest.mark.parametrize("compress", [False, True])
def test_npz_header_declaring_48_gib_is_refused_before_allocating(tmp_path: Path, compress: bool) -> None:
    # (128000, 102400) float32 is 48.8 GiB; the member holds 64 bytes.
    path = _zip_npz(tmp_path / "bomb.npz", _members(x_train=_header_only((128000, 102400))), compress)
    expected = (f"{path}: key x_train is truncated or corrupt: its header declares (128000, 102400) float32 "
                "(52,428,800,000 B (48.8 GiB)) but the member holds 64 B of data; save the file again with numpy.savez")
    assert _one_line_error("truncated or corrupt", get_spec, path) == expected
    assert _one_line_error("truncated or corrupt", load_task, path) == expected
    assert _plan_cli(path) == expected


def test_npz_over_the_memory_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.data import user

    path = _npz(tmp_path / "big.npz", **_image_arrays())  # 60*30 + 20*30 bytes of pixels, 640 of labels
    monkeypatch.setattr(user, "MAX_NPZ_BYTES", 2048)
    msg = _one_line_error("more than the 2.0 KiB edgekd loads into memory", load_task, path)
    assert msg.startswith(f"{path}: its arrays declare 3,040 B (x_train: (60, 6, 5) uint8)")


@pytest.mark.parametrize("key", ["x_train", "y_train"])
def test_truncated_npz_member_says_truncated_not_python_objects(tmp_path: Path, key: str) -> None:
    full = _npy(_image_arrays()[key])
    path = _zip_npz(tmp_path / "short.npz", _members(**{key: full[:-3]}))
    msg = _one_line_error(f"{key} is truncated or corrupt", load_task, path)
    assert "Python objects" not in msg and "but the member holds" in msg


def test_truncated_npz_file_and_damaged_member(tmp_path: Path) -> None:
    good = Path(_npz(tmp_path / "good.npz", **_image_arrays()))
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    _one_line_error(r"cut.npz: not an .npz archive \(no zip directory: not an .npz, or truncated\)", load_task,
                    str(tmp_path / "cut.npz"))
    damaged = bytearray(data)
    at = data.index(b"\x93NUMPY", data.index(b"\x93NUMPY") + 1) + 200  # inside the second member's data
    damaged[at] ^= 0xFF
    (tmp_path / "crc.npz").write_bytes(bytes(damaged))
    _one_line_error(r"crc.npz: truncated or corrupt .npz archive \(Bad CRC-32", load_task, str(tmp_path / "crc.npz"))


def test_npz_member_with_a_garbage_header(tmp_path: Path) -> None:
    path = _zip_npz(tmp_path / "hdr.npz", _members(y_test=b"\x93NUMPY\x01\x00\x10\x00{'descr': zz}   \n"))
    msg = _one_line_error("y_test is truncated or corrupt \\(its .npy header cannot be read", get_spec, path)
    assert " at 0x" not in msg
    path = _zip_npz(tmp_path / "neg.npz", _members(x_test=_header_only((-5, 6, 5), "|u1")))
    _one_line_error(r"x_test is corrupt: its .npy header declares shape \(-5, 6, 5\)", load_task, path)


@pytest.mark.parametrize("key", ["x_train", "class_names"])
def test_object_arrays_are_refused_without_unpickling(tmp_path: Path, key: str) -> None:
    arrays = _image_arrays()
    arrays[key] = np.array([{"a": 1}, "b", 3], dtype=object) if key == "class_names" else np.array(
        [object()] * 60, dtype=object)
    path = _npz(tmp_path / "obj.npz", **arrays)
    for fn in (get_spec, load_task):
        msg = _one_line_error(f"key {key} holds Python objects \\(dtype object\\), which edgekd does not unpickle",
                              fn, path)
        assert msg.startswith(f"{path}: ")


def test_empty_npz_and_non_npy_member(tmp_path: Path) -> None:
    (tmp_path / "empty.npz").write_bytes(b"")
    _one_line_error("empty.npz: empty file", get_spec, str(tmp_path / "empty.npz"))
    import zipfile

    path = _zip_npz(tmp_path / "raw.npz", _members())
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("notes.txt", "hello")
    _one_line_error("raw.npz: member notes.txt is not a .npy array", load_task, path)


def _png_bomb(path: Path, width: int, height: int) -> None:
    """A real, valid grayscale PNG of width x height zeros, deflated in 1 MiB steps (a few hundred KiB on disk)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (width + 1)  # filter byte + pixels
    per = max(1, (1 << 20) // len(row))
    c, body, done = zlib.compressobj(9), bytearray(), 0
    while done < height:
        n = min(per, height - done)
        body += c.compress(row * n)
        done += n
    body += c.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", bytes(body)) + chunk(b"IEND", b""))


def _two_classes(root: Path) -> Path:
    for name in ("a", "b"):
        for i in range(2):
            _png(root / name / f"{i}.png", 40 * i)
    return root


def test_decompression_bomb_png_is_refused_naming_the_file(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "bomb")
    bomb = root / "b" / "huge.png"
    _png_bomb(bomb, 20000, 20000)
    for fn in (get_spec, load_task):
        msg = _one_line_error("image too large to read safely", fn, str(root))
        assert msg.startswith(f"{bomb}: ") and "edgekd reads at most 16,777,216 pixels per image" in msg
    assert _plan_cli(str(root)).startswith(f"{bomb}: image too large")


def test_image_over_edgekds_pixel_cap_but_under_pils_is_refused(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "big")
    big = root / "a" / "big.png"
    _png_bomb(big, 5000, 5000)  # 25 M pixels: under PIL's 89 M warning, over edgekd's cap
    _one_line_error(f"{big}: image is 5000x5000 \\(25,000,000 pixels\\), more than the 16,777,216", get_spec, str(root))


def test_non_image_and_truncated_image_files_name_the_file(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "junk")
    (root / "a" / "notes.jpg").write_text("not an image\n")
    _one_line_error(f"{root / 'a' / 'notes.jpg'}: not a readable image \\(cannot identify image file", load_task,
                    str(root))
    root = tmp_path / "cut"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for i in range(2):
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(root / name / f"{i}.png")
    cut = root / "b" / "1.png"
    cut.write_bytes(cut.read_bytes()[:2000])  # the header is intact, so only decoding finds it
    _one_line_error(f"{cut}: not a readable image \\(image file is truncated\\)", load_task, str(root))


def test_fashion_mnist_gzip_bomb_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.data import fashion_mnist

    folder = _fake_fashion(tmp_path / "fm")
    images = folder / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw + b"\0" * (4 << 20)))  # 4 MiB of zeros: 4 KiB on disk
    monkeypatch.setattr(fashion_mnist, "MAX_IDX_BYTES", 1 << 20)
    _one_line_error(f"{images} decompresses to more than 1 MiB", load_task, "fashion-mnist", data_dir=str(folder))


# ------------------------------------------------------------------ unlabelled samples (--labels, --unlabelled)


def test_labels_keeps_a_stratified_seeded_subset_and_the_rest_is_unlabelled() -> None:
    from edgekd.data.unlabelled import keep_labels, training_union

    full = load_task("digits")
    few = keep_labels(full, 100)
    assert len(few.y_train) == 100 and few.labels_kept == 100
    assert np.bincount(few.y_train, minlength=10).min() >= 9  # stratified: about 10 of each class
    assert len(few.x_unlabelled) == len(full.y_train) - 100
    assert len(few.y_val) == 12 and set(few.y_val) == set(range(10))  # ceil(100 / 9), every class
    ids = few.indices
    assert not set(ids["train"]) & set(ids["unlabelled"])
    assert set(ids["train"]) | set(ids["unlabelled"]) == set(full.indices["train"])
    assert np.array_equal(few.x_test, full.x_test)  # the test split is untouched
    assert few.summary()["unlabelled"]["samples"] == len(few.x_unlabelled)
    again = keep_labels(full, 100)
    assert np.array_equal(again.indices["train"], ids["train"])  # seeded: the same subset every run
    # The union in id order does not depend on N: runs with other label counts share teacher outputs.
    x_a, y_a = training_union(few)
    x_b, y_b = training_union(keep_labels(full, 300))
    assert np.array_equal(x_a, x_b) and np.array_equal(x_a, full.x_train)
    assert (y_a >= 0).sum() == 100 and (y_b >= 0).sum() == 300 and np.array_equal(y_a[y_a >= 0], few.y_train)
    with pytest.raises(EdgekdError, match="at least|>= the number of classes"):
        keep_labels(full, 5)
    with pytest.raises(EdgekdError, match="has only"):
        keep_labels(full, 10**6)


def test_unlabelled_npz_npy_and_image_folder(tmp_path: Path) -> None:
    from edgekd.data.unlabelled import add_unlabelled, prepare, read_unlabelled

    full = load_task("digits")
    spec = full.spec
    raw = np.arange(3 * 64, dtype=np.float32).reshape(3, 8, 8) % 17
    np.savez(tmp_path / "hw.npz", x=raw)  # (N, H, W)
    np.save(tmp_path / "nhwc.npy", raw[..., None])  # (N, H, W, C)
    for name in ("hw.npz", "nhwc.npy"):
        x, _ = read_unlabelled(tmp_path / name, spec)
        assert x.shape == (3, 1, 8, 8) and np.array_equal(x[:, 0], raw)
    folder = tmp_path / "imgs"
    (folder / "day1").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((8, 8), 16 * i, np.uint8)).save(folder / "day1" / f"{i}.png")
    x, what = read_unlabelled(folder, spec)
    assert x.shape == (4, 1, 8, 8) and x.dtype == np.uint8 and "4 images" in what
    # Normalised like the task's own samples, ids after every source row.
    more = add_unlabelled(full, tmp_path / "hw.npz")
    mean, std = full.normalization["mean"][0], full.normalization["std"][0]
    assert np.allclose(more.x_unlabelled[:, 0], (raw - mean) / std, atol=1e-5)
    assert more.indices["unlabelled"].min() > max(v.max() for v in full.indices.values())
    both = prepare(full, labels=100, unlabelled=[tmp_path / "hw.npz", folder])
    assert len(both.x_unlabelled) == len(full.y_train) - 100 + 3 + 4 and len(both.unlabelled_sources) == 3


@pytest.mark.parametrize("content, match", [
    ("wrong-shape", r"samples have shape \(3, 5, 5\).*needs \(1, 8, 8\)"),
    ("no-x", "no array 'x'"),
    ("junk", "not an .npz archive"),
    ("missing", "no such file or folder"),
    ("nan", "NaN"),
])
def test_bad_unlabelled_input_is_one_line(tmp_path: Path, content: str, match: str) -> None:
    from edgekd.data.unlabelled import read_unlabelled

    path = tmp_path / "u.npz"
    if content == "wrong-shape":
        np.savez(path, x=np.zeros((2, 3, 5, 5), np.float32))
    elif content == "no-x":
        np.savez(path, y=np.zeros(2))
    elif content == "junk":
        path.write_bytes(b"not a zip")
    elif content == "nan":
        np.savez(path, x=np.full((2, 8, 8), np.nan, np.float32))
    with pytest.raises(EdgekdError, match=match) as err:
        read_unlabelled(path, get_spec("digits"))
    assert "\n" not in str(err.value)
