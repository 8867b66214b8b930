"""What a format plugin provides (:class:`Format`) and the small typed values it hands to verify and package."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from edgekd.export.records import Artifact, ExportContext
    from edgekd.targets import Target


def plain(value: Any) -> Any:
    """A dataclass tree as JSON values (tuples as lists), keys in field order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_json = getattr(value, "to_json", None)
        if to_json is not None:
            return to_json()
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@dataclass
class Details:
    """A format's typed ``details`` of one artifact in export.json (subclass it; the base holds nothing)."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Details:
        """Fields by name; a subclass with nested records overrides this."""
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def extra_files(self) -> list[tuple[str, str | None]]:
        """Files besides the artifact that belong to it, with their recorded sha256 (a C header)."""
        return []

    def flash(self) -> int | None:
        """Bytes in flash when not the artifact's own size (a C array counts as its .tflite)."""
        return None


@dataclass
class HostRun:
    """One artifact run on a host runtime by ``edgekd verify``: outputs (float logits) and what it used."""

    runtime: str
    kernels: str
    threads: int | str
    outputs: np.ndarray
    invoke_ms: list[float]
    arena_bytes: int | None = None
    run_arena_bytes: int | None = None
    planned_memory_bytes: int | None = None


@dataclass
class HostRuns:
    """A format's runs of one artifact, and the RAM it needs on the device (bytes, how that was obtained)."""

    runs: list[HostRun] = field(default_factory=list)
    ram: tuple[int, str] | None = None


@dataclass
class VerifyInput:
    """What a format's host runs get: the build, the target, the float test inputs (channels-first)."""

    build: Path
    target: Target
    x: np.ndarray
    threads: int
    artifacts: list[Artifact]


@dataclass
class VectorCheck:
    """One rerun of a bundle's vectors (``package verify``): largest difference from the expected outputs."""

    artifact: str
    runtime: str  # "litert-reference", "tflm", "executorch", "edgekd-c", ...
    max_diff: float
    unit: str  # "int8 steps" or "absolute"
    passed: bool
    method: str | None = None
    never_executed: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items()
                if v is not None or k not in ("method", "never_executed")}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VectorCheck:
        return cls(**d)


@dataclass
class Bundle:
    """A bundle being checked by ``package verify``: its path (for messages), entries by name, its (shape-checked)
    manifest, and the names of sources compared byte for byte with what edgekd regenerates."""

    path: Path
    files: dict[str, bytes]
    manifest: dict[str, Any]
    compared: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.manifest["vectors"]["count"])

    @property
    def nhwc(self) -> bool:
        return bool(self.manifest["preprocessing"]["layout"] == "NHWC")


class Format:
    """One export format. Subclass, set the class attributes, implement :meth:`export`, and register an instance
    with :func:`edgekd.formats.register_format`. Everything but ``export`` has a working default."""

    name: ClassVar[str]
    #: Runtimes its artifacts name (valid in a profile's ``runtimes``).
    runtimes: ClassVar[tuple[str, ...]] = ()
    #: Formats exported before it and with it (``c`` embeds the int8 .tflite).
    needs: ClassVar[tuple[str, ...]] = ()
    #: Model file identifiers checked before a runtime parses a bundle's model: (offset, bytes, description).
    magic: ClassVar[tuple[int, bytes, str] | None] = None
    details_type: ClassVar[type[Details]] = Details

    # ---------------------------------------------------------------- export
    def export(self, ctx: ExportContext) -> list[Artifact]:
        raise NotImplementedError

    def describe(self, artifact: Artifact) -> str:
        """A few words for ``edgekd export``'s table."""
        return ""

    def check(self, build: Path, artifact: Artifact, artifacts: list[Artifact]) -> str | None:
        """A problem with ``artifact`` beside the others (``load_export``): one line, or None."""
        return None

    # ---------------------------------------------------------------- verify
    def host_runs(self, inp: VerifyInput, artifact: Artifact) -> HostRuns:
        """Runs on the host runtimes; none by default (the artifact is then only size-checked)."""
        return HostRuns()

    # ---------------------------------------------------------------- package
    def package_files(self, artifact: Artifact) -> list[str]:
        """Entries of the bundle for this artifact (its file and any it brings)."""
        return [artifact.path] + [rel for rel, _ in artifact.details.extra_files()]

    def manifest_entry(self, artifact: Artifact) -> dict[str, Any]:
        """Keys added to the artifact's entry in manifest.json."""
        return {}

    def vectors(self, build: Path, artifact: Artifact, x: np.ndarray) -> dict[str, bytes]:
        """Expected outputs of ``artifact`` on the bundle's float inputs ``x``, as bundle entries."""
        return {}

    def check_manifest_entry(self, entry: dict[str, Any], where: str, shape: Any, files: dict[str, str]) -> None:
        """Type checks on this format's manifest entry (``shape`` is the manifest checker)."""

    def vector_sizes(self, entry: dict[str, Any]) -> list[tuple[str, int | None, str]]:
        """(entry name, bytes per sample or None for any float32 size, what) for :meth:`rerun`'s inputs."""
        return []

    def rerun(self, bundle: Bundle, entry: dict[str, Any], model: Path) -> list[VectorCheck]:
        """Rerun the bundle's vectors on ``model`` (the entry's bytes, written to a temporary file)."""
        return []
