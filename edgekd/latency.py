"""``edgekd latency``: how long one inference of a model takes on a target, and how that figure was obtained.

By default the figure is ``estimated``: the model's MACs per operator at the profile's sustained rate plus its
per-operator overhead (:func:`edgekd.costmodel.estimate_latency`), never below the peak-rate floor. A ``.tflite``
is costed from its own graph (operators, tensor shapes, filter shapes), so any file works, not only edgekd's;
a build or student folder is costed from the student. With ``emulator="qemu"`` a ``.tflite`` for a Linux-class
target is run on the emulated core, and for a microcontroller edgekd's generated C for it is linked into the
board's budgets; either way its instructions per invoke are ``counted`` (docs/emulation.md); the estimate stays
in the report for comparison.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import costmodel
from edgekd.errors import EdgekdError
from edgekd.export.records import EXPORT_JSON
from edgekd.logs import native_quiet
from edgekd.students.store import STUDENT_FILE
from edgekd.targets import Target


@dataclass
class LatencyReport:
    target: str
    model: str
    ms: float
    kind: str  # "measured" | "counted" | "estimated"
    method: str
    budget_ms: float
    passed: bool
    dtype: str
    macs: int
    ops: int
    estimated_ms: float | None = None
    instructions: int | None = None
    emulator: str | None = None
    cycles: int | None = None  # a microcontroller's modelled cycles (edgekd.emulate.timing_m), when counted
    counted_threads: int | None = None  # Cortex-A: the profile's cores, and the modelled time on all of them
    counted_threads_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """`edgekd latency`: the figure, how it was obtained, the budget and the verdict."""
        return (f"{self.model} on {self.target}: {self.ms:.3f} ms ({self.kind}) of a {self.budget_ms:g} ms budget: "
                f"{'PASS' if self.passed else 'FAIL'}\n  {self.method}")


def tflite_layers(path: str | Path) -> tuple[str, list[costmodel.Layer]]:
    """Operators of a ``.tflite`` with their MACs and output bytes, read from the file's tensors.

    Kernel taps, stride, input channels and input size are filled in too, and 4-D shapes are given channels
    first like :func:`edgekd.costmodel.analyze`'s, so a microcontroller's estimate uses the same calibrated
    per-operator cycles (:func:`edgekd.costmodel.mcu_layer_features`) for a file as for a student.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgekd.codegen.graph import load_graph, read_tflite

    buf = read_tflite(path)  # empty, not TFL3, root offset outside the file: one line before native code sees it
    try:
        with native_quiet():
            it = Interpreter(model_content=buf, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
            it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise EdgekdError(f"{path}: not a valid .tflite flatbuffer (truncated or corrupt: {reason}); pass the "
                          "exported model_int8.tflite") from None
    try:
        options = [op.options for op in load_graph(path).operators]
    except EdgekdError:  # a graph edgekd-c cannot read (float constants of other types ...): MACs only
        options = []
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    layers = []
    dtypes = set()
    for k, op in enumerate(it._get_ops_details()):
        name = op["op_name"]
        out = tensors[op["outputs"][0]]
        shape = tuple(int(s) for s in out["shape"])
        size = int(np.prod(shape)) * np.dtype(out["dtype"]).itemsize
        ins = [tensors[i] for i in op["inputs"] if i >= 0]
        macs, extra = 0, {}
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(ins) > 1:
            w = tuple(int(s) for s in ins[1]["shape"])
            per_output = int(np.prod(w[1:])) if name == "CONV_2D" else (w[1] * w[2] if name == "DEPTHWISE_CONV_2D"
                                                                          else w[-1])
            macs = int(np.prod(shape)) * per_output
            dtypes.add("fp32" if ins[1]["dtype"] == np.float32 else "int8")
            if k < len(options):
                extra = _kernel_fields(name, w, tuple(int(s) for s in ins[0]["shape"]), shape, options[k])
        elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and k < len(options):
            o = options[k]
            taps = int(o.get("filterHeight", 1)) * int(o.get("filterWidth", 1))
            macs = int(np.prod(shape)) * taps  # counted like the cost model's pools, max pools included
            extra = {"kernel": taps, "stride": max(int(o.get("strideH", 1)), int(o.get("strideW", 1))),
                     "in_channels": int(ins[0]["shape"][-1])}
        elif name == "MEAN" and options:
            macs = int(np.prod(ins[0]["shape"]))
        if ins and k < len(options):
            extra.setdefault("input_elems", int(np.prod(ins[0]["shape"])))
        layers.append(costmodel.Layer(len(layers), name, "", _channels_first(shape) if options else shape, size,
                                      macs=macs, **extra))
    return ("fp32" if "fp32" in dtypes else "int8"), layers


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    """NHWC -> NCHW, the order the cost model's layers use."""
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape


def _kernel_fields(op: str, w: tuple[int, ...], in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   o: dict[str, Any]) -> dict[str, int]:
    """Kernel taps, stride, input channels and output channels of a CONV_2D / DEPTHWISE_CONV_2D / FC."""
    if op == "FULLY_CONNECTED":
        return {"kernel": 1, "in_channels": w[-1], "channels": w[0]}
    stride = max(int(o.get("strideH", 1) or 1), int(o.get("strideW", 1) or 1))
    cin = in_shape[-1] if op == "DEPTHWISE_CONV_2D" else w[3]
    return {"kernel": w[1] * w[2], "stride": stride, "in_channels": cin, "channels": out_shape[-1]}


def _student_layers(folder: Path, precision: str) -> tuple[str, list[costmodel.Layer]]:
    from edgekd.distill import load_student
    from edgekd.students import model_input_shape

    model, _ = load_student(folder)
    report = costmodel.analyze(model, model_input_shape(model), precision, bool(model.channels_last_input))
    return precision, report.layers


def _exported_tflite(folder: Path) -> Path | None:
    """The int8 .tflite an export record in ``folder`` names (None without a record or such an artifact)."""
    record = folder / EXPORT_JSON
    if not record.is_file():
        return None
    try:
        arts = json.loads(record.read_text())["artifacts"]
        tfl = next((a for a in arts if a["format"] == "tflite" and a["precision"] == "int8"), None)
        return None if tfl is None else folder / str(tfl["path"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgekdError(f"{record}: not a readable export record ({type(exc).__name__}: {exc}); "
                          "re-run `edgekd export`") from None


def _layers_of(model: Path) -> tuple[str, list[costmodel.Layer]]:
    if model.is_dir():
        tfl = _exported_tflite(model)
        if tfl is not None:
            return tflite_layers(tfl)
        if (model / STUDENT_FILE).is_file():
            return _student_layers(model, "int8")
        raise EdgekdError(f"{model}: neither a build folder (export.json) nor a student folder (student.pt)")
    if not model.is_file():
        raise EdgekdError(f"{model}: no such file or folder")
    if model.suffix == ".tflite":
        return tflite_layers(model)
    if model.suffix == ".pte" and (model.parent / STUDENT_FILE).is_file():
        return _student_layers(model.parent, "fp32" if "fp32" in model.stem else "int8")
    raise EdgekdError(f"{model}: give a .tflite, or a .pte / student inside an edgekd build folder")


def model_latency(target: Target, model: str | Path, emulator: str | None = None,
                  timeout_s: float = 900.0) -> LatencyReport:
    """Latency of ``model`` (a .tflite, or a build/student folder) on ``target``, with its provenance."""
    model = Path(model)
    dtype, layers = _layers_of(model)
    report = costmodel.CostReport((), dtype, 0, sum(ly.macs for ly in layers), 0, 0, 0, 0, 0, 0, layers)
    est = costmodel.estimate_latency(report, target)
    budget = target.budgets.latency_ms
    if emulator is not None:
        return _counted(target, model, emulator, timeout_s, est.ms, dtype, report.macs, len(layers))
    return LatencyReport(target.name, str(model), est.ms, est.kind, f"cost model: {est.method}", budget,
                         est.ms <= budget, dtype, report.macs, len(layers), est.ms)


def _counted(target: Target, model: Path, emulator: str, timeout_s: float, estimate_ms: float, dtype: str,
             macs: int, ops: int) -> LatencyReport:
    """Count 4 invokes of a .tflite (seeded random inputs, XNNPACK, one thread) on the target's emulated core."""
    import tempfile

    from edgekd.emulate import aarch64
    from edgekd.export.tflite import inspect_tflite
    from edgekd.verify import check_emulator

    check_emulator(target, emulator)
    if target.emulator.kind == "qemu-system-arm":
        tfl = _exported_tflite(model) if model.is_dir() else model
        if tfl is not None and tfl.suffix == ".tflite":
            return _counted_on_board(target, tfl, timeout_s, estimate_ms, dtype, macs, ops)
    if target.emulator.kind != "qemu-aarch64" or model.suffix != ".tflite":
        raise EdgekdError(f"{model}: counting a single file runs .tflite models on qemu-aarch64 and "
                          f"qemu-system-arm targets; for {target.name} run `edgekd verify --target {target.name} "
                          "BUILD --emulator qemu`")
    cpu, _ = aarch64.core_of(target)
    graph = inspect_tflite(model)
    rng = np.random.default_rng(0)
    shape = (4, *graph.input.shape[1:])
    if graph.input.dtype == "float32":
        x = rng.standard_normal(shape).astype(np.float32)
    else:
        info = np.iinfo(np.dtype(graph.input.dtype))
        x = rng.integers(info.min, info.max + 1, shape).astype(graph.input.dtype)
    root = aarch64.provision()
    with tempfile.TemporaryDirectory(prefix="edgekd-latency-") as tmp:
        run = aarch64.run_litert_script(model, x, "xnnpack", Path(tmp), timeout_s,
                                        (root, aarch64.stand_in_root(root, target), cpu))
    if not run.ok:
        raise EdgekdError(f"{model}: {run.error}; last lines: {' | '.join(run.log.splitlines()[-3:])}")
    counted = aarch64.counted_time(run, cpu, target, len(graph.ops))
    if counted is None:
        raise EdgekdError("no instruction counts: QEMU's plugin header is missing (run scripts/install_emulators.sh)")
    budget = target.budgets.latency_ms
    method = (f"{counted.instructions:,} instructions per invoke counted by class on qemu-aarch64/{cpu} (LiteRT + "
              f"XNNPACK, 1 thread) at {target.cpu.clock_mhz:g} MHz: {counted.source}; on all {counted.threads} "
              f"cores {counted.threads_ms:.3f} ms (modelled: {aarch64.timing_a.TAU_SOURCE}); cost-model estimate "
              f"{estimate_ms:.3f} ms")
    return LatencyReport(target.name, str(model), counted.ms, "counted", method, budget, counted.ms <= budget, dtype,
                         macs, ops, estimate_ms, counted.instructions, f"qemu-aarch64/{cpu}",
                         counted_threads=counted.threads, counted_threads_ms=counted.threads_ms)


def _counted_on_board(target: Target, model: Path, timeout_s: float, estimate_ms: float, dtype: str, macs: int,
                      ops: int) -> LatencyReport:
    """A microcontroller: edgekd's C for the int8 .tflite, linked into the profile's budgets, one invoke of a
    seeded random input counted (unicorn, or QEMU's plugin on the M55)."""
    from edgekd.emulate.cortex_m import count_tflite

    counted, _ = count_tflite(model, target, timeout_s)
    ms = counted.ms
    if counted.instructions is None or ms is None:
        raise EdgekdError(f"{model}: {counted.note or 'no instruction count'}")
    machine = target.emulator.machine
    budget = target.budgets.latency_ms
    if counted.cycles is not None:
        timing = f"{counted.cycles:,} cycles from {counted.cycle_model}"
    else:
        timing = f"x CPI {counted.cpi:g} ({counted.cpi_source})"
    method = (f"{counted.instructions:,} instructions per invoke of edgekd's C counted for qemu-system-arm/{machine} "
              f"({counted.counter}); {timing}; at {target.cpu.clock_mhz:g} MHz; cost-model estimate "
              f"{estimate_ms:.3f} ms")
    return LatencyReport(target.name, str(model), ms, "counted", method, budget, ms <= budget, dtype, macs, ops,
                         estimate_ms, counted.instructions, f"qemu-system-arm/{machine}", counted.cycles)
