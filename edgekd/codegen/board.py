"""A board layer for the generated C: startup code, a semihosting harness and a linker script; then the link.

The layer is three template files under ``edgekd/codegen/board/``: ``startup.S`` (a reset handler that enables
the FPU/MVE before any code that may use it, copies ``.data``, zeroes ``.bss``), ``board.c`` (vector table,
semihosting I/O, stack high-water mark) and ``board.ld`` (the linker script). The linker script's FLASH and RAM
regions are the profile's *budgets*, so a model that does not fit fails at link time with the overflow in bytes;
they are laid over memory the QEMU machine really maps (:data:`MEMORY_MAPS`), moving to a larger bank when the
one at the usual address is too small, and a budget no bank holds is refused naming the limit.
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

FLASH_ORIGIN = 0x00000000  # where every board's reset vector table is read from
RAM_ORIGIN = 0x20000000
DEFAULT_STACK = 1024
STACK_PAINT = 0xA5A5A5A5
FAULT_STATUS = 99
TESTIO_ORIGIN = {name: board.testio_origin for name, board in BOARDS.items()}
TESTIO_BYTES = 1 << 20

_PLACEHOLDER = re.compile(r"@([A-Z0-9_]+)@")
_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


KiB, MiB = 1 << 10, 1 << 20
VECTORS_BYTES = 64  # board.c's 16-entry vector table: all that must sit at 0x0 when FLASH lies elsewhere


@dataclass(frozen=True)
class Bank:
    """A block of memory a QEMU machine really maps (name as QEMU's source and ``info mtree`` call it)."""

    name: str
    origin: int
    size: int

    @property
    def end(self) -> int:
        return self.origin + self.size


@dataclass(frozen=True)
class MemoryMap:
    """Where a machine can hold code/constants (``flash``) and data (``ram``): banks in order of preference; the
    first one that holds the whole budget is used. Figures from QEMU 7.2's ``hw/arm/mps2.c`` (``mps.ssram1`` at
    0x0, ``mps.ssram23`` at 0x20000000, 4 MiB each, aliased above) and ``hw/arm/mps2-tz.c`` (``an547_raminfo``
    plus the SSE-300's 512 KiB ITCM and DTCM in ``hw/arm/armsse.c``), checked with ``info mtree -f``."""

    flash: tuple[Bank, ...]
    ram: tuple[Bank, ...]


_MPS2 = MemoryMap(flash=(Bank("mps.ssram1", 0x00000000, 4 * MiB),), ram=(Bank("mps.ssram23", 0x20000000, 4 * MiB),))
MEMORY_MAPS: dict[str, MemoryMap] = {
    "mps2-an385": _MPS2,
    "mps2-an386": _MPS2,
    "mps2-an500": _MPS2,
    # The AN547 maps only 512 KiB (ITCM) at 0x0 and 512 KiB (DTCM) at 0x20000000; larger budgets go to the QSPI
    # flash (a ROM in QEMU, 8 MiB) and to "sram 2" above the 1 MiB test-vector region at its start.
    "mps3-an547": MemoryMap(flash=(Bank("sse300-itcm", 0x00000000, 512 * KiB), Bank("QSPI", 0x28000000, 8 * MiB)),
                            ram=(Bank("sse300-dtcm", 0x20000000, 512 * KiB),
                                 Bank("sram 2", 0x21000000 + (1 << 20), 3 * MiB))),
}


@dataclass(frozen=True)
class Layout:
    """The linker script's regions for one target: FLASH and RAM are exactly the budgets, placed over banks the
    machine maps; ``boot`` is the vector table's own region at 0x0 when FLASH had to go elsewhere."""

    flash: Bank
    ram: Bank
    testio: Bank
    boot: Bank | None = None

    def flash_regions(self) -> tuple[Bank, ...]:
        return (self.boot, self.flash) if self.boot else (self.flash,)


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


def _place(target: BoardTarget, machine: str, what: str, budget: int, banks: tuple[Bank, ...],
           reserve: int = 0) -> Bank:
    for bank in banks:
        if budget <= bank.size + reserve:
            return Bank(bank.name, bank.origin, budget - reserve)
    big = max(banks, key=lambda b: b.size)
    raise EdgekdError(f"target {target.name}: its {what} budget of {budget} bytes is larger than the "
                      f"{big.size} bytes QEMU's {machine} maps for it ({big.name} at 0x{big.origin:08x}); "
                      f"lower the {what} budget (--{what}-budget) or emulate on a larger machine")


def board_layout(target: BoardTarget) -> Layout:
    """Lay the budgeted FLASH and RAM over memory the profile's QEMU machine really has, or refuse naming the
    limit (a region larger than the memory under it links fine and then faults at run time)."""
    machine = machine_of(target)
    memory = MEMORY_MAPS[machine]
    testio = Bank("testio", TESTIO_ORIGIN[machine], TESTIO_BYTES)
    flash_budget = target.budgets.flash_bytes
    if flash_budget <= memory.flash[0].size or len(memory.flash) == 1:
        flash = _place(target, machine, "flash", flash_budget, memory.flash[:1])
    else:  # the vector table stays at 0x0, the rest of the budget goes to a larger bank
        flash = _place(target, machine, "flash", flash_budget, memory.flash[1:], VECTORS_BYTES)
    boot = None if flash.origin == FLASH_ORIGIN else Bank(memory.flash[0].name, FLASH_ORIGIN, VECTORS_BYTES)
    ram = _place(target, machine, "ram", target.budgets.ram_bytes, memory.ram)
    for region in (flash, ram, *([boot] if boot else [])):
        if region.origin < testio.end and testio.origin < region.end:
            raise AssertionError(f"{machine}: {region.name} overlaps the test-vector region")
    return Layout(flash, ram, testio, boot)


def write_board_sources(out_dir: Path, target: BoardTarget,
                        stack_bytes: int = DEFAULT_STACK) -> tuple[Path, Path, Path]:
    """Write ``startup.S``, ``board.c`` and ``<board>.ld`` for ``target`` into ``out_dir`` (atomically)."""
    lay = board_layout(target)
    boot = f"\n  BOOT (rx)   : ORIGIN = 0x{lay.boot.origin:08x}, LENGTH = {lay.boot.size}" if lay.boot else ""
    linker = fill(template("board.ld"), {
        "NAME": target.name, "FLASH_ORIGIN": f"{lay.flash.origin:08x}", "FLASH": str(lay.flash.size),
        "RAM_ORIGIN": f"{lay.ram.origin:08x}", "RAM": str(lay.ram.size), "TESTIO": f"{lay.testio.origin:08x}",
        "TESTIO_LEN": str(lay.testio.size), "BOOT_REGION": boot, "VECTORS_IN": "BOOT" if lay.boot else "FLASH",
        "STACK": str(stack_bytes)})
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
    regions = board_layout(target).flash_regions()
    flash = sum(size for addr, size in sections.values()
                if any(r.origin <= addr < r.end for r in regions)) + sizes.get(".data", 0)
    ram = sum(size for name, (addr, size) in sections.items() if name in (".data", ".bss", ".stack"))
    record = src_dir / "codegen.json"
    arena = int(read_json(record, "codegen record").get("arena_bytes", 0)) if record.is_file() else 0
    return BoardBuild(elf, target.emulator.machine or "", target.cpu.core, flash, ram, stack_bytes, arena, sizes,
                      sizes.get(".testio", 0))
