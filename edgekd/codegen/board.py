"""A board layer for the generated C: startup code, a semihosting harness and a linker script; then the link.

The layer is three template files under ``edgekd/codegen/board/``: ``startup.S`` (a reset handler that enables
the FPU/MVE before any code that may use it, copies ``.data``, zeroes ``.bss``), ``board.c`` (vector table,
semihosting I/O, stack high-water mark) and ``board.ld`` (the linker script). The linker script's FLASH and RAM
regions are the profile's *budgets*, so a model that does not fit fails at link time with the overflow in bytes.
Test vectors never touch the budgeted regions: the harness reads them with semihosting (SYS_OPEN/SYS_READ) into
a ``.testio`` region of the board's spare RAM and writes the outputs back the same way.

Templates are filled by :func:`fill`: every ``@NAME@`` is replaced by its value, in one pass (a value is never
re-scanned), and a placeholder left without a value is an error. Release bundles embed the written files and
``edgekd package verify`` regenerates them, so the same inputs must give the same bytes.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Protocol

from edgekd.cores import BOARDS, Core, cortex_m_cores
from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, atomic_write_text, read_json
from edgekd.targets import Target
from edgekd.tools import require_tool

FLASH_ORIGIN = 0x00000000
RAM_ORIGIN = 0x20000000
DEFAULT_STACK = 1024
STACK_PAINT = 0xA5A5A5A5
FAULT_STATUS = 99
TESTIO_ORIGIN = {name: board.testio_origin for name, board in BOARDS.items()}
TESTIO_BYTES = 1 << 20

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


class _Budgets(Protocol):
    flash_bytes: int
    ram_bytes: int


class _Emulator(Protocol):
    machine: str | None


class BoardTarget(Protocol):
    """What the board layer reads from a target: a :class:`edgekd.targets.Target`, or the same three fields
    rebuilt from a bundle's manifest by ``package verify``."""

    name: str
    budgets: _Budgets
    emulator: _Emulator


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


def template(name: str) -> str:
    """The text of template ``name`` (``startup.S``, ``board.c``, ``board.ld``)."""
    return resources.files("edgekd.codegen").joinpath("board", name).read_text()


def fill(text: str, values: dict[str, str]) -> str:
    """Replace every ``@NAME@`` in ``text`` with ``values[NAME]``; a name without a value is an error."""
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise ValueError(f"template placeholders without a value: {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def core_spec(target: Target) -> Core:
    """The target's core, which must have a Cortex-M build recipe in :mod:`edgekd.cores`."""
    core, known = target.cpu.core, cortex_m_cores()
    if core not in known:
        raise EdgekdError(f"target {target.name}: core {core} has no Cortex-M build recipe "
                          f"(known: {', '.join(known)})")
    return known[core]


def machine_of(target: BoardTarget) -> str:
    """The profile's QEMU machine, which must be a board in :data:`edgekd.cores.BOARDS`."""
    machine = target.emulator.machine
    if machine not in TESTIO_ORIGIN:
        raise EdgekdError(f"target {target.name}: QEMU machine {machine!r} has no memory map here "
                          f"(known: {', '.join(TESTIO_ORIGIN)}); fix the profile's emulator.machine")
    return machine


def write_board_sources(out_dir: Path, target: BoardTarget,
                        stack_bytes: int = DEFAULT_STACK) -> tuple[Path, Path, Path]:
    """Write ``startup.S``, ``board.c`` and ``<board>.ld`` for ``target`` into ``out_dir`` (atomically)."""
    machine = machine_of(target)
    linker = fill(template("board.ld"), {
        "NAME": target.name, "FLASH_ORIGIN": f"{FLASH_ORIGIN:08x}", "FLASH": str(target.budgets.flash_bytes),
        "RAM_ORIGIN": f"{RAM_ORIGIN:08x}", "RAM": str(target.budgets.ram_bytes),
        "TESTIO": f"{TESTIO_ORIGIN[machine]:08x}", "TESTIO_LEN": str(TESTIO_BYTES), "STACK": str(stack_bytes)})
    board = fill(template("board.c"), {"FAULT_STATUS": str(FAULT_STATUS), "PAINT": f"0x{STACK_PAINT:08X}"})
    startup = fill(template("startup.S"), {})
    paths = Path(out_dir) / "startup.S", Path(out_dir) / "board.c", Path(out_dir) / f"{target.name}.ld"
    for path, text in zip(paths, (startup, board, linker), strict=True):
        atomic_write_text(path, text)
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
    name, budgets = target.name, target.budgets
    elf = Path(elf) if elf else src_dir / f"{name}.elf"
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
                budget = {"RAM": budgets.ram_bytes, "FLASH": budgets.flash_bytes}
                parts = [f"{region} overflowed by {int(n)} bytes (budget {budget.get(region, '?')} bytes)"
                         for region, n in over]
                raise EdgekdError(f"{name}: the model does not fit its budgets: {'; '.join(parts)}; "
                                  "pick a smaller student or raise the budget")
            raise EdgekdError(f"arm-none-eabi-gcc failed for {name}: {proc.stderr.strip()[-1500:]}")
    sections = elf_sections(elf)
    sizes = {name: size for name, (_, size) in sections.items()}
    flash = sum(size for name, (addr, size) in sections.items()
                if FLASH_ORIGIN <= addr < RAM_ORIGIN and name != ".testio") + sizes.get(".data", 0)
    ram = sum(size for name, (addr, size) in sections.items() if name in (".data", ".bss", ".stack"))
    record = src_dir / "codegen.json"
    arena = int(read_json(record, "codegen record").get("arena_bytes", 0)) if record.is_file() else 0
    return BoardBuild(elf, target.emulator.machine or "", target.cpu.core, flash, ram, stack_bytes, arena, sizes,
                      sizes.get(".testio", 0))
