"""Raspberry Pi and phone targets: run the exported .tflite and .pte under ``qemu-aarch64`` on the profile's core.

Provisioning (once, cached under ``~/.cache/edgekd/aarch64``): an arm64 Debian root extracted by mmdebstrap
(no chroot, no binfmt), the aarch64 wheels of the same ai-edge-litert / numpy / executorch versions the host
uses, a torch-free ExecuTorch runner cross-built with aarch64-linux-gnu-g++ against the executorch wheel, and
edgekd's QEMU plugin that counts instructions by class between marker syscalls (native/insn_class.c).

Every run pins a real core (``-cpu cortex-a72``, never ``max``: its SME paths gave wrong int8 outputs) and
sees stand-in ``/proc/cpuinfo`` and ``/sys/devices/system/cpu`` for that core: LiteRT's and ExecuTorch's CPU
detection reads them, segfaults on the x86 host's, and silently drops XNNPACK on empty ones. Whether XNNPACK
really ran is checked (LiteRT's execution plan has its DELEGATE node).

The provisioned root and the stand-in CPU files are :mod:`edgekd.emulate.aarch64_root`; the core data lives in
``edgekd/cores.py`` and the cycle model that turns counted instruction classes into time in
``edgekd/emulate/timing_a.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.cores import Core
from edgekd.emulate import (
    EmulatedRun,
    EmulationRequest,
    EmulatorDetails,
    log_tail,
    model_inputs,
    register_emulator,
    require_tool,
    timing_a,
)
from edgekd.emulate.aarch64_root import CORES, Root, core_of, provision, stand_in_root
from edgekd.errors import EdgekdError
from edgekd.logs import log
from edgekd.targets import Target

if TYPE_CHECKING:
    from edgekd.export.records import Artifact
    from edgekd.formats.tflite import QuantParams

LOG_TAIL_LINES = 15
EMPTY_WINDOWS = 1_000_000  # window ids the guest runner gives its empty (marker-only) windows


# The guest side of a LiteRT run; also run by the host Python, so both sides are the same code.
_LITERT_RUNNER = r"""
import ctypes, json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
model, inputs, outputs, kernels, threads = sys.argv[1:6]
mark = ctypes.CDLL(None).syscall
resolver = OpResolverType.BUILTIN_REF if kernels == "reference" else OpResolverType.AUTO
it = Interpreter(model_path=model, num_threads=int(threads), experimental_op_resolver_type=resolver)
it.allocate_tensors()
inp, out = it.get_input_details()[0], it.get_output_details()[0]
delegated = any(op["op_name"] == "DELEGATE" for op in it._get_ops_details())
x = np.load(inputs)
for n in range(8):  # empty windows: what the markers themselves cost
    mark(0xED6E, 1, 1000000 + n)
    mark(0xED6E, 2, 1000000 + n)
ys = []
for n, row in enumerate(x):
    it.set_tensor(inp["index"], row.reshape(inp["shape"]))
    mark(0xED6E, 1, n)
    it.invoke()
    mark(0xED6E, 2, n)
    ys.append(it.get_tensor(out["index"])[0].copy())
