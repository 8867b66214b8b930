"""What every exporter takes and gives: an :class:`ExportContext` in, :class:`Artifact` records out.

Exporters are registered by format name (``tflite``, ``pte``, ``c``), so adding a format is one module with one
decorated function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, sha256_file  # noqa: F401  (re-exported: exporters import them from here)
from edgekd.targets import Target


@dataclass
class Artifact:
    """One deployable file. ``path`` is relative to the build folder so the folder can move."""

    format: str  # "tflite" | "pte" | "c"
    precision: str  # "int8" | "fp32"
    path: str
    bytes: int
    sha256: str
    runtime: str  # where it runs on the device: "litert", "tflm", "executorch-xnnpack", "edgekd-c"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.format}-{self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Artifact:
        return cls(**{k: d[k] for k in ("format", "precision", "path", "bytes", "sha256", "runtime")},
                   details=d.get("details", {}))


@dataclass
class ExportContext:
    """Everything an exporter may need; ``done`` holds the artifacts written so far (``c`` embeds the .tflite)."""

    target: Target
    model: torch.nn.Module
    input_shape: tuple[int, ...]  # channels-first, no batch
    channels_last: bool  # the model takes NHWC on the device (image students)
    calibration: np.ndarray  # float32, channels-first (N, *input_shape)
    out_dir: Path
    precisions: tuple[str, ...]
    qat_state: dict[str, torch.Tensor] | None = None
    done: dict[str, Artifact] = field(default_factory=dict)

    def artifact(self, fmt: str, precision: str, path: Path, runtime: str, **details: Any) -> Artifact:
        return Artifact(fmt, precision, path.name, path.stat().st_size, sha256_file(path), runtime, details)


Exporter = Callable[[ExportContext], list[Artifact]]
EXPORTERS: dict[str, Exporter] = {}


def register_exporter(name: str) -> Callable[[Exporter], Exporter]:
    """Register an exporter under a format name; it writes its files into ``ctx.out_dir``."""

    def wrap(fn: Exporter) -> Exporter:
        EXPORTERS[name] = fn
        return fn

    return wrap


def get_exporter(name: str) -> Exporter:
    if name not in EXPORTERS:
        raise EdgekdError(f"unknown export format {name!r}; known: {', '.join(sorted(EXPORTERS))}")
    return EXPORTERS[name]
