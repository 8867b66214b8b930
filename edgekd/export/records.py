"""What an export hands on: :class:`ExportRecord` (export.json) with typed :class:`Artifact` records.

``export_student`` returns one and :func:`load_export` reads one back; verify, emulate, package and the build
pipeline read fields, never JSON keys. export.json keeps its keys: ``to_json`` writes what the dict writer did.
:func:`load_export` checks a record before anything trusts it: shape, paths inside the folder, and (by default)
the sha256 of every file it lists; every problem is one :class:`EdgekdError` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.formats import Details, get_format
from edgekd.io import read_json, sha256_file, write_json

if TYPE_CHECKING:
    import torch

    from edgekd.targets import Target

EXPORT_FORMAT = "edgekd-export/1"
EXPORT_JSON = "export.json"
_FIX = "re-run `edgekd export`"


@dataclass
class Artifact:
    """One deployable file. ``path`` is relative to the build folder so the folder can move."""

    format: str  # a registered format: "tflite" | "pte" | "c" | ...
    precision: str  # "int8" | "fp32"
    path: str
    bytes: int
    sha256: str
    runtime: str  # where it runs on the device: "litert", "tflm", "executorch-xnnpack", ...
    details: Details = field(default_factory=Details)

    @property
    def key(self) -> str:
        return f"{self.format}-{self.precision}"

    @property
    def flash_bytes(self) -> int:
        flash = self.details.flash()
        return flash if flash is not None else self.bytes

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "precision": self.precision, "path": self.path, "bytes": self.bytes,
                "sha256": self.sha256, "runtime": self.runtime, "details": self.details.to_json()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Artifact:
        details = get_format(d["format"]).details_type.from_json(d.get("details", {}))
        return cls(d["format"], d["precision"], d["path"], d["bytes"], d["sha256"], d["runtime"], details)


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

    def artifact(self, fmt: str, precision: str, path: Path, runtime: str, details: Details) -> Artifact:
        return Artifact(fmt, precision, path.name, path.stat().st_size, sha256_file(path), runtime, details)


@dataclass
class DataSource:
    """Which data the student was trained on: the task, a user folder or file, a sample size."""

    task: str
    data_dir: str | None = None
    limit: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "data_dir": self.data_dir, "limit": self.limit} | self.extra

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DataSource:
        return cls(d["task"], d.get("data_dir"), d.get("limit"),
                   {k: v for k, v in d.items() if k not in ("task", "data_dir", "limit")})


@dataclass
class StudentInfo:
    family: str
    config: dict[str, Any]
    qat: bool
    source: str | None  # "from" in JSON: the student folder it was exported from

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "config": self.config, "qat": self.qat, "from": self.source}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StudentInfo:
        return cls(d.get("family", ""), dict(d.get("config", {})), d["qat"], d.get("from"))


@dataclass
class Calibration:
    split: str
    samples: int
    warnings: list[str]


@dataclass
class ExportRecord:
    """export.json: what was exported, from which student and data, for which target."""

    target: str
    task: str
    data_source: DataSource
    student: StudentInfo
    input_shape: tuple[int, ...]  # channels-first, no batch
    channels_last: bool
    normalization: dict[str, Any] | None
    artifacts: list[Artifact]
    versions: dict[str, Any]
    calibration: Calibration | None = None
    formats: list[str] = field(default_factory=list)
    precisions: list[str] = field(default_factory=list)
    budgets: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def layout(self) -> str:
        return "NHWC" if self.channels_last and len(self.input_shape) == 3 else "NC..."

    @property
    def sample_shape(self) -> list[int]:
        """One sample's shape in :attr:`layout` (NHWC: H, W, C; otherwise channels-first)."""
        s = list(self.input_shape)
        return [*s[1:], s[0]] if self.layout == "NHWC" else s

    def artifact(self, fmt: str, precision: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.format == fmt and a.precision == precision), None)

    def to_json(self) -> dict[str, Any]:
        cal = self.calibration
        return {"format": EXPORT_FORMAT, "target": self.target, "task": self.task,
                "data_source": self.data_source.to_json(), "student": self.student.to_json(),
                "input_shape": list(self.input_shape), "channels_last": self.channels_last,
                "normalization": self.normalization,
                "calibration": {"split": cal.split, "samples": cal.samples, "warnings": cal.warnings} if cal else None,
                "formats": self.formats, "precisions": self.precisions,
                "artifacts": [a.to_json() for a in self.artifacts], "budgets": self.budgets,
                "timings_s": self.timings_s, "versions": self.versions}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExportRecord:
        cal = d.get("calibration")
        return cls(d["target"], d["task"], DataSource.from_json(d["data_source"]),
                   StudentInfo.from_json(d["student"]), tuple(d["input_shape"]), d["channels_last"],
                   d.get("normalization"), [Artifact.from_json(a) for a in d["artifacts"]], d["versions"],
                   Calibration(cal["split"], cal["samples"], list(cal["warnings"])) if isinstance(cal, dict) else None,
                   list(d.get("formats", [])), list(d.get("precisions", [])), d.get("budgets", {}),
                   d.get("timings_s", {}))

    def write(self, folder: Path) -> Path:
        return write_json(folder / EXPORT_JSON, self.to_json())

    def text(self, out_dir: str | Path) -> str:
        """What ``edgekd export`` prints: one line per artifact, calibration warnings, where it wrote."""
        from edgekd.units import format_bytes

        lines = [f"{a.path:<20} {a.precision:<5} {format_bytes(a.bytes):>10}  {get_format(a.format).describe(a)}"
                 for a in self.artifacts]
        cal = self.calibration
        lines += [f"warning: calibration: {w}" for w in (cal.warnings if cal else [])]
        lines.append(f"wrote {out_dir}/{EXPORT_JSON} ({cal.samples if cal else 0} calibration samples)")
        return "\n".join(lines)


