"""The one core table: what edgekd knows about each CPU core a profile may name, and each QEMU board.

Per core: its class (microcontroller or Linux-class), the cross-compiler flags edgekd's firmware is built with,
the cycles per instruction that turn counted instructions into time (with where that figure comes from), the
MIDR and ``/proc/cpuinfo`` features a real board reports (the aarch64 emulator shows them to the guest), the
QEMU ``-cpu`` and the unicorn model that emulate it. Profiles (:mod:`edgekd.targets`) are validated against
this table and the emulators read it, so a core is described once. Kept free of heavy imports: ``targets
validate`` loads it.

Cortex-M CPI is an approximation for edgekd's scalar integer C (int8 MACs, loads, branches), anchored on the
Cortex-M4: its Technical Reference Manual gives LDR 2 cycles (1 when pipelined), MUL/MLA 1, taken branches
1 + refill (1-3), hence ~1.3 for load-heavy loops. Other cores scale it by Arm's published CoreMark/MHz
(M0+ 2.46, M3 3.34, M4 3.42, M7 5.01, M55 4.2): the same C compiles to similar instruction counts on
Armv7-M/Armv8-M, so cycles scale with 1/(CoreMark/MHz). The M0+ (Armv6-M) needs more instructions for the
same work, which the count already includes, so its CPI comes from its own timings (2-cycle loads and taken
branches, single-cycle multiplier on RP2040): ~1.4. Cross-check on a published anchor: MLPerf Tiny v1.0 DS-CNN
keyword spotting ran in 99.8 ms on a 120 MHz Cortex-M4 (NUCLEO-L4R5ZI, CMSIS-NN) and 16.8 ms on a 280 MHz
Cortex-M7 (STM32H7A3, X-CUBE-AI); those libraries use SIMD (SMLAD) and are several times faster per MAC than
these portable kernels, so counted times are an upper-side estimate of what this C would take.

Cortex-A cores carry no CPI: their counted time comes from the executed instruction classes and each core's
pipe throughputs (:mod:`edgekd.emulate.timing_a`, fitted by scripts/calibrate_cpi.py).
MIDR fields: Arm Technical Reference Manuals (MIDR_EL1 reset values); features: ``/proc/cpuinfo`` of a Pi 3B+/
Zero 2 W (A53), Pi 4 (A72) and Pi 5 (A76) on Raspberry Pi OS bookworm.
"""

from __future__ import annotations

from dataclasses import dataclass

MCU, LINUX = "mcu", "linux"
_M_CPI_SOURCE = "edgekd.cores (Cortex-M4 TRM timings scaled by CoreMark/MHz)"


@dataclass(frozen=True)
class Midr:
    """The Main ID Register fields of an Arm core (implementer 0x41, architecture 0xF: see the TRMs)."""

    part: int
    variant: int
    revision: int

    @property
    def value(self) -> int:
        return (0x41 << 24) | (self.variant << 20) | (0xF << 16) | (self.part << 4) | self.revision


@dataclass(frozen=True)
class Core:
    """One core. Fields an emulator needs are None where edgekd has no emulator for the core."""

    name: str
    klass: str  # MCU or LINUX: which device classes may name it
    arch: str  # base architecture, as profiles spell it in cpu.isa
    gcc_flags: tuple[str, ...] = ()  # arm-none-eabi-gcc -mcpu/-mfpu/-mfloat-abi (a Cortex-M build recipe)
    fpu: bool = False  # the reset handler and the counter enable CP10/CP11
    cpi: float | None = None
    cpi_source: str = ""
    qemu_cpu: str | None = None  # QEMU's -cpu name
    unicorn_cpu: str | None = None  # unicorn.arm_const model name (Cortex-M instruction counter)
    midr: Midr | None = None  # aarch64 cores: what /proc/cpuinfo and MIDR_EL1 report
    features: str = ""  # aarch64 /proc/cpuinfo "Features"

    @property
    def part(self) -> int:
        return self.midr.part if self.midr else 0

    @property
    def variant(self) -> int:
        return self.midr.variant if self.midr else 0

    @property
    def revision(self) -> int:
        return self.midr.revision if self.midr else 0


