"""Generated C on an emulated Cortex-M board: built for the profile's core, linked into its budgets, run on QEMU.

The firmware is edgekd-c (``edgekd.codegen``) plus a board layer written here: a vector table, a reset handler
(FPU/MVE enabled before any code that may use it, ``.data`` copied, ``.bss`` zeroed) and a semihosting harness.
The linker script's FLASH and RAM regions are the profile's *budgets*, so a model that does not fit fails at
link time with the overflow in bytes. Test vectors never touch the budgeted regions: the harness reads them with
semihosting (SYS_OPEN/SYS_READ) into a ``.testio`` region of the board's spare RAM and writes the outputs back
the same way. The QEMU boards have megabytes of memory, so QEMU itself would not catch an overrun.

QEMU 7.2 has no cycle counter. Instructions per invoke are counted with the ``unicorn`` engine (same ISA,
mapping only the budgeted flash and RAM) and turned into *counted* milliseconds with a per-core
cycles-per-instruction figure from :data:`CORES`: an approximation, not a measurement.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.emulate import EmulatedRun, EmulationRequest, log_tail, model_inputs, register_emulator, require_tool
from edgekd.emulate.tables import BOARDS, CORES, CoreSpec
from edgekd.errors import EdgekdError
from edgekd.export.core import atomic_path
from edgekd.targets import Target

log = logging.getLogger(__name__)

FLASH_ORIGIN = 0x00000000
RAM_ORIGIN = 0x20000000
DEFAULT_STACK = 1024
STACK_PAINT = 0xA5A5A5A5
FAULT_STATUS = 99


TESTIO_ORIGIN = {name: board.testio_origin for name, board in BOARDS.items()}
TESTIO_BYTES = 1 << 20

_STARTUP = r"""/* Reset handler: enable the FPU (CP10/CP11) first where the core has one, then copy .data and zero .bss
 * with Armv6-M instructions only (no loop the compiler could turn into FP/MVE code), then run main.
 * The .file name keeps gcc's temporary object name out of the symbol table (reproducible ELFs). */
    .file "startup.S"
    .syntax unified
    .thumb
    .text
    .global Reset_Handler
    .type Reset_Handler, %function
Reset_Handler:
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    ldr r0, =0xE000ED88
    ldr r1, [r0]
    ldr r2, =0x00F00000
    orrs r1, r1, r2
    str r1, [r0]
    dsb
    isb
#endif
    ldr r0, =_sidata
    ldr r1, =_sdata
    ldr r2, =_edata
1:  cmp r1, r2
    bhs 2f
    ldr r3, [r0]
    str r3, [r1]
    adds r0, r0, #4
    adds r1, r1, #4
    b 1b
2:  ldr r1, =_sbss
    ldr r2, =_ebss
    movs r3, #0
3:  cmp r1, r2
    bhs 4f
    str r3, [r1]
    adds r1, r1, #4
    b 3b
4:  bl main
    bl board_exit
5:  b 5b
    .size Reset_Handler, .-Reset_Handler
"""

_BOARD = r"""/* Board harness: vector table, semihosting I/O, stack high-water mark. Test vectors live in .testio,
 * a region outside the budgeted FLASH and RAM. */
#include <stddef.h>
#include <stdint.h>
#include "model.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_EXIT_EXTENDED 0x20

extern uint32_t _sstack, _estack;
void Reset_Handler(void);
void board_exit(int status);
int main(void);

static int8_t in_buf[EDGEKD_INPUT_SIZE] __attribute__((section(".testio")));
static int8_t out_buf[EDGEKD_OUTPUT_SIZE] __attribute__((section(".testio")));
static uint32_t stats[2] __attribute__((section(".testio")));

static int semihost(int op, void *arg) {
  register int r0 __asm__("r0") = op;
  register void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void board_exit(int status) {
  uint32_t block[2];
  block[0] = 0x20026u; /* ADP_Stopped_ApplicationExit */
  block[1] = (uint32_t)status;
  semihost(SYS_EXIT_EXTENDED, block);
  for (;;) {
  }
}

static void fault_handler(void) { board_exit(__FAULT_STATUS__); }

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, fault_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, fault_handler};

void *memcpy(void *dst, const void *src, size_t n) {
  uint8_t *d = (uint8_t *)dst;
  const uint8_t *s = (const uint8_t *)src;
  while (n--) *d++ = *s++;
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  uint8_t *d = (uint8_t *)dst;
  while (n--) *d++ = (uint8_t)c;
  return dst;
}