np.save(outputs, np.stack(ys))
print("EDGEKD " + json.dumps({"delegated": delegated}))
"""


@dataclass
class GuestRun:
    """Raw outputs of one emulated process, its per-invoke instruction counts (total and by class), and what it
    printed."""

    ok: bool
    outputs: np.ndarray | None
    instructions: list[int]
    overhead: int
    log: str
    info: dict[str, Any]
    error: str | None = None
    classes: list[dict[str, int]] = field(default_factory=list)


def run_guest(root: Root, view: Path, cpu: str, argv: list[str], outputs: Path, counts: Path | None,
              timeout: float, env: dict[str, str] | None = None) -> GuestRun:
    """Run ``argv`` (guest paths are host paths: user mode) under qemu-aarch64 on ``cpu`` with a timeout."""
    cmd = [require_tool("qemu-aarch64", "qemu-user"), "-cpu", cpu, "-L", str(view)]
    if counts is not None and root.plugin is not None:
        cmd += ["-plugin", f"{root.plugin},out={counts}"]
    full_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root.site), "PYTHONNOUSERSITE": "1",
                "PYTHONHASHSEED": "0", "HOME": str(view), "LC_ALL": "C.UTF-8", **(env or {})}
    try:
        proc = subprocess.run(cmd + argv, capture_output=True, text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as exc:
        text = _text(exc.stdout) + _text(exc.stderr)
        return GuestRun(False, None, [], 0, _tail(text), {}, f"timed out after {timeout:.0f} s under qemu-aarch64 "
                        f"-cpu {cpu}")
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 or not outputs.is_file():
        return GuestRun(False, None, [], 0, _tail(text), {}, f"crashed under qemu-aarch64 -cpu {cpu} "
                        f"(exit code {proc.returncode})")
    info: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("EDGEKD "):
            info = json.loads(line[len("EDGEKD "):])
    windows, overhead, classes = _read_counts(counts) if counts is not None and counts.is_file() else ([], 0, [])
    y = np.load(outputs) if outputs.suffix == ".npy" else np.fromfile(outputs, "<f4")
    return GuestRun(True, y, windows, overhead, _tail(text), info, classes=classes)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _tail(text: str) -> str:
    return log_tail(text, LOG_TAIL_LINES)


def _read_counts(path: Path) -> tuple[list[int], int, list[dict[str, int]]]:
    """Per-invoke counts and class counts minus the marker overhead (the smallest empty window, ids from
    EMPTY_WINDOWS). Reads insn_class.c's lines (``ID TOTAL C0 C1 ...`` after a ``classes`` header) and
    insn_window.c's (``ID TOTAL``)."""
    names: list[str] = []
    invokes: dict[int, list[int]] = {}
    empty: list[list[int]] = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields[0] == "classes":
            names = fields[1:]
            continue
        if fields[0] == "total":
            continue
        values = [int(v) for v in fields[1:]]
        if int(fields[0]) >= EMPTY_WINDOWS:
            empty.append(values)
        else:
            invokes[int(fields[0])] = values
    base = min(empty, key=lambda v: v[0]) if empty else None
    totals, classes = [], []
    for _, values in sorted(invokes.items()):
        net = [max(v - b, 0) for v, b in zip(values, base, strict=True)] if base else values
        totals.append(net[0])
        if names:
            classes.append({"total": net[0], **dict(zip(names, net[1:], strict=True))})
    return totals, (base[0] if base else 0), classes


@dataclass
class AArch64Details(EmulatorDetails):
    """One run under qemu-aarch64 beyond the common fields: how its outputs differ from the host's, how the
    invoke was counted and timed, and (LiteRT) whether XNNPACK really ran. Each JSON key is the field's name, plus
    ``counted_ms_<N>_threads`` (N: the profile's cores) for the N-thread estimate."""

    diff_unit: str  # "int8 steps" or "absolute"
    mismatched_outputs: int | None = None  # integer outputs: values that differ from the host's
    mismatched_samples: int | None = None  # ... and the samples they belong to
    exactly_equal: bool | None = None  # float outputs: every value equal to the host's
    marker_overhead_instructions: int = 0
    counted_invokes: int = 0
    cpi_source: str | None = None
    instruction_classes: dict[str, int] | None = None
    busiest_pipe_group: str | None = None
    profile_threads: int | None = None
    counted_ms_all_threads: float | None = None  # on the profile's cores, when the operator count is known
    xnnpack_delegate: bool | None = None  # LiteRT runs: the execution plan had XNNPACK's DELEGATE node

    def cpi_note(self) -> str | None:
        return self.cpi_source

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if self.counted_ms_all_threads is not None:
            out[f"counted_ms_{self.profile_threads}_threads"] = self.counted_ms_all_threads
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AArch64Details:
        out = super().from_json(d)
        assert isinstance(out, AArch64Details)
        for key, value in d.items():  # a record that has only the per-N key (written before the fields existed)
            m = re.fullmatch(r"counted_ms_(\d+)_threads", key)
            if m and out.counted_ms_all_threads is None:
                out.profile_threads, out.counted_ms_all_threads = int(m.group(1)), float(value)
        return out


def _compare(host: np.ndarray, emu: np.ndarray, integer: bool) -> tuple[bool | None, float, AArch64Details]:
    """Exactness vs the host, the largest difference, and the details that say how the outputs differ."""
    if integer:
        diff = np.abs(host.astype(np.int32) - emu.astype(np.int32))
        return (bool(diff.max(initial=0) == 0), float(diff.max(initial=0)),
                AArch64Details("int8 steps", mismatched_outputs=int((diff != 0).sum()),
                               mismatched_samples=int((diff != 0).any(1).sum())))
    diff = np.abs(host.astype(np.float64) - emu.astype(np.float64))
    return None, float(diff.max(initial=0.0)), AArch64Details("absolute", exactly_equal=bool((diff == 0).all()))


