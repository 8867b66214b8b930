"""The typed records of a text build (``edgekd.build.text``), one per stage file, read back with their checks.

Kept apart from the stages so that the report (``edgekd.build.text_report``) can name them without importing the
stages, and so that a stage can be replaced without touching what its file holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgekd.build.records import _REBUILD
from edgekd.errors import EdgekdError
from edgekd.io import read_json, sha256_file

R = TypeVar("R")


def _read_typed(path: Path, what: str, make: Callable[[dict[str, Any]], R]) -> R:
    """``make`` applied to the JSON at ``path``; a missing field or a wrong type is one line naming the file."""
    d = read_json(path, what, fix=_REBUILD)
    try:
        return make(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgekdError(f"{path}: not a {what} this edgekd wrote ({exc}); {_REBUILD}") from None


@dataclass
class TextTeacherRecord:
    """teacher/<name>.json: the teacher, its cost and probe on this build's sentences, and the cache's work."""

    name: str
    key: str  # weights sha256 + pooling recipe: what identifies the embeddings
    params: int
    macs: int
    tokens: int
    probe_accuracy: float | None
    sentences: dict[str, int]
    cache: dict[str, Any]
    seconds: float

    @classmethod
    def read(cls, path: Path) -> TextTeacherRecord:
        return _read_typed(path, "text teacher record", lambda d: cls(
            d["name"], d["key"], int(d["params"]), int(d["macs"]), int(d["tokens"]), d["probe_accuracy"],
            dict(d["sentences"]), dict(d["cache"]), float(d["seconds"])))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "params": self.params, "macs": self.macs, "tokens": self.tokens,
                "probe_accuracy": self.probe_accuracy, "sentences": self.sentences, "cache": self.cache,
                "seconds": self.seconds}


@dataclass
class TextDistillRecord:
    """student/distill.json of a text student: config, training, and its metrics against the teacher."""

    family: str
    config: dict[str, Any]
    metrics: dict[str, Any]  # TextMetrics.to_dict() of the float student on the evaluation pool
    train: dict[str, Any]
    history: list[dict[str, Any]]
    init: dict[str, Any]
    tokenizer: dict[str, Any]
    train_seconds: float

    @classmethod
    def read(cls, path: Path) -> TextDistillRecord:
        return _read_typed(path, "text distill record", lambda d: cls(
            d["student"]["family"], dict(d["student"]["config"]), dict(d["metrics"]), dict(d["train"]),
            list(d["history"]), dict(d["init"]), dict(d["tokenizer"]), float(d["train_seconds"])))


@dataclass
class TextExportRecord:
    """artifacts/export.json of a text build: every file with bytes and sha256, the graph, host fidelity."""

    files: dict[str, dict[str, Any]]
    tflite_ops: list[str]
    fully_integer: bool
    io: dict[str, float]
    pte_delegation: dict[str, Any]
    fidelity: dict[str, dict[str, float]]
    shipped_bytes: int
    c: dict[str, Any] | None  # the generated C and its checks (microcontrollers), or None

    @classmethod
    def read(cls, folder: Path, path: Path) -> TextExportRecord:
        rec = _read_typed(path, "text export record", lambda d: cls(
            dict(d["files"]), list(d["tflite_ops"]), bool(d["fully_integer"]),
            {k: d[k] for k in ("input_scale", "input_zero_point", "output_scale", "output_zero_point")},
            dict(d["pte_delegation"]), dict(d["fidelity"]), int(d["shipped_bytes_tflite"]), d["c"]))
        for name, meta in rec.files.items():
            if not (folder / name).is_file() or sha256_file(folder / name) != meta.get("sha256"):
                raise EdgekdError(f"{folder / name}: missing or changed since export (sha256 differs); {_REBUILD}")
        return rec


@dataclass
class TextVerifyRecord:
    """artifacts/verify.json of a text build: the int8 model's metrics, sizes, and the gates."""

    kernels: str  # LiteRT kernels the int8 metrics were measured with
    metrics_int8: dict[str, Any]
    sizes: dict[str, Any]
    budgets: dict[str, Any]
    gates: dict[str, dict[str, Any] | None]
    passed: bool

    @classmethod
    def read(cls, path: Path) -> TextVerifyRecord:
        return _read_typed(path, "text verify record", lambda d: cls(
            d["kernels"], dict(d["metrics_int8"]), dict(d["sizes"]), dict(d["budgets"]), dict(d["gates"]),
            bool(d["passed"])))
