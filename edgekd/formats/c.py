"""The ``c`` format: the int8 ``.tflite`` as an aligned C array for TFLite Micro firmware.

The writer is :mod:`edgekd.export.csource`.

It is the same bytes as the .tflite (verify runs that one); in a bundle it brings its header, and ``package
verify`` regenerates ``model_data.c``/``.h`` from the bundle's own int8 .tflite and requires byte-identical files.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from edgekd.errors import EdgekdError
from edgekd.formats import register_format
from edgekd.formats.base import Bundle, Details, Format, VectorCheck

if TYPE_CHECKING:
    from edgekd.export.records import Artifact, ExportContext


@dataclass
class CDetails(Details):
    header: str
    header_sha256: str | None
    embeds: str
    embeds_sha256: str | None
    flash_bytes: int
    tensor_arena_bytes: int

    def extra_files(self) -> list[tuple[str, str | None]]:
        return [(self.header, self.header_sha256)]

    def flash(self) -> int | None:
        return self.flash_bytes


class CArray(Format):
    name = "c"
    runtimes = ("edgekd-c",)
    needs = ("tflite",)
    details_type = CDetails

    def export(self, ctx: ExportContext) -> list[Artifact]:
        from edgekd.export.csource import write_model_sources
        from edgekd.io import sha256_file
        from edgekd.verify.tflm import min_arena

        tfl = ctx.done.get("tflite-int8")
        if tfl is None:
            raise EdgekdError("format c embeds the int8 .tflite: export it too (--formats tflite,c)")
        tflite = ctx.out_dir / tfl.path
        arena = min_arena(tflite).min_arena_bytes
        q = tfl.details
        source, header = write_model_sources(tflite, ctx.out_dir, arena, q.input, q.output)  # type: ignore[attr-defined]
        return [ctx.artifact("c", "int8", source, "tflm", CDetails(header.name, sha256_file(header), tfl.path,
                                                                   tfl.sha256, tfl.bytes, arena))]

    def describe(self, artifact: Artifact) -> str:
        d = artifact.details
        assert isinstance(d, CDetails)
        return f"+ {d.header}, tensor arena {d.tensor_arena_bytes:,} B"

    def check(self, build: Path, artifact: Artifact, artifacts: list[Artifact]) -> str | None:
        d = artifact.details
        assert isinstance(d, CDetails)
        embedded = next((b for b in artifacts if b.path == d.embeds), None)
        if embedded is None or embedded.sha256 != d.embeds_sha256:
            return f"does not embed the build's {d.embeds}"
        return None

    def manifest_entry(self, artifact: Artifact) -> dict[str, Any]:
        d = artifact.details
        assert isinstance(d, CDetails)
        return {"header": d.header, "tensor_arena_bytes": d.tensor_arena_bytes}

    def check_manifest_entry(self, entry: dict[str, Any], where: str, shape: Any, files: dict[str, str]) -> None:
        shape.entry(entry.get("header"), f"{where}header", files)
        shape.count(entry, "tensor_arena_bytes", where, 0)

    def rerun(self, bundle: Bundle, entry: dict[str, Any], model: Path) -> list[VectorCheck]:
        """Byte-compare ``model_data.c``/``.h`` with what edgekd writes from the bundle's int8 .tflite."""
        from edgekd.export.csource import write_model_sources
        from edgekd.formats.tflite import QuantParams
        from edgekd.package.vectors import guarded, int8_tflite, require_identical

        tfl = int8_tflite(bundle)
        with tempfile.TemporaryDirectory(prefix="edgekd-package-c-") as tmp:
            src = Path(tmp) / PurePosixPath(tfl["path"]).name  # the name is in the generated banners
            src.write_bytes(bundle.files[tfl["path"]])
            q = tfl["quantization"]
            out = Path(tmp) / "tflm"
            out.mkdir()
            c, h = guarded(bundle, tfl["path"], "edgekd's C array writer", write_model_sources, src, out,
                           entry["tensor_arena_bytes"], QuantParams.from_json(q["input"]),
                           QuantParams.from_json(q["output"]))
            require_identical(bundle, tfl["path"], {entry["path"]: c.read_bytes(), entry["header"]: h.read_bytes()})
        return []


register_format(CArray())