static int file_open(const char *name, int mode) {
  uint32_t block[3];
  uint32_t len = 0;
  while (name[len]) ++len;
  block[0] = (uint32_t)name;
  block[1] = (uint32_t)mode;
  block[2] = len;
  return semihost(SYS_OPEN, block);
}

static int file_io(int op, int handle, void *buf, uint32_t len) {
  uint32_t block[3];
  block[0] = (uint32_t)handle;
  block[1] = (uint32_t)buf;
  block[2] = len;
  return semihost(op, block); /* bytes NOT transferred */
}

int main(void) {
  int fin = file_open("x.bin", 1), fout = file_open("y.bin", 5), fstat;
  uint32_t *p, sp, n = 0;
  if (fin < 0 || fout < 0) return 10;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  for (p = &_sstack; p < (uint32_t *)(sp - 128u); ++p) *(volatile uint32_t *)p = __PAINT__u;
  while (file_io(SYS_READ, fin, in_buf, EDGEKD_INPUT_SIZE) == 0) {
    if (edgekd_invoke(in_buf, out_buf) != 0) return 11;
    if (file_io(SYS_WRITE, fout, out_buf, EDGEKD_OUTPUT_SIZE) != 0) return 12;
    ++n;
  }
  for (p = &_sstack; p < &_estack && *(volatile uint32_t *)p == __PAINT__u; ++p) {
  }
  stats[0] = n;
  stats[1] = (uint32_t)((uint8_t *)&_estack - (uint8_t *)p);
  fstat = file_open("stats.bin", 5);
  if (fstat < 0 || file_io(SYS_WRITE, fstat, stats, sizeof stats) != 0) return 13;
  semihost(SYS_CLOSE, &fout);
  return 0;
}
"""

_LINKER = """/* Generated by edgekd for {name}: FLASH and RAM are the model budgets (an overrun fails here). */
MEMORY
{{
  FLASH (rx)  : ORIGIN = 0x{flash_origin:08x}, LENGTH = {flash}
  RAM (rwx)   : ORIGIN = 0x{ram_origin:08x}, LENGTH = {ram}
  TESTIO (rw) : ORIGIN = 0x{testio:08x}, LENGTH = {testio_len}
}}
ENTRY(Reset_Handler)
SECTIONS
{{
  .vectors : {{ KEEP(*(.vectors)) }} > FLASH
  .text : {{ *(.text*) }} > FLASH
  .rodata : {{ *(.rodata*) . = ALIGN(4); }} > FLASH
  .ARM.exidx : {{ *(.ARM.exidx*) }} > FLASH
  _sidata = LOADADDR(.data);
  .data : {{ . = ALIGN(4); _sdata = .; *(.data*) . = ALIGN(4); _edata = .; }} > RAM AT > FLASH
  .bss (NOLOAD) : {{ . = ALIGN(4); _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; }} > RAM
  .stack (NOLOAD) : {{ . = ALIGN(8); _sstack = .; . = . + {stack}; . = ALIGN(8); _estack = .; }} > RAM
  .testio (NOLOAD) : {{ *(.testio*) }} > TESTIO
}}
"""

_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


@dataclass
class BoardBuild:
    """A linked firmware and what it occupies (from the ELF's section headers)."""

    elf: Path
    board: str
    core: str
    flash_bytes: int  # .vectors + .text + .rodata + .ARM.exidx + .data's initial image
    ram_bytes: int  # .data + .bss + .stack (reserved)
    stack_bytes: int
    arena_bytes: int
    sections: dict[str, int] = field(default_factory=dict)
    testio_bytes: int = 0


@dataclass
class BoardRun:
    ok: bool
    outputs: np.ndarray | None = None
    stack_used: int | None = None
    error: str | None = None
    log_tail: str | None = None
    wall_s: float = 0.0


def core_spec(target: Target) -> CoreSpec:
    if target.cpu.core not in CORES:
        raise EdgekdError(f"target {target.name}: core {target.cpu.core} has no Cortex-M build recipe "
                          f"(known: {', '.join(CORES)})")
    return CORES[target.cpu.core]


def _machine(target: Target) -> str:
    machine = target.emulator.machine
    if machine not in TESTIO_ORIGIN:
        raise EdgekdError(f"target {target.name}: QEMU machine {machine!r} has no memory map here "
                          f"(known: {', '.join(TESTIO_ORIGIN)}); fix the profile's emulator.machine")
    return machine


def write_board_sources(out_dir: Path, target: Target, stack_bytes: int = DEFAULT_STACK) -> tuple[Path, Path, Path]:
    """Write ``startup.S``, ``board.c`` and ``<board>.ld`` for ``target`` into ``out_dir`` (atomically)."""
    machine = _machine(target)
    linker = _LINKER.format(name=target.name, flash_origin=FLASH_ORIGIN, flash=target.budgets.flash_bytes,
                            ram_origin=RAM_ORIGIN, ram=target.budgets.ram_bytes, testio=TESTIO_ORIGIN[machine],
                            testio_len=TESTIO_BYTES, stack=stack_bytes)
    board = _BOARD.replace("__FAULT_STATUS__", str(FAULT_STATUS)).replace("__PAINT__", f"0x{STACK_PAINT:08X}")
    paths = out_dir / "startup.S", out_dir / "board.c", out_dir / f"{target.name}.ld"
    for path, text in zip(paths, (_STARTUP, board, linker), strict=True):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return paths


def elf_sections(elf: Path) -> dict[str, tuple[int, int]]:
    """Allocated sections: name -> (address, size)."""
    try:
        from elftools.elf.elffile import ELFFile
    except ImportError as e:
        raise EdgekdError("pyelftools is not installed: pip install pyelftools (it reads the firmware's sizes)") from e
    with elf.open("rb") as f:
        return {s.name: (s["sh_addr"], s["sh_size"]) for s in ELFFile(f).iter_sections()
                if s["sh_flags"] & 0x2 and s["sh_size"]}


def build_board(src_dir: str | Path, target: Target, elf: str | Path | None = None,
                stack_bytes: int = DEFAULT_STACK) -> BoardBuild:
    """Compile ``src_dir``'s generated model for ``target``'s core and link it into the budgets.

    An overrun is an EdgekdError saying which region overflowed and by how many bytes.
    """
    src_dir = Path(src_dir)
    gcc = require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    spec = core_spec(target)
    startup, board, linker = write_board_sources(src_dir, target, stack_bytes)
    elf = Path(elf) if elf else src_dir / f"{target.name}.elf"
    cmd = [gcc, "-pipe", "-mthumb", *spec.gcc_flags, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffreestanding",
           "-fno-tree-loop-distribute-patterns", "-ffunction-sections", "-fdata-sections", "-nostdlib",
           "-nostartfiles", "-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}", "-T", str(linker),
           "-I", str(src_dir), str(startup), str(board), str(src_dir / "model.c"), str(src_dir / "kernels.c"),
           "-lgcc"]
    with atomic_path(elf) as tmp:
        proc = subprocess.run([*cmd, "-o", str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            over = _OVERFLOW.findall(proc.stderr)
            if over:
                budget = {"RAM": target.budgets.ram_bytes, "FLASH": target.budgets.flash_bytes}
                parts = [f"{region} overflowed by {int(n)} bytes (budget {budget.get(region, '?')} bytes)"
                         for region, n in over]
                raise EdgekdError(f"{target.name}: the model does not fit its budgets: {'; '.join(parts)}; "
                                  "pick a smaller student or raise the budget")
            raise EdgekdError(f"arm-none-eabi-gcc failed for {target.name}: {proc.stderr.strip()[-1500:]}")
    sections = elf_sections(elf)
    sizes = {name: size for name, (_, size) in sections.items()}
    flash = sum(size for name, (addr, size) in sections.items()
                if FLASH_ORIGIN <= addr < RAM_ORIGIN and name != ".testio") + sizes.get(".data", 0)
    ram = sum(size for name, (addr, size) in sections.items() if name in (".data", ".bss", ".stack"))
    codegen = json.loads((src_dir / "codegen.json").read_text()) if (src_dir / "codegen.json").is_file() else {}
    return BoardBuild(elf, target.emulator.machine or "", target.cpu.core, flash, ram, stack_bytes,
                      int(codegen.get("arena_bytes", 0)), sizes, sizes.get(".testio", 0))


def run_board(build: BoardBuild, target: Target, x: np.ndarray, output_size: int, timeout: float,
              plugin: str | None = None) -> BoardRun:
    """Run the firmware on the profile's QEMU machine over int8 inputs ``x`` (N, ...); never hangs past timeout.

    ``plugin`` is a ``-plugin`` argument (the instruction counter with its ``out=`` file)."""
    import time

    qemu = require_tool("qemu-system-arm", "qemu-system-arm")
    machine = _machine(target)
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


def _thumb_count(code: bytes) -> int:
    """Instructions in a block of Thumb code: halfwords starting 0b11101/0b11110/0b11111 open a 32-bit one."""
    n, i = 0, 0
    while i + 1 < len(code):
        hw = code[i] | (code[i + 1] << 8)
        i += 4 if (hw >> 11) in (0b11101, 0b11110, 0b11111) else 2
        n += 1
    return n


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
    totals = []
    with tempfile.TemporaryDirectory(prefix="edgekd-count-") as tmp:
        for n in (1, 2):
            out = Path(tmp) / f"count{n}.txt"
            x = np.repeat(np.asarray(sample, dtype=np.int8)[None], n, axis=0)
            run = run_board(build, target, x, output_size, timeout, f"{plugin},out={out}")
            total = read_total(out)
            if not run.ok or total is None:
                raise EdgekdError(f"the QEMU plugin wrote no count ({run.error or 'no output'})")
            totals.append(total)
    return totals[1] - totals[0]


def count_instructions(build: BoardBuild, target: Target, sample: np.ndarray) -> int | None:
    """Guest instructions for one ``edgekd_invoke`` under unicorn (None for cores unicorn lacks, e.g. M55).

    Only the budgeted flash and RAM are mapped (plus the test-vector region), so an access outside them faults.
    """
    spec = core_spec(target)
    if spec.unicorn_cpu is None:
        return None
    try:
        import unicorn
    except ImportError as e:
        raise EdgekdError("unicorn is not installed: pip install unicorn (it counts instructions)") from e
    from elftools.elf.elffile import ELFFile
    from unicorn import arm_const

    def page(n: int) -> int:
        return (n + 0xFFF) & ~0xFFF

    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(getattr(arm_const, spec.unicorn_cpu))
    testio = TESTIO_ORIGIN[_machine(target)]
    uc.mem_map(FLASH_ORIGIN, page(target.budgets.flash_bytes))
    uc.mem_map(RAM_ORIGIN, page(target.budgets.ram_bytes))
    uc.mem_map(testio, TESTIO_BYTES)
    symbols: dict[str, int] = {}
    with build.elf.open("rb") as f:
        elf = ELFFile(f)
        for s in elf.iter_sections():
            if s["sh_flags"] & 0x2 and s["sh_type"] == "SHT_PROGBITS" and s["sh_size"]:
                uc.mem_write(s["sh_addr"], s.data())
        for sym in elf.get_section_by_name(".symtab").iter_symbols():
            symbols[sym.name] = sym["st_value"]
    if spec.fpu:
        uc.reg_write(arm_const.UC_ARM_REG_C1_C0_2, uc.reg_read(arm_const.UC_ARM_REG_C1_C0_2) | (0xF << 20))
    x_at, y_at, ret = testio, testio + 0x10000, testio + 0x20000
    uc.mem_write(x_at, np.ascontiguousarray(sample, dtype=np.int8).tobytes())
    uc.mem_write(ret, b"\x00\xbf" * 4)  # NOPs; emulation stops when the invoke returns here
    uc.reg_write(arm_const.UC_ARM_REG_SP, symbols["_estack"])
    uc.reg_write(arm_const.UC_ARM_REG_R0, x_at)
    uc.reg_write(arm_const.UC_ARM_REG_R1, y_at)
    uc.reg_write(arm_const.UC_ARM_REG_LR, ret | 1)
    cache: dict[tuple[int, int], int] = {}
    total = [0]

    def on_block(engine: Any, address: int, size: int, _: Any) -> None:
        key = (address, size)
        if key not in cache:
            cache[key] = _thumb_count(bytes(engine.mem_read(address, size)))
        total[0] += cache[key]

    uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    entry = symbols["edgekd_invoke"] & ~1
    uc.emu_start(entry | 1, ret)
    return total[0]


def _failed(req: EmulationRequest, machine: str, path: str, error: str, log_tail: str | None = None,
            details: dict[str, Any] | None = None) -> EmulatedRun:
    return EmulatedRun(emulator=f"qemu-system-arm/{machine}", format="c", precision="int8", runtime="edgekd-c",
                       kernels="edgekd-c", path=path, samples=len(req.y), ok=False, error=error, log_tail=log_tail,
                       threads=1, details=details or {})


@register_emulator("qemu-system-arm")
def emulate_cortex_m(req: EmulationRequest) -> list[EmulatedRun]:
    """Generate C for the build's int8 .tflite, build it for the profile's board, run it on QEMU, and compare
    every output byte with TFLite Micro (host) and with the same C built by the host gcc."""
    from edgekd.codegen import compile_host, generate_c, run_host
    from edgekd.export.student import load_export
    from edgekd.verify.tflm import min_arena, run_tflm

    target = req.target
    machine = _machine(target)
    spec = core_spec(target)
    require_tool("qemu-system-arm", "qemu-system-arm")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    _, artifacts = load_export(req.build_dir)
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
    x = model_inputs(req.x, tfl.details)
    x = x.reshape(len(x), *gen.input_shape[1:])
    c_art = next((a for a in artifacts if a.format == "c"), None)
    tflm_arena = int(c_art.details.get("tensor_arena_bytes", 0)) if c_art else 0
    if not tflm_arena:
        tflm_arena = min_arena(tflite).min_arena_bytes
    details: dict[str, Any] = {"source_dir": "c", "elf": elf_rel, "arena_bytes": gen.arena_bytes,
                               "tflm_arena_bytes": tflm_arena, "ops": gen.ops, "macs": gen.macs,
                               "model_const_bytes": gen.const_bytes, "core": target.cpu.core,
                               "test_vectors": "semihosting into .testio (outside the budgeted FLASH and RAM)",
                               "diff_unit": "int8 steps"}
    try:
        build = build_board(c_dir, target)
    except EdgekdError as e:
        return [_failed(req, machine, elf_rel, str(e), details=details)]
    details.update(flash_bytes=build.flash_bytes, ram_bytes=build.ram_bytes, stack_reserved_bytes=build.stack_bytes,
                   flash_budget_bytes=target.budgets.flash_bytes, ram_budget_bytes=target.budgets.ram_bytes,
                   sections=build.sections)
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
    details.update(stack_bytes=stack, bit_exact_vs_tflm=bool(diff.max(initial=0) == 0),
                   bit_exact_vs_host_gcc=same_gcc, mismatched_outputs=int((diff != 0).sum()),
                   ram_used_bytes=gen.arena_bytes + stack,
                   ram_vs_tflm=round((gen.arena_bytes + stack) / tflm_arena, 3) if tflm_arena else None,
                   qemu_wall_s=round(board.wall_s, 3))
    if stack > 0.9 * build.stack_bytes:
        run.ok, run.error = False, f"stack high-water {stack} bytes is within 10% of the {build.stack_bytes} reserved"
    if req.count:
        if spec.unicorn_cpu is None:
            try:
                run.instructions = count_on_qemu(build, target, x[0], gen.output_size, req.timeout_s)
                details["counter"] = "qemu-system-arm TCG plugin (runs of 1 and 2 samples, difference)"
            except EdgekdError as e:
                details["count_note"] = f"no instruction count: {e}"
            if run.instructions is None:
                details.setdefault("count_note", "no instruction count: QEMU's plugin header is missing "
                                                 "(scripts/install_emulators.sh installs it)")
        else:
            details["counter"] = "unicorn (budgeted flash and RAM mapped only)"
            try:
                run.instructions = count_instructions(build, target, x[0])
            except Exception as e:  # noqa: BLE001  (unicorn raises its own UcError for guest faults)
                details["count_note"] = f"no instruction count: {e}"
        if run.instructions is not None:
            run.cpi = spec.cpi
            run.counted_ms = run.instructions * spec.cpi / (target.cpu.clock_mhz * 1e6) * 1e3
            details["cpi_source"] = "edgekd.emulate.cortex_m.CoreSpec (TRM timings scaled by CoreMark/MHz)"
            details["instructions_per_mac"] = round(run.instructions / max(gen.macs, 1), 2)
    run.details = details
    if not run.bit_exact_vs_host and run.ok:
        log.warning("%s: board outputs differ from the host (%d bytes)", target.name, details["mismatched_outputs"])
    return [run]