@dataclass
class CountedTime:
    """The counted time of one steady invoke: instructions, class counts, and the cycle model's figures."""

    instructions: int
    classes: dict[str, int]
    ms: float  # one thread, the profile's clock
    threads: int  # the profile's cores
    threads_ms: float | None  # on all of them ((t1 - S) / N + S), when the operator count is known
    cpi: float  # effective cycles per counted instruction
    busiest: str  # the busiest pipe group (or issue)
    source: str  # what is modelled, in one line

    def record(self, details: AArch64Details) -> None:
        """Write what was counted into a run's details."""
        details.cpi_source, details.instruction_classes, details.busiest_pipe_group = (self.source, self.classes,
                                                                                      self.busiest)
        if self.threads_ms is not None:
            details.profile_threads, details.counted_ms_all_threads = self.threads, round(self.threads_ms, 4)


def counted_time(run: GuestRun, cpu: str, target: Target, operators: int | None) -> CountedTime | None:
    """The median steady invoke (the first, XNNPACK's one-time set-up, dropped) timed by the class model
    (:mod:`edgekd.emulate.timing_a`) at the profile's clock; the N-thread figure needs the operator count."""
    if not run.instructions or not run.classes:
        return None
    steady = run.classes[1:] or run.classes
    median = sorted(steady, key=lambda c: c["total"])[len(steady) // 2]
    threads, mhz = target.cpu.count, target.cpu.clock_mhz
    pred = timing_a.predict(median, cpu, mhz, threads, operators or 0)
    table = timing_a.timing_for(cpu)
    core = target.cpu.core
    runs_as = f"{core} runs as qemu {cpu} and is timed as the {pred.core}; " if core != pred.core else ""
    source = (f"edgekd.emulate.timing_a: {runs_as}instruction classes x pipe occupancy from the {table.source} "
              f"(busiest: {pred.busiest}) x factor {pred.factor:.3f} fitted on MobileNet v1 "
              f"(docs/cpi_calibration.json); 1 thread")
    multi = timing_a.threads_ms(pred.single_thread_ms, threads, operators, mhz) if operators else None
    return CountedTime(median["total"], median, pred.single_thread_ms, threads, multi, round(pred.cpi, 4),
                       pred.busiest, source)


def run_litert_script(model: Path, x: np.ndarray, kernels: str, work: Path, timeout: float,
                      emulated: tuple[Root, Path, str] | None = None, count: bool = True) -> GuestRun:
    """Run ``model`` on prepared inputs ``x`` with one thread, on the host (``emulated`` None) or under QEMU."""
    tag = f"{model.stem}.{kernels}.{'qemu' if emulated else 'host'}"
    script, inputs, outputs = work / "litert_runner.py", work / f"{tag}.x.npy", work / f"{tag}.y.npy"
    script.write_text(_LITERT_RUNNER)
    np.save(inputs, x)
    argv = [str(script), str(model), str(inputs), str(outputs), kernels, "1"]
    if emulated is None:
        try:
            proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EdgekdError(f"{model}: the host LiteRT run timed out after {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise EdgekdError(f"{model}: the host LiteRT run failed: {_tail(proc.stderr)}")
        return GuestRun(True, np.load(outputs), [], 0, _tail(proc.stderr), {})
    root, view, cpu = emulated
    counts = work / f"{tag}.counts" if count else None
    return run_guest(root, view, cpu, [str(root.path / "usr" / "bin" / "python3.11"), *argv], outputs, counts,
                     timeout)


def _litert_runs(req: EmulationRequest, root: Root, view: Path, cpu: str, core: Core, art: Artifact,
                 work: Path) -> list[EmulatedRun]:
    """One run per kernel set: reference kernels (int8 only) and the default XNNPACK delegate."""
    from edgekd.formats.tflite import TfliteDetails

    model = req.build_dir / art.path
    details = art.details
    assert isinstance(details, TfliteDetails)
    x = model_inputs(req.x, details)
    integer = details.output.dtype != "float32"
    runs = []
    for kernels in (["reference", "xnnpack"] if integer else ["xnnpack"]):
        log.info("emulating %s (LiteRT, %s kernels) on qemu-aarch64 -cpu %s: %d samples", model.name, kernels, cpu,
                 len(x))
        host = run_litert_script(model, x, kernels, work, req.timeout_s)
        g = run_litert_script(model, x, kernels, work, req.timeout_s, (root, view, cpu), req.count)
        runs.append(_result(req, art, "litert", kernels, cpu, core, g, host.outputs, integer, details.output,
                            expect_delegate=kernels == "xnnpack", operators=sum(details.ops.values())))
    return runs


def _pte_runs(req: EmulationRequest, root: Root, view: Path, cpu: str, core: Core, art: Artifact,
              work: Path) -> list[EmulatedRun]:
    from edgekd.verify.executorch import run_pte

    model = req.build_dir / art.path
    x = np.ascontiguousarray(req.x.astype("<f4"))
    inputs, emu_out = work / f"{model.stem}.x.f32", work / f"{model.stem}.qemu.f32"
    x.tofile(inputs)
    log.info("emulating %s (ExecuTorch, XNNPACK) on qemu-aarch64 -cpu %s: %d samples", model.name, cpu, len(x))
    host = run_pte(model, req.x)
    counts = work / f"{model.stem}.pte.counts"
    g = run_guest(root, view, cpu, [str(root.pte_runner), str(model), str(inputs), str(emu_out), str(len(x)), "1",
                                   "1", *map(str, x.shape[1:])], emu_out, counts if req.count else None, req.timeout_s)
    if g.ok and g.outputs is not None:
        g.outputs = g.outputs.reshape(len(x), -1)
    return [_result(req, art, "executorch", "xnnpack", cpu, core, g, host.reshape(len(x), -1), False, None,
                    expect_delegate=False)]


def _result(req: EmulationRequest, art: Artifact, runtime: str, kernels: str, cpu: str, core: Core,
            g: GuestRun, host: np.ndarray, integer: bool, out_q: QuantParams | None,
            expect_delegate: bool, operators: int | None = None) -> EmulatedRun:
    run = EmulatedRun(emulator=f"qemu-aarch64/{cpu}", format=art.format, precision=art.precision,
                      runtime=runtime, kernels=kernels, path=art.path, samples=len(req.y), ok=g.ok,
                      threads=1, error=g.error, log_tail=g.log or None)
    if not g.ok or g.outputs is None:
        return run
    emu = g.outputs
    if out_q is not None and integer:
        emu_f, host_f = out_q.dequantize(emu), out_q.dequantize(host)
    else:
        emu_f, host_f = emu, host
    run.bit_exact_vs_host, run.max_diff_vs_host, details = _compare(host, emu, integer)
    if run.bit_exact_vs_host is None and art.precision == "int8":
        run.bit_exact_vs_host = details.exactly_equal  # an int8 graph with float I/O: exact or not, still
    run.accuracy = float((emu_f.argmax(1) == req.y).mean())
    run.host_accuracy = float((host_f.argmax(1) == req.y).mean())
    run.agreement = float((emu_f.argmax(1) == host_f.argmax(1)).mean())
    counted = counted_time(g, cpu, req.target, operators)
    details.marker_overhead_instructions, details.counted_invokes = g.overhead, len(g.instructions)
    run.details = details
    if counted is not None:
        run.instructions, run.counted_ms, run.cpi = counted.instructions, counted.ms, counted.cpi
        counted.record(details)
    if runtime == "litert":
        details.xnnpack_delegate = bool(g.info.get("delegated"))
        if expect_delegate and not g.info.get("delegated"):
            run.ok, run.error = False, "XNNPACK was not applied under emulation (check the stand-in /sys, /proc)"
    return run


@register_emulator("qemu-aarch64", details=AArch64Details)
def emulate_aarch64(req: EmulationRequest) -> list[EmulatedRun]:
    """Every .tflite and .pte of the build, on the profile's core, against the same runtime on the host."""
    from edgekd.export.student import load_export

    cpu, core = core_of(req.target)
    require_tool("qemu-aarch64", "qemu-user")
    root = provision()
    view = stand_in_root(root, req.target)
    if req.count and root.plugin is None:
        log.warning("instruction counting is off: QEMU's qemu-plugin.h was not found (scripts/install_emulators.sh "
                    "installs it)")
    artifacts = load_export(req.build_dir).artifacts
    runs: list[EmulatedRun] = []
    with tempfile.TemporaryDirectory(prefix="edgekd-qemu-", dir=req.work_dir) as tmp:
        for art in artifacts:
            if art.format == "tflite":
                runs += _litert_runs(req, root, view, cpu, core, art, Path(tmp))
            elif art.format == "pte":
                runs += _pte_runs(req, root, view, cpu, core, art, Path(tmp))
    return runs


# Provisioning is re-exported: callers (latency, package, scripts) import it from here.
__all__ = ["CORES", "AArch64Details", "CountedTime", "GuestRun", "Root", "core_of", "counted_time", "emulate_aarch64",
           "provision", "run_guest", "run_litert_script", "stand_in_root"]
