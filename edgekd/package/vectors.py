"""Verification vectors: test inputs with the outputs each artifact gave on the host, and their rerun.

Each format plugin says which expected outputs it adds (:meth:`Format.vectors`) and how ``package verify``
reruns them (:meth:`Format.rerun`); this module holds the shared inputs and the helpers those checks use.
Models are only loaded by the runtimes after their file identifiers were checked, and whatever a native runtime
throws on a damaged model is one EdgekdError line.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.export.records import ExportRecord
from edgekd.formats import Format, get_format
from edgekd.formats.base import Bundle, VectorCheck
from edgekd.package.manifest import FLOAT_TOLERANCE

T = TypeVar("T")
INPUT_F32 = "vectors/input_f32.bin"
LABELS = "vectors/labels_u8.bin"


def make_vectors(build: Path, export: ExportRecord, count: int) -> dict[str, bytes]:
    """Inputs and expected outputs per artifact, as raw binaries; described in the manifest."""
    from edgekd.data import load_task
    from edgekd.distill import DATA_SEED
    from edgekd.students import to_model_input
    from edgekd.verify import sample_indices

    src = export.data_source
    splits = load_task(src.task, src.data_dir, seed=DATA_SEED, limit=src.limit)
    idx = sample_indices(len(splits.y_test), count)
    x = to_model_input(splits.x_test[idx], export.input_shape).numpy().astype("<f4")
    files = {INPUT_F32: x.tobytes(), LABELS: splits.y_test[idx].astype("u1").tobytes()}
    for a in export.artifacts:
        files |= get_format(a.format).vectors(build, a, x)
    return files


def input_f32(bundle: Bundle) -> np.ndarray:
    shape = bundle.manifest["preprocessing"]["input_shape"]
    return np.frombuffer(bundle.files[INPUT_F32], dtype="<f4").reshape(bundle.count, *shape)


def int8_tflite(bundle: Bundle) -> dict[str, Any]:
    """The manifest entry of the bundle's int8 .tflite (C sources are generated from it)."""
    tfl = next((a for a in bundle.manifest["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8"),
               None)
    if tfl is None:
        raise EdgekdError(f"{bundle.path}: manifest.json lists C sources but no int8 .tflite they are generated "
                          "from; the bundle is corrupt or was edited (repackage it with `edgekd package`)")
    return tfl


def _version_hint(manifest: dict[str, Any]) -> str:
    from edgekd import __version__

    built = manifest.get("versions", {}).get("edgekd") if isinstance(manifest.get("versions"), dict) else None
    if built and built != __version__:
        return f" (or it was built by edgekd {built}, this is {__version__}: verify with the version that built it)"
    return ""


def require_identical(bundle: Bundle, model: str, expected: dict[str, bytes]) -> None:
    """Every bundle entry in ``expected`` is byte-identical with what edgekd generated from ``model``."""
    for name in sorted(expected):
        if bundle.files.get(name) != expected[name]:
            raise EdgekdError(f"{bundle.path}: {name} differs from the C edgekd generates from {model}; the bundle "
                              f"was modified{_version_hint(bundle.manifest)}")
    bundle.compared += sorted(expected)


def check_model_bytes(bundle: Bundle, name: str, fmt: Format) -> None:
    """Refuse a model whose file identifier is wrong before a native runtime parses it."""
    if fmt.magic is None:
        return
    offset, ident, what = fmt.magic
    data = bundle.files[name]
    root = struct.unpack("<I", data[:4])[0] if len(data) >= 8 else 0
    if len(data) < 16 or data[offset:offset + len(ident)] != ident or not 8 <= root < len(data):
        raise EdgekdError(f"{bundle.path}: {name} is not {what}: truncated or corrupt")


def guarded(bundle: Bundle, name: str, runtime: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a bundle model: whatever a native runtime throws on a damaged model is one
    EdgekdError line."""
    try:
        return fn(*args, **kwargs)
    except EdgekdError:
        raise
    except Exception as exc:  # noqa: BLE001  (LiteRT, TFLite Micro and ExecuTorch raise many types)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise EdgekdError(f"{bundle.path}: {name} does not load or run on {runtime} ({type(exc).__name__}: "
                          f"{first}); the model in the bundle is corrupt") from None


def compare(name: str, got: np.ndarray, want_bytes: bytes, dtype: str, bundle: Bundle) -> np.ndarray:
    want = np.frombuffer(want_bytes, dtype)
    if want.size != got.size:
        raise EdgekdError(f"{bundle.path}: {name} holds {want.size} values but the model gives {got.size}; the "
                          "vectors do not match the model")
    return want.reshape(got.shape)


def float_check(bundle: Bundle, name: str, runtime: str, got: np.ndarray, expected: str) -> VectorCheck:
    """Float outputs against the bundle's expected ones, within :data:`FLOAT_TOLERANCE`."""
    want = compare(expected, got, bundle.files[expected], "<f4", bundle)
    diff = float(np.abs(got - want).max())
    return VectorCheck(name, runtime, diff, "absolute", diff <= FLOAT_TOLERANCE)


def rerun(bundle: Bundle) -> list[VectorCheck]:
    """Every artifact's vectors through its format's check, on a copy of the bundle's model file."""
    checks: list[VectorCheck] = []
    with tempfile.TemporaryDirectory(prefix="edgekd-package-") as tmp:
        for a in bundle.manifest["artifacts"]:
            fmt = get_format(a["format"])
            name = a["path"]
            check_model_bytes(bundle, name, fmt)
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bundle.files[name])
            checks += fmt.rerun(bundle, a, path)
    return checks