@dataclass(frozen=True)
class Board:
    """A QEMU machine the Cortex-M firmware runs on: the one ``-cpu`` QEMU accepts there ("This board can only
    be used with CPU ...") and spare RAM outside every budgeted region (from `info mtree`) for test vectors."""

    name: str
    cpu: str
    testio_origin: int


def _m(name: str, arch: str, flags: tuple[str, ...] = (), fpu: bool = False, cpi: float | None = None,
       unicorn: str | None = None) -> Core:
    qemu = name if name in ("cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55") else None  # QEMU's M profile
    return Core(name, MCU, arch, flags, fpu, cpi, _M_CPI_SOURCE if cpi else "", qemu, unicorn)


def _a(name: str, arch: str, midr: Midr | None = None, features: str = "") -> Core:
    return Core(name, LINUX, arch, qemu_cpu=name if midr else None, midr=midr, features=features)


_TABLE = (
    _m("cortex-m0plus", "armv6-m", ("-mcpu=cortex-m0plus", "-mfloat-abi=soft"), False, 1.4, "UC_CPU_ARM_CORTEX_M0"),
    _m("cortex-m3", "armv7-m", ("-mcpu=cortex-m3", "-mfloat-abi=soft"), False, round(1.3 * 3.42 / 3.34, 2),
       "UC_CPU_ARM_CORTEX_M3"),
    _m("cortex-m4", "armv7e-m", ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"), True, 1.3,
       "UC_CPU_ARM_CORTEX_M4"),
    _m("cortex-m7", "armv7e-m", ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"), True,
       round(1.3 * 3.42 / 5.01, 2), "UC_CPU_ARM_CORTEX_M7"),
    _m("cortex-m33", "armv8-m.main"),
    # -mcpu=cortex-m55 enables MVE (Helium) and the FPU; unicorn has no M55 model (QEMU's plugin counts it).
    _m("cortex-m55", "armv8.1-m.main", ("-mcpu=cortex-m55", "-mfloat-abi=hard"), True, round(1.3 * 3.42 / 4.2, 2)),
    _m("cortex-m85", "armv8.1-m.main"),
    _m("xtensa-lx7", "xtensa"),
    _m("riscv32", "riscv32"),
    _a("cortex-a53", "armv8-a", Midr(0xD03, 0x0, 4), "fp asimd evtstrm crc32 cpuid"),
    _a("cortex-a55", "armv8.2-a"),
    _a("cortex-a72", "armv8-a", Midr(0xD08, 0x0, 3), "fp asimd evtstrm crc32 cpuid"),
    _a("cortex-a76", "armv8.2-a", Midr(0xD0B, 0x4, 1), "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
       "asimdhp cpuid asimdrdm lrcpc dcpop asimddp"),
    _a("cortex-a78", "armv8.2-a"),
    _a("cortex-a510", "armv9-a"),
    _a("cortex-a520", "armv9-a"),
    _a("cortex-a715", "armv9-a"),
    _a("cortex-a720", "armv9-a"),
    _a("cortex-x3", "armv9-a"),
    _a("cortex-x4", "armv9-a"),
    _a("neoverse-n1", "armv8.2-a"),
)
CORES: dict[str, Core] = {c.name: c for c in _TABLE}

BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("mps2-an385", "cortex-m3", 0x21000000),
    Board("mps2-an386", "cortex-m4", 0x21000000),
    Board("mps2-an500", "cortex-m7", 0x60000000),
    Board("mps3-an547", "cortex-m55", 0x21000000),
)}


def names(klass: str) -> tuple[str, ...]:
    """Core names a profile of this class (MCU or LINUX) may name, in table order."""
    return tuple(c.name for c in _TABLE if c.klass == klass)


def cortex_m_cores() -> dict[str, Core]:
    """Cores edgekd can build firmware for (they have arm-none-eabi-gcc flags)."""
    return {c.name: c for c in _TABLE if c.gcc_flags}


def aarch64_cores() -> dict[str, Core]:
    """Cores the qemu-aarch64 emulator can stand in for (QEMU has the model, the table has its MIDR)."""
    return {c.name: c for c in _TABLE if c.midr is not None and c.qemu_cpu}
