"""Instructions per invoke of a linked Cortex-M firmware, counted with the ``unicorn`` engine.

QEMU 7.2 has no cycle counter, so the firmware's ``edgekd_invoke`` runs once under unicorn (same ISA) with only
the budgeted flash and RAM mapped (plus the test-vector region): an access outside them faults. The count times
the core's CPI from :mod:`edgekd.cores` is *counted* time: an approximation, not a measurement.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekd.codegen.board import BoardBuild, board_layout, core_spec
from edgekd.errors import EdgekdError
from edgekd.targets import Target


def thumb_count(code: bytes) -> int:
    """Instructions in a block of Thumb code: halfwords starting 0b11101/0b11110/0b11111 open a 32-bit one."""
    n, i = 0, 0
    while i + 1 < len(code):
        hw = code[i] | (code[i + 1] << 8)
        i += 4 if (hw >> 11) in (0b11101, 0b11110, 0b11111) else 2
        n += 1
    return n


def load_invoke(build: BoardBuild, target: Target,
                sample: np.ndarray) -> tuple[Any, int, int, dict[str, tuple[int, int]]]:
    """A unicorn engine with the firmware loaded, only its budgeted regions (and the test-vector region) mapped,
    set up to call ``edgekd_invoke(x, y)`` on ``sample``: (engine, entry, return address, symbol -> (value,
    size))."""
    spec = core_spec(target)
    try:
        import unicorn
    except ImportError as e:
        raise EdgekdError("unicorn is not installed: pip install unicorn (it counts instructions)") from e
    from elftools.elf.elffile import ELFFile
    from unicorn import arm_const

    def page(n: int) -> int:
        return (n + 0xFFF) & ~0xFFF

    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(getattr(arm_const, str(spec.unicorn_cpu)))
    lay = board_layout(target)
    testio = lay.testio.origin
    for region in (*lay.flash_regions(), lay.ram, lay.testio):
        uc.mem_map(region.origin, page(region.size))
    symbols: dict[str, tuple[int, int]] = {}
    with build.elf.open("rb") as f:
        elf = ELFFile(f)
        for s in elf.iter_sections():
            if s["sh_flags"] & 0x2 and s["sh_type"] == "SHT_PROGBITS" and s["sh_size"]:
                uc.mem_write(s["sh_addr"], s.data())
        for sym in elf.get_section_by_name(".symtab").iter_symbols():
            symbols[sym.name] = (sym["st_value"], sym["st_size"])
    if spec.fpu:
        uc.reg_write(arm_const.UC_ARM_REG_C1_C0_2, uc.reg_read(arm_const.UC_ARM_REG_C1_C0_2) | (0xF << 20))
    x_at, y_at, ret = testio, testio + 0x10000, testio + 0x20000
    uc.mem_write(x_at, np.ascontiguousarray(sample, dtype=np.int8).tobytes())
    uc.mem_write(ret, b"\x00\xbf" * 4)  # NOPs; emulation stops when the invoke returns here
    uc.reg_write(arm_const.UC_ARM_REG_SP, symbols["_estack"][0])
    uc.reg_write(arm_const.UC_ARM_REG_R0, x_at)
    uc.reg_write(arm_const.UC_ARM_REG_R1, y_at)
    uc.reg_write(arm_const.UC_ARM_REG_LR, ret | 1)
    return uc, symbols["edgekd_invoke"][0] & ~1, ret, symbols


def count_instructions(build: BoardBuild, target: Target, sample: np.ndarray) -> int | None:
    """Guest instructions for one ``edgekd_invoke`` under unicorn (None for cores unicorn lacks, e.g. M55)."""
    if core_spec(target).unicorn_cpu is None:
        return None
    import unicorn

    uc, entry, ret, _ = load_invoke(build, target, sample)
    cache: dict[tuple[int, int], int] = {}
    total = [0]

    def on_block(engine: Any, address: int, size: int, _: Any) -> None:
        key = (address, size)
        if key not in cache:
            cache[key] = thumb_count(bytes(engine.mem_read(address, size)))
        total[0] += cache[key]

    uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    uc.emu_start(entry | 1, ret)
    return total[0]