# ------------------------------------------------------------------ reading export.json back, checked

#: What readers of export.json rely on: key -> type (checked so a damaged record is one line, not a KeyError).
_RECORD_KEYS: dict[str, type | tuple[type, ...]] = {
    "target": str, "task": str, "data_source": dict, "student": dict, "input_shape": list, "channels_last": bool,
    "artifacts": list, "versions": dict}
_ARTIFACT_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": str, "precision": str, "path": str, "bytes": int, "sha256": str, "runtime": str}


def _type_name(kind: type | tuple[type, ...]) -> str:
    return {str: "string", int: "integer", dict: "JSON object", list: "JSON list", bool: "true/false"}.get(
        kind if isinstance(kind, type) else kind[0], "value")


def _inside(record: Path, i: int, key: str, rel: object) -> None:
    p = PurePosixPath(str(rel))
    if not str(rel) or p.is_absolute() or ".." in p.parts:
        raise EdgekdError(f"{record}: artifacts[{i}].{key} {rel!r} is outside the build folder; {_FIX}")


def _artifact(record: Path, i: int, a: Any) -> Artifact:
    if not isinstance(a, dict):
        raise EdgekdError(f"{record}: artifacts[{i}] is not a JSON object; {_FIX}")
    for key, kind in _ARTIFACT_KEYS.items():
        if not isinstance(a.get(key), kind) or isinstance(a.get(key), bool):
            raise EdgekdError(f"{record}: artifacts[{i}].{key} is missing or not a {_type_name(kind)}; {_FIX}")
    if not isinstance(a.get("details", {}), dict):
        raise EdgekdError(f"{record}: artifacts[{i}].details is not a JSON object; {_FIX}")
    _inside(record, i, "path", a["path"])
    for key in ("header", "embeds"):  # files a format's details name (C array)
        if a.get("details", {}).get(key) is not None:
            _inside(record, i, f"details.{key}", a["details"][key])
    try:
        return Artifact.from_json(a)
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgekdError(f"{record}: artifacts[{i}].details lacks or mistypes {exc}; {_FIX}") from None


def export_folder(build_dir: str | Path) -> Path:
    """The folder holding export.json: ``build_dir`` itself, or the ``artifacts/`` of an ``edgekd build --out``."""
    build = Path(build_dir)
    if not (build / EXPORT_JSON).is_file() and (build / "artifacts" / EXPORT_JSON).is_file():
        return build / "artifacts"
    return build


def load_export(build_dir: str | Path, check_hashes: bool = True) -> ExportRecord:
    """Read a build folder's export.json: a damaged record is one EdgekdError line, and (``check_hashes``) every
    file it lists must be there with its recorded sha256 before anything trusts it."""
    build = Path(build_dir)
    record = build / EXPORT_JSON
    if not record.is_file():
        raise EdgekdError(f"{build}: no export.json; run `edgekd export --target T --student DIR --out {build}` first")
    data = read_json(record, "export record", fix=_FIX)
    if data.get("format") != EXPORT_FORMAT:
        raise EdgekdError(f"{record}: not an edgekd export record (format {EXPORT_FORMAT!r}); {_FIX}")
    for key, kind in _RECORD_KEYS.items():
        if not isinstance(data.get(key), kind):
            raise EdgekdError(f"{record}: {key!r} is missing or not a {_type_name(kind)}; {_FIX}")
    if not isinstance(data["data_source"].get("task"), str) or not isinstance(data["student"].get("qat"), bool):
        raise EdgekdError(f"{record}: data_source.task or student.qat is missing or of the wrong type; {_FIX}")
    artifacts = [_artifact(record, i, a) for i, a in enumerate(data["artifacts"])]
    export = ExportRecord.from_json(data | {"artifacts": []})
    export.artifacts = artifacts
    if check_hashes:
        check_artifacts(build, artifacts)
    return export


def check_artifacts(build: Path, artifacts: list[Artifact]) -> None:
    """Every artifact (and the files its details name) exists with the sha256 export.json recorded, and each
    format's own check passes (a C array embeds this build's .tflite)."""
    for a in artifacts:
        for rel, digest in [(a.path, a.sha256), *a.details.extra_files()]:
            path = build / rel
            if not path.is_file():
                raise EdgekdError(f"{path}: listed in export.json but missing; {_FIX}")
            if digest is not None and sha256_file(path) != digest:
                raise EdgekdError(f"{path}: sha256 differs from export.json (modified after export); {_FIX}")
        problem = get_format(a.format).check(build, a, artifacts)
        if problem:
            raise EdgekdError(f"{build / a.path}: {problem}; {_FIX}")
