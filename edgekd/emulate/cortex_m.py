"""Generated C on an emulated Cortex-M board: built for the profile's core, linked into its budgets, run on QEMU.

The firmware is edgekd-c (``edgekd.codegen``) plus the board layer of :mod:`edgekd.codegen.board` (startup,
semihosting harness, a linker script whose FLASH and RAM are the profile's budgets). The QEMU boards have
megabytes of memory, so QEMU itself would not catch an overrun: the linker does. Test vectors go in and out by
semihosting, through a ``.testio`` region outside the budgets.

QEMU 7.2 has no cycle counter. Instructions per invoke are counted with the ``unicorn`` engine
(:mod:`edgekd.emulate.count`), or with edgekd's QEMU TCG plugin for cores unicorn lacks (the M55). On the
Cortex-M4 and M7 the executed instruction stream is charged by edgekd's per-class cycle model
(:mod:`edgekd.emulate.timing_m`), on the Cortex-M55 by its beat-wise MVE model (:mod:`edgekd.emulate.timing_m55`,
from QEMU's per translated block counts); other cores turn instructions into time with the core's cycles-per-instruction
figure from :mod:`edgekd.cores`. Either way *counted* milliseconds are a model, not a measurement.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.codegen.board import FAULT_STATUS, BoardBuild, board_layout, build_board, core_spec, machine_of
from edgekd.emulate import (
    EmulatedRun,
    EmulationRequest,
    EmulatorDetails,
    log_tail,
    model_inputs,
    register_emulator,
    require_tool,
)
from edgekd.emulate.count import count_instructions
from edgekd.emulate.timing_m import CYCLE_MODEL_CORES, time_invoke
from edgekd.emulate.timing_m55 import CORE as M55_CORE
from edgekd.emulate.timing_m55 import SOURCE as M55_SOURCE
from edgekd.emulate.timing_m55 import time_on_qemu
from edgekd.errors import EdgekdError
from edgekd.targets import Target

log = logging.getLogger(__name__)


@dataclass
class CortexMDetails(EmulatorDetails):
    """One board run of the generated C: what was built (sizes from the ELF, against the budgets), how it
    compared with TFLite Micro and the host gcc, and how the invoke was counted. Fields stay None for the steps a
    failed run never reached; each JSON key is the field's name (verify.json, report.json's lifted sizes)."""

    source_dir: str
    elf: str
    arena_bytes: int
    tflm_arena_bytes: int
    ops: list[str]
    macs: int
    model_const_bytes: int
    core: str
    test_vectors: str = "semihosting into .testio (outside the budgeted FLASH and RAM)"
    diff_unit: str = "int8 steps"
    # the linked firmware (edgekd.codegen.board.build_board)
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    stack_reserved_bytes: int | None = None
    flash_budget_bytes: int | None = None
    ram_budget_bytes: int | None = None
    sections: dict[str, int] = field(default_factory=dict)
    # the run on QEMU, compared with TFLite Micro and the same C built by the host gcc
    stack_bytes: int | None = None
    bit_exact_vs_tflm: bool | None = None
    bit_exact_vs_host_gcc: bool | None = None
    mismatched_outputs: int | None = None
    ram_used_bytes: int | None = None
    ram_vs_tflm: float | None = None
    qemu_wall_s: float | None = None
    # the counted invoke (count_invoke)
    counter: str | None = None
    count_note: str | None = None
    cpi_source: str | None = None
    instructions_per_mac: float | None = None
    cycles: int | None = None
    cycles_per_mac: float | None = None

    def cpi_note(self) -> str | None:
        return self.cpi_source

    def report_fields(self) -> dict[str, Any]:
        sizes = {"flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes, "tflm_arena_bytes":
                 self.tflm_arena_bytes, "arena_bytes": self.arena_bytes, "stack_bytes": self.stack_bytes}
        return {k: v for k, v in sizes.items() if v is not None}


@dataclass
class BoardRun:
    ok: bool
    outputs: np.ndarray | None = None
    stack_used: int | None = None
    error: str | None = None
    log_tail: str | None = None
    wall_s: float = 0.0


@dataclass
class InvokeCount:
    """Instructions of one invoke (None when no counter could run), how they were counted, and counted time."""

    instructions: int | None
    counter: str | None
    note: str | None
    cpi: float
    cpi_source: str
    clock_mhz: float
    cycles: int | None = None  # from edgekd's per-class cycle model (Cortex-M4/M7/M55), else None
    cycle_model: str | None = None

    @property
    def ms(self) -> float | None:
        """Counted time: modelled cycles at the profile clock, else instructions x the core's CPI."""
        if self.cycles is not None:
            return self.cycles / (self.clock_mhz * 1e3)
        if self.instructions is None:
            return None
        return self.instructions * self.cpi / (self.clock_mhz * 1e6) * 1e3


