"""The ``tflite`` format: LiteRT / TFLite Micro models (conversion in :mod:`edgekd.export.tflite`).

int8 always (fully integer, the MCU and default Linux artifact), fp32 too when asked and the target runs float.
Verify runs every file on LiteRT (XNNPACK, the target's threads) and, on microcontrollers, the int8 one on the
TFLite Micro interpreter with an arena no larger than the RAM budget. Bundle vectors are LiteRT reference-kernel
outputs (bit-exact with TFLite Micro); ``package verify`` reruns them on both.
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


@dataclass(frozen=True)
class QuantParams:
    """One tensor's quantization: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int
    dtype: str  # numpy name: "int8" for integer models, "float32" for float I/O
    shape: tuple[int, ...]  # the tensor's, batch included

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QuantParams:
        return cls(float(d["scale"]), int(d["zero_point"]), str(d["dtype"]), tuple(int(s) for s in d["shape"]))

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale, "zero_point": self.zero_point, "dtype": self.dtype, "shape": list(self.shape)}

    def quantize(self, x: np.ndarray) -> np.ndarray:
        from edgekd.verify.litert import quantize

        return quantize(x.astype(np.float32), self.scale, self.zero_point, np.dtype(self.dtype))

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * self.scale

    def requantize(self, y: np.ndarray) -> np.ndarray:
        """Dequantized int8 outputs back to the int8 values the model wrote (exact: they came from int8)."""
        return (np.round(y / self.scale).astype(np.int64) + self.zero_point).astype(np.int8)


@dataclass
class TfliteDetails(Details):
    ops: dict[str, int]
    input: QuantParams
    output: QuantParams
    float_islands: list[str] = field(default_factory=list)
    fully_integer: bool = False
    channels_last: bool = False
    tensors: int = 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TfliteDetails:
        return cls(dict(d["ops"]), QuantParams.from_json(d["input"]), QuantParams.from_json(d["output"]),
                   list(d.get("float_islands", [])), bool(d.get("fully_integer")), bool(d["channels_last"]),
                   int(d.get("tensors", 0)))

    def model_layout(self, x: np.ndarray) -> np.ndarray:
        """Channels-first float inputs in the file's own layout (NHWC for image models)."""
        return np.transpose(x, (0, 2, 3, 1)) if self.channels_last and x.ndim == 4 else x


def _describe(graph: Any, channels_last: bool) -> TfliteDetails:
    counts: dict[str, int] = {}
    for op in graph.ops:
        counts[op] = counts.get(op, 0) + 1
    return TfliteDetails(counts, graph.input, graph.output, graph.float_islands, graph.fully_integer, channels_last,
                         graph.tensor_count)


