"""The Cortex-M emulator's per-core and per-board tables, kept free of heavy imports.

``cortex_m.py`` imports the exporters (hence torch); target profiles are validated against these tables
(:func:`edgekd.targets.parse_target`), so a profile naming a core or QEMU board the emulator cannot run fails
at ``targets validate`` instead of late in a build.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CoreSpec:
    """How to build for a core, and the cycles per instruction assumed for counted time.

    CPI is an approximation for this scalar integer code (int8 MACs, loads, branches), anchored on the
    Cortex-M4: its Technical Reference Manual gives LDR 2 cycles (1 when pipelined), MUL/MLA 1, taken branches
    1 + refill (1-3), hence ~1.3 for load-heavy loops. Other cores scale it by Arm's published CoreMark/MHz
    (M0+ 2.46, M3 3.34, M4 3.42, M7 5.01, M55 4.2): the same C compiles to similar instruction counts on
    Armv7-M/Armv8-M, so cycles scale with 1/(CoreMark/MHz). The M0+ (Armv6-M) needs more instructions for the
    same work, which the count already includes, so its CPI comes from its own timings (2-cycle loads and
    taken branches, single-cycle multiplier on RP2040): ~1.4. Cross-check on a published anchor: MLPerf Tiny
    v1.0 DS-CNN keyword spotting ran in 99.8 ms on a 120 MHz Cortex-M4 (NUCLEO-L4R5ZI, CMSIS-NN) and 16.8 ms
    on a 280 MHz Cortex-M7 (STM32H7A3, X-CUBE-AI); those libraries use SIMD (SMLAD) and are several times
    faster per MAC than these portable kernels, so counted times here are an upper-side estimate of what
    this C would take, not of what an optimised runtime achieves.
    """

    gcc_flags: tuple[str, ...]
    fpu: bool
    cpi: float
    unicorn_cpu: str | None


CORES: dict[str, CoreSpec] = {
    "cortex-m0plus": CoreSpec(("-mcpu=cortex-m0plus", "-mfloat-abi=soft"), False, 1.4, "UC_CPU_ARM_CORTEX_M0"),
    "cortex-m3": CoreSpec(("-mcpu=cortex-m3", "-mfloat-abi=soft"), False, round(1.3 * 3.42 / 3.34, 2),
                          "UC_CPU_ARM_CORTEX_M3"),
    "cortex-m4": CoreSpec(("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"), True, 1.3,
                          "UC_CPU_ARM_CORTEX_M4"),
    "cortex-m7": CoreSpec(("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"), True,
                          round(1.3 * 3.42 / 5.01, 2), "UC_CPU_ARM_CORTEX_M7"),
    # -mcpu=cortex-m55 enables MVE (Helium) and the FPU; unicorn has no M55 model, so no count there.
    "cortex-m55": CoreSpec(("-mcpu=cortex-m55", "-mfloat-abi=hard"), True, round(1.3 * 3.42 / 4.2, 2), None),
}


@dataclass(frozen=True)
class Board:
    """A QEMU machine the firmware runs on: the one ``-cpu`` QEMU accepts there ("This board can only be used
    with CPU ...") and spare RAM outside every budgeted region (from `info mtree`) for the test vectors."""

    cpu: str
    testio_origin: int


BOARDS: dict[str, Board] = {
    "mps2-an385": Board("cortex-m3", 0x21000000),
    "mps2-an386": Board("cortex-m4", 0x21000000),
    "mps2-an500": Board("cortex-m7", 0x60000000),
    "mps3-an547": Board("cortex-m55", 0x21000000),
}