def run_board(build: BoardBuild, target: Target, x: np.ndarray, output_size: int, timeout: float,
              plugin: str | None = None) -> BoardRun:
    """Run the firmware on the profile's QEMU machine over int8 inputs ``x`` (N, ...); never hangs past timeout.

    ``plugin`` is a ``-plugin`` argument (the instruction counter with its ``out=`` file)."""
    import time

    qemu = require_tool("qemu-system-arm", "qemu-system-arm")
    machine = machine_of(target)
    with tempfile.TemporaryDirectory(prefix="edgekd-qemu-m-") as tmp:
        work = Path(tmp)
        (work / "x.bin").write_bytes(np.ascontiguousarray(x, dtype=np.int8).tobytes())
        cmd = [qemu, "-M", machine, "-cpu", target.emulator.cpu or target.cpu.core, "-nographic", "-monitor", "none",
               "-serial", "none", "-semihosting-config", "enable=on,target=native", "-kernel",
               str(build.elf.resolve())]  # QEMU runs in a scratch folder: a relative path would not resolve
        if plugin:
            cmd += ["-plugin", plugin]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return BoardRun(False, error=f"{machine}: no exit within {timeout:.0f} s (hang or far too slow)",
                            log_tail=log_tail(out) or None, wall_s=time.perf_counter() - start)
        wall = time.perf_counter() - start
        log_text = log_tail(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            what = "a CPU fault (HardFault or other exception)" if proc.returncode == FAULT_STATUS else \
                f"exit status {proc.returncode}"
            return BoardRun(False, error=f"{machine}: firmware stopped with {what}", log_tail=log_text or None,
                            wall_s=wall)
        y = (work / "y.bin").read_bytes() if (work / "y.bin").is_file() else b""
        stats = (work / "stats.bin").read_bytes() if (work / "stats.bin").is_file() else b""
        n = len(x)
        if len(y) != n * output_size or len(stats) != 8:
            return BoardRun(False, error=f"{machine}: expected {n} outputs, got {len(y) // max(output_size, 1)}",
                            log_tail=log_text or None, wall_s=wall)
        count, stack = np.frombuffer(stats, dtype="<u4")
        return BoardRun(True, np.frombuffer(y, dtype=np.int8).reshape(n, output_size).copy(), int(stack),
                        log_tail=log_text or None, wall_s=wall)


def count_on_qemu(build: BoardBuild, target: Target, sample: np.ndarray, output_size: int,
                  timeout: float) -> int | None:
    """Instructions of one invoke on the QEMU board itself, for cores unicorn lacks (the M55).

    edgekd's TCG plugin counts every guest instruction of a run; the firmware runs once with one copy of the
    sample and once with two, so the difference is one invoke plus one pass of the harness loop (a semihosting
    read and write: tens of instructions). On the M4 it agrees with the unicorn count (tests/test_cortex_m.py).
    """
    from edgekd.emulate import cache_dir
    from edgekd.emulate.qemu_plugin import build_plugin, read_total

    plugin = build_plugin(cache_dir() / "plugins")
    if plugin is None:
        return None
    one, two = plugin_runs(build, target, sample, output_size, timeout, plugin, read_total, "wrote no count")
    return two - one


def plugin_runs(build: BoardBuild, target: Target, sample: np.ndarray, output_size: int, timeout: float,
                plugin: Path, read: Callable[[Path], Any], what: str) -> tuple[Any, Any]:
    """Run the firmware under a QEMU plugin with one copy of ``sample`` and with two, and ``read`` each run's
    plugin output; the two readings differ by one invoke (plus the harness loop). ``what`` names the failure."""
    readings = []
    with tempfile.TemporaryDirectory(prefix="edgekd-plugin-") as tmp:
        for n in (1, 2):
            out = Path(tmp) / f"plugin{n}.txt"
            x = np.repeat(np.asarray(sample, dtype=np.int8)[None], n, axis=0)
            run = run_board(build, target, x, output_size, timeout, f"{plugin},out={out}")
            reading = read(out) if run.ok and out.is_file() else None
            if reading is None:
                raise EdgekdError(f"the QEMU plugin {what} ({run.error or 'no output'})")
            readings.append(reading)
    return readings[0], readings[1]


def count_invoke(build: BoardBuild, target: Target, sample: np.ndarray, output_size: int,
                 timeout: float) -> InvokeCount:
    """Count one invoke of ``sample``: unicorn where it models the core, else the QEMU plugin. A counter that
    cannot run leaves ``instructions`` None and says why in ``note`` (the run itself still stands)."""
    spec = core_spec(target)
    counted = InvokeCount(None, None, None, spec.cpi or 0.0, spec.cpi_source, target.cpu.clock_mhz)
    if spec.unicorn_cpu is None:
        try:
            if target.cpu.core == M55_CORE:  # per-block counts charged by the M55's beat-wise table
                timed = time_on_qemu(build, target, sample, output_size, timeout)
                counted.instructions, counted.cycles = timed.instructions, timed.cycles
                counted.cpi = round(timed.cpi, 3)
                counted.cycle_model = M55_SOURCE
                counted.counter = "qemu-system-arm TCG plugin tb_profile (runs of 1 and 2 samples, difference)"
            else:
                counted.instructions = count_on_qemu(build, target, sample, output_size, timeout)
                counted.counter = "qemu-system-arm TCG plugin (runs of 1 and 2 samples, difference)"
        except EdgekdError as e:
            counted.note = f"no instruction count: {e}"
        if counted.instructions is None and counted.note is None:
            counted.note = ("no instruction count: QEMU's plugin header is missing "
                            "(scripts/install_emulators.sh installs it)")
        return counted
    counted.counter = "unicorn (budgeted flash and RAM mapped only)"
    try:
        if target.cpu.core in CYCLE_MODEL_CORES:
            timed = time_invoke(build, target, sample)
            counted.instructions, counted.cycles = timed.instructions, timed.cycles
            counted.cpi = round(timed.cpi, 3)
            counted.cycle_model = (f"edgekd.emulate.timing_m ({target.cpu.core} TRM timings per instruction class; "
                                   f"flash: {timed.flash.source})")
        else:
            counted.instructions = count_instructions(build, target, sample)
    except Exception as e:  # noqa: BLE001  (unicorn raises its own UcError for guest faults)
        counted.note = f"no instruction count: {e}"
    return counted


def count_tflite(tflite: Path, target: Target, timeout: float, seed: int = 0) -> tuple[InvokeCount, int]:
    """Generate the C for an int8 ``tflite``, link it into ``target``'s budgets and count one invoke of a seeded
    random input (``edgekd latency --emulator qemu`` on a microcontroller); returns the count and the MACs."""
    from edgekd.codegen import generate_c

    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    with tempfile.TemporaryDirectory(prefix="edgekd-latency-m-") as tmp:
        gen = generate_c(tflite, Path(tmp) / "c")
        build = build_board(Path(tmp) / "c", target)
        x = np.random.default_rng(seed).integers(-128, 128, size=gen.input_shape[1:], dtype=np.int8)
        return count_invoke(build, target, x, gen.output_size, timeout), gen.macs


def _failed(req: EmulationRequest, machine: str, path: str, error: str, log_tail: str | None = None,
            details: CortexMDetails | None = None) -> EmulatedRun:
    return EmulatedRun(emulator=f"qemu-system-arm/{machine}", format="c", precision="int8", runtime="edgekd-c",
                       kernels="edgekd-c", path=path, samples=len(req.y), ok=False, error=error, log_tail=log_tail,
                       threads=1, details=details)


@register_emulator("qemu-system-arm", details=CortexMDetails)
def emulate_cortex_m(req: EmulationRequest) -> list[EmulatedRun]:
    """Generate C for the build's int8 .tflite, build it for the profile's board, run it on QEMU, and compare
    every output byte with TFLite Micro (host) and with the same C built by the host gcc."""
    from edgekd.codegen import compile_host, generate_c, run_host
    from edgekd.export.student import load_export
    from edgekd.formats.tflite import TfliteDetails
    from edgekd.verify.tflm import min_arena, run_tflm

    target = req.target
    machine = machine_of(target)
    core_spec(target)  # a core without a build recipe fails before any tool runs
    board_layout(target)  # so does a budget larger than the memory the QEMU machine maps
    require_tool("qemu-system-arm", "qemu-system-arm")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    artifacts = load_export(req.build_dir).artifacts
    tfl = next((a for a in artifacts if a.format == "tflite" and a.precision == "int8"), None)
    if tfl is None:
        raise EdgekdError(f"{req.build_dir}: no int8 .tflite in export.json; export with --formats tflite")
    tflite = Path(req.build_dir) / tfl.path
    c_dir = Path(req.build_dir) / "c"
    elf_rel = f"c/{target.name}.elf"
    try:
        gen = generate_c(tflite, c_dir)
    except EdgekdError as e:
        return [_failed(req, machine, elf_rel, str(e))]
    assert isinstance(tfl.details, TfliteDetails)
    x = model_inputs(req.x, tfl.details)
    x = x.reshape(len(x), *gen.input_shape[1:])
    c_art = next((a for a in artifacts if a.format == "c"), None)
    tflm_arena = int(getattr(c_art.details, "tensor_arena_bytes", 0)) if c_art else 0
    if not tflm_arena:
        tflm_arena = min_arena(tflite).min_arena_bytes
    details = CortexMDetails(source_dir="c", elf=elf_rel, arena_bytes=gen.arena_bytes, tflm_arena_bytes=tflm_arena,
                             ops=gen.ops, macs=gen.macs, model_const_bytes=gen.const_bytes, core=target.cpu.core)
    try:
        build = build_board(c_dir, target)
    except EdgekdError as e:
        return [_failed(req, machine, elf_rel, str(e), details=details)]
    details.flash_bytes, details.ram_bytes, details.stack_reserved_bytes = (build.flash_bytes, build.ram_bytes,
                                                                            build.stack_bytes)
    details.flash_budget_bytes, details.ram_budget_bytes = target.budgets.flash_bytes, target.budgets.ram_bytes
    details.sections = build.sections
    board = run_board(build, target, x, gen.output_size, req.timeout_s)
    if not board.ok or board.outputs is None:
        return [_failed(req, machine, elf_rel, board.error or "failed", board.log_tail, details)]
    host_c = run_host(compile_host(c_dir), x, gen.output_size)
    tflm = run_tflm(tflite, x, max(tflm_arena, 1 << 16) * 2).outputs.reshape(len(x), -1)
    diff = np.abs(board.outputs.astype(np.int32) - tflm.astype(np.int32))
    run = EmulatedRun(emulator=f"qemu-system-arm/{machine}", format="c", precision="int8", runtime="edgekd-c",
                      kernels="edgekd-c", path=elf_rel, samples=len(x), ok=True, threads=1,
                      log_tail=board.log_tail)
    same_gcc = bool(np.array_equal(board.outputs, host_c))
    run.bit_exact_vs_host = bool(diff.max(initial=0) == 0) and same_gcc
    run.max_diff_vs_host = float(diff.max(initial=0))

    def real(q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - gen.output_zero_point) * gen.output_scale
    emu_cls, host_cls = real(board.outputs).argmax(1), real(tflm).argmax(1)
    y = np.asarray(req.y)
    run.accuracy = float((emu_cls == y).mean()) if len(y) == len(x) else None
    run.host_accuracy = float((host_cls == y).mean()) if len(y) == len(x) else None
    run.agreement = float((emu_cls == host_cls).mean())
    stack = board.stack_used or 0
    details.stack_bytes, details.bit_exact_vs_tflm = stack, bool(diff.max(initial=0) == 0)
    details.bit_exact_vs_host_gcc, details.mismatched_outputs = same_gcc, int((diff != 0).sum())
    details.ram_used_bytes = gen.arena_bytes + stack
    details.ram_vs_tflm = round((gen.arena_bytes + stack) / tflm_arena, 3) if tflm_arena else None
    details.qemu_wall_s = round(board.wall_s, 3)
    if stack > 0.9 * build.stack_bytes:
        run.ok, run.error = False, f"stack high-water {stack} bytes is within 10% of the {build.stack_bytes} reserved"
    if req.count:
        counted = count_invoke(build, target, x[0], gen.output_size, req.timeout_s)
        details.counter, details.count_note = counted.counter, counted.note
        run.instructions = counted.instructions
        if counted.instructions is not None:
            run.cpi, run.counted_ms = counted.cpi, counted.ms
            details.cpi_source = counted.cycle_model or counted.cpi_source
            details.instructions_per_mac = round(counted.instructions / max(gen.macs, 1), 2)
            if counted.cycles is not None:
                details.cycles = counted.cycles
                details.cycles_per_mac = round(counted.cycles / max(gen.macs, 1), 2)
    run.details = details
    if not run.bit_exact_vs_host and run.ok:
        log.warning("%s: board outputs differ from the host (%d bytes)", target.name, details.mismatched_outputs)
    return [run]