class Tflite(Format):
    name = "tflite"
    runtimes = ("tflm", "litert")
    magic = (4, b"TFL3", "a TensorFlow Lite flatbuffer (identifier TFL3)")
    details_type = TfliteDetails

    def export(self, ctx: ExportContext) -> list[Artifact]:
        from edgekd.export.tflite import export_tflite_float, export_tflite_int8, refuse_unsupported

        out = []
        path = ctx.out_dir / "model_int8.tflite"
        a = export_tflite_int8(ctx.model, ctx.input_shape, ctx.calibration, path, ctx.channels_last, ctx.qat_state)
        refuse_unsupported(a.graph, ctx.target, path)
        runtime = "tflm" if ctx.target.is_mcu else "litert"
        out.append(ctx.artifact("tflite", "int8", path, runtime, _describe(a.graph, a.channels_last)))
        if "fp32" in ctx.precisions and ctx.target.quantization != "int8-full":
            path = ctx.out_dir / "model_fp32.tflite"
            f = export_tflite_float(ctx.model, ctx.input_shape, path, ctx.channels_last)
            refuse_unsupported(f.graph, ctx.target, path)
            out.append(ctx.artifact("tflite", "fp32", path, "litert", _describe(f.graph, f.channels_last)))
        return out

    def describe(self, artifact: Artifact) -> str:
        assert isinstance(artifact.details, TfliteDetails)
        return ", ".join(f"{k} x{v}" for k, v in artifact.details.ops.items())

    def host_runs(self, inp: VerifyInput, artifact: Artifact) -> HostRuns:
        from edgekd.verify.litert import run_litert
        from edgekd.verify.tflm import min_arena, run_tflm

        d = artifact.details
        assert isinstance(d, TfliteDetails)
        path = inp.build / artifact.path
        # The C array of the same bytes (hash checked on load) already carries the measured minimum.
        arena = next((c.details.tensor_arena_bytes for c in inp.artifacts  # type: ignore[attr-defined]
                      if c.format == "c" and getattr(c.details, "embeds", None) == artifact.path), None)
        arena = arena if arena is not None else min_arena(path).min_arena_bytes
        ms: list[float] = []
        out = run_litert(path, inp.x, d.channels_last, threads=inp.threads, invoke_ms=ms)
        result = HostRuns([HostRun("litert", "xnnpack", inp.threads, out, ms, arena_bytes=arena)])
        target = inp.target
        if target.is_mcu and artifact.precision == "int8":
            budget_arena = target.budgets.ram_bytes - target.runtime_ram_bytes
            run_arena = budget_arena if arena <= budget_arena else arena
            run = run_tflm(path, d.input.quantize(d.model_layout(inp.x)), run_arena)
            result.runs.append(HostRun("tflm", "reference", 1, d.output.dequantize(run.outputs), run.invoke_ms,
                                       arena_bytes=arena, run_arena_bytes=run_arena))
            result.ram = (arena, "TFLite Micro minimum arena")
        else:
            result.ram = (arena + artifact.bytes, "TFLite Micro minimum arena + model bytes")
        return result

    def manifest_entry(self, artifact: Artifact) -> dict[str, Any]:
        d = artifact.details
        assert isinstance(d, TfliteDetails)
        return {"quantization": {"input": d.input.to_json(), "output": d.output.to_json()}}

    def vectors(self, build: Path, artifact: Artifact, x: np.ndarray) -> dict[str, bytes]:
        from edgekd.verify.litert import run_litert

        d = artifact.details
        assert isinstance(d, TfliteDetails)
        stem = Path(artifact.path).stem
        y = run_litert(build / artifact.path, x, d.channels_last, reference=True)
        if artifact.precision != "int8":
            return {f"vectors/expected_{stem}_f32.bin": y.astype("<f4").tobytes()}
        return {"vectors/input_int8.bin": d.input.quantize(d.model_layout(x)).astype(np.int8).tobytes(),
                f"vectors/expected_{stem}_int8.bin": d.output.requantize(y).tobytes()}

    def check_manifest_entry(self, entry: dict[str, Any], where: str, shape: Any, files: dict[str, str]) -> None:
        if entry["precision"] != "int8":
            return
        q = shape.get(entry, "quantization", dict, where)
        for side in ("input", "output"):
            qs = shape.get(q, side, dict, f"{where}quantization.")
            shape.get(qs, "scale", (int, float), f"{where}quantization.{side}.")
            shape.get(qs, "zero_point", int, f"{where}quantization.{side}.")
            shape.shape(qs, "shape", f"{where}quantization.{side}.")

    def vector_sizes(self, entry: dict[str, Any]) -> list[tuple[str, int | None, str]]:
        stem = Path(entry["path"]).stem
        if entry["precision"] != "int8":
            return [(f"vectors/expected_{stem}_f32.bin", None, "float32 output")]
        q = entry["quantization"]
        return [("vectors/input_int8.bin", int(np.prod(q["input"]["shape"][1:])), "int8 input"),
                (f"vectors/expected_{stem}_int8.bin", int(np.prod(q["output"]["shape"][1:])), "int8 output")]

    def rerun(self, bundle: Bundle, entry: dict[str, Any], model: Path) -> list[VectorCheck]:
        from edgekd.package.vectors import compare, float_check, guarded, input_f32
        from edgekd.verify.litert import run_litert
        from edgekd.verify.tflm import run_tflm

        name, stem = entry["path"], Path(entry["path"]).stem
        got = guarded(bundle, name, "LiteRT", run_litert, model, input_f32(bundle), bundle.nhwc, reference=True)
        if entry["precision"] != "int8":
            return [float_check(bundle, name, "litert-reference", got, f"vectors/expected_{stem}_f32.bin")]
        out_q = QuantParams.from_json(entry["quantization"]["output"])
        expected = f"vectors/expected_{stem}_int8.bin"
        got = out_q.requantize(got)
        want = compare(expected, got, bundle.files[expected], "i1", bundle)
        diff = int(np.abs(got.astype(int) - want.astype(int)).max())
        checks = [VectorCheck(name, "litert-reference", diff, "int8 steps", diff == 0)]
        # the int8 vectors through the TFLite Micro interpreter itself, as the device will run them
        in_shape = entry["quantization"]["input"]["shape"][1:]
        xq = np.frombuffer(bundle.files["vectors/input_int8.bin"], np.int8).reshape(len(want), *in_shape)
        tflm = guarded(bundle, name, "TFLite Micro", run_tflm, model, xq, 8 << 20).outputs.reshape(want.shape)
        diff = int(np.abs(tflm.astype(int) - want.astype(int)).max())
        checks.append(VectorCheck(name, "tflm", diff, "int8 steps", diff == 0))
        return checks


register_format(Tflite())
