"""The ``pte`` format: ExecuTorch programs lowered to XNNPACK (conversion in :mod:`edgekd.export.pte`).

Float I/O, NCHW, int8 inside the delegate. Verify runs them on the ExecuTorch runtime; the bundle carries their
float outputs, which ``package verify`` reruns within a tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.formats import register_format
from edgekd.formats.base import Bundle, Details, Format, HostRun, HostRuns, VectorCheck, VerifyInput

if TYPE_CHECKING:
    from edgekd.export.records import Artifact, ExportContext


@dataclass
class Delegation:
    """What XNNPACK took: delegated vs non-delegated nodes, and operators left on the portable kernels."""

    delegated_nodes: int
    non_delegated_nodes: int
    delegated_subgraphs: int
    portable_fallback_ops: dict[str, int] = field(default_factory=dict)


@dataclass
class PteDetails(Details):
    delegation: Delegation
    planned_memory_bytes: int
    input_shape: list[int]
    io_dtype: str = "float32"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PteDetails:
        return cls(Delegation(**d["delegation"]), int(d.get("planned_memory_bytes", 0)), list(d["input_shape"]),
                   d.get("io_dtype", "float32"))


class Pte(Format):
    name = "pte"
    runtimes = ("executorch-xnnpack",)
    magic = (4, b"ET", "an ExecuTorch program (identifier ET..)")
    details_type = PteDetails

    def export(self, ctx: ExportContext) -> list[Artifact]:
        from edgekd.export.pte import export_pte

        out = []
        for precision in ctx.precisions:
            path = ctx.out_dir / f"model_{precision}.pte"
            if precision == "int8":
                d = export_pte(ctx.model, ctx.input_shape, path, ctx.calibration, ctx.qat_state)
            else:
                d = export_pte(ctx.model, ctx.input_shape, path)
            out.append(ctx.artifact("pte", precision, path, "executorch-xnnpack", PteDetails.from_json(d)))
        return out

    def describe(self, artifact: Artifact) -> str:
        dl = artifact.details.delegation  # type: ignore[attr-defined]
        return (f"{dl.delegated_nodes} nodes delegated to XNNPACK, {dl.non_delegated_nodes} not"
                + (f"; portable fallbacks: {', '.join(dl.portable_fallback_ops)}" if dl.portable_fallback_ops else ""))

    def host_runs(self, inp: VerifyInput, artifact: Artifact) -> HostRuns:
        from edgekd.verify.executorch import run_pte

        planned = artifact.details.planned_memory_bytes  # type: ignore[attr-defined]
        ms: list[float] = []
        out = run_pte(inp.build / artifact.path, inp.x, invoke_ms=ms)
        return HostRuns([HostRun("executorch", "xnnpack", "runtime default", out, ms, planned_memory_bytes=planned)],
                        (int(planned) + artifact.bytes, "ExecuTorch planned memory + model bytes"))

    def vectors(self, build: Path, artifact: Artifact, x: np.ndarray) -> dict[str, bytes]:
        from edgekd.verify.executorch import run_pte

        return {_expected(artifact.path): run_pte(build / artifact.path, x).astype("<f4").tobytes()}

    def vector_sizes(self, entry: dict[str, Any]) -> list[tuple[str, int | None, str]]:
        return [(_expected(entry["path"]), None, "float32 output")]

    def rerun(self, bundle: Bundle, entry: dict[str, Any], model: Path) -> list[VectorCheck]:
        from edgekd.package.vectors import float_check, guarded, input_f32
        from edgekd.verify.executorch import run_pte

        got = guarded(bundle, entry["path"], "ExecuTorch", run_pte, model, input_f32(bundle))
        return [float_check(bundle, entry["path"], "executorch", got, _expected(entry["path"]))]


def _expected(path: str) -> str:
    """The .pte's own expected-output file: ``_pte`` keeps it apart from the ``.tflite`` of the same stem."""
    return f"vectors/expected_{Path(path).stem}_pte_f32.bin"


register_format(Pte())
