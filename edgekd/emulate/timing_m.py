"""Cycles of a Cortex-M4 / M7 invoke from its executed instruction stream: a per-class timing table, not one CPI.

The firmware runs under unicorn (as :mod:`edgekd.emulate.count` does, only the budgeted memory mapped); every
executed basic block is charged from a static table of its instructions (read from ``arm-none-eabi-objdump``)
and every taken branch pays a pipeline refill. Per core:

Cortex-M4 (Arm Cortex-M4 Technical Reference Manual r0p1, 3.3.1 "Cortex-M4 instruction set summary", table 3-1):
data processing, shifts, SSAT/USAT, SXTB16/SXTAB16, MUL/MLA/MLS, SMULL/SMLAL, SMLAD/SMLABB/SMMUL...: 1 cycle
(the M4 has a single-cycle 32x32 MAC); a single LDR/STR 2 cycles, 1 when it directly follows another single load
or store whose loaded register is not its base ("neighboring load and store single instructions can pipeline
their address and data phases"); LDM/STM/PUSH/POP 1 + N registers (+ refill when POP loads the PC); LDRD/STRD
1 + 2; a taken branch (B, BL, BX, CBZ/CBNZ, POP {pc}) 1 + P where P, the refill, is 1, plus 1 when the target
is a 32-bit instruction that is not word aligned (the TRM gives P = 1-3 "depending on the alignment and width
of the target instruction"); a not-taken conditional branch 1; IT folded (0) after a 16-bit instruction, else 1;
SDIV/UDIV 2-12, charged 7.

Cortex-M7 (Cortex-M7 Processor Technical Reference Manual r1p2, 1.2 "Features": six-stage superscalar pipeline
with in-order dual issue; branch prediction (BTAC)): the M4 table, loads pipelined (1 cycle), predicted branches
1 cycle, and two consecutive instructions issue together when they are not both loads/stores, not both
multiplies/MACs, the second is not a branch, and the second does not read the first's result (a simplification
of the M7's documented pairing rules; Arm publishes no full cycle table for the M7).

Flash: loads of constants (weights, multipliers, literal pools) from the FLASH region go through a small
least-recently-used read cache and pay the profile's flash wait states on a miss (:data:`FLASH`, with its source
per profile); instruction fetch is assumed hidden by the prefetch buffer / instruction cache (inner loops are a
few hundred bytes).

Not modelled: caches (no data-cache misses beyond the flash line above; no I-cache misses), bus contention
(DMA, the other AHB masters), write buffers, interrupts, the M7's TCM vs AXI timing, its load-use latency and
branch mispredictions. Everything is deterministic: same firmware and input, same cycles. Checked against loops
whose Cortex-M4 timing the TRM states by scripts/validate_cycles.py (:func:`loop_cycles`; docs/benchmarks.md).
Per-call counts on cores without a table (the M0+) come from :func:`count_segments`: the planner's per-operator
cycle costs are fitted on them and on :func:`time_invoke`'s (scripts/calibrate_costs.py).
"""

from __future__ import annotations

import re
import subprocess
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.codegen.board import BoardBuild, board_layout
from edgekd.emulate.count import load_invoke
from edgekd.errors import EdgekdError
from edgekd.targets import Target
from edgekd.tools import require_tool

CYCLE_MODEL_CORES = ("cortex-m4", "cortex-m7")


@dataclass(frozen=True)
class FlashTiming:
    """Flash wait states at the profile's clock, and the read cache in front of the flash for data (constants):
    ``cache_lines`` lines of ``line_bytes``, least-recently-used; a miss pays ``wait_states`` per flash word
    of ``word_bytes`` in the line. ``source`` says where each figure comes from."""

    wait_states: int
    line_bytes: int
    cache_lines: int
    word_bytes: int
    source: str

    @property
    def miss_cycles(self) -> int:
        return self.wait_states * (self.line_bytes // self.word_bytes)


FLASH: dict[str, FlashTiming] = {
    "nrf52840-dk": FlashTiming(
        0, 16, 1, 16, "nRF52840 Product Specification v1.8 (64 MHz Cortex-M4 executing from flash with its "
        "cache): no wait-state figure is published for data reads, so none is modelled"),
    "stm32l4r5-120mhz": FlashTiming(
        5, 8, 8, 8, "wait states: RM0432 (STM32L4+ reference manual), 'Read access latency': 5 wait states at "
        "120 MHz in range 1 boost mode, 64-bit flash words; the ART data cache is modelled as 8 lines of one "
        "64-bit word (assumed geometry, not checked against the manual)"),
}
DEFAULT_FLASH = FlashTiming(0, 16, 1, 16, "no cited figure for this profile: flash wait states not modelled")


@dataclass(frozen=True)
class Insn:
    size: int
    mnemonic: str
    operands: str
    klass: str
    regs: int = 0  # LDM/STM/PUSH/POP register count
    dest: str = ""
    base: str = ""
    reads: tuple[str, ...] = ()


@dataclass
class Segment:
    """One top-level call of ``edgekd_invoke`` (a kernel) with its instructions and cycles."""

    function: str
    instructions: int = 0
    cycles: int = 0


@dataclass
class Timed:
    """One invoke: totals, per-call segments, how the cycles were modelled."""

    core: str
    instructions: int
    cycles: int
    flash_wait_cycles: int
    flash: FlashTiming
    segments: list[Segment] = field(default_factory=list)

    @property
    def cpi(self) -> float:
        return self.cycles / max(self.instructions, 1)

    def ms(self, clock_mhz: float) -> float:
        return self.cycles / (clock_mhz * 1e3)


_LOADS = re.compile(r"^(ldr|str)(b|h|sb|sh|ex|exb|exh|t|bt|ht|sbt|sht)?$")
_MULTI = re.compile(r"^(ldm|stm|push|pop|vpush|vpop)")
_BRANCH = re.compile(r"^(b|bl|blx|bx|cbz|cbnz|tbb|tbh)$|^b(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)$")
_COND = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le")
_MAC = re.compile(r"^(mul|mla|mls|smul|umul|smla|umla|smmul|smmla|smmls|smlad|smlsd|smuad|smusd|umaal|smlal)")
_REG = re.compile(r"\b(r\d+|sl|fp|ip|sp|lr|pc)\b")
_LINE = re.compile(r"^\s*([0-9a-f]+):\s+([0-9a-f]{4})(?: ([0-9a-f]{4}))?\s+(\S+)\s*(.*)$")


def _classify(mnemonic: str, operands: str, size: int) -> Insn:
    m = mnemonic.split(".")[0]
    regs = _REG.findall(operands.split(";")[0].split("@")[0])
    dest = regs[0] if regs else ""
    if _MULTI.match(m):
        n = len(register_list(operands))
        klass = "pop_pc" if m.startswith(("pop", "ldm")) and "pc" in register_list(operands) else "multi"
        return Insn(size, m, operands, klass, n, dest)
    if m in ("ldrd", "strd"):
        return Insn(size, m, operands, "double", 2, dest, regs[2] if len(regs) > 2 else "", tuple(regs[1:]))
    base = m.rstrip("w")
    if _LOADS.match(m) or _LOADS.match(base):
        inner = re.search(r"\[(.*?)\]", operands)
        addr_regs = _REG.findall(inner.group(1)) if inner else []
        load = m.startswith("ldr")
        if load and dest == "pc":
            return Insn(size, m, operands, "branch_load", 0, dest)
        return Insn(size, m, operands, "load" if load else "store", 0, dest if load else "",
                    addr_regs[0] if addr_regs else "", tuple(addr_regs + ([] if load else regs[:1])))
    if _BRANCH.match(m):
        return Insn(size, m, operands, "branch")
    if m.startswith("it"):
        return Insn(size, m, operands, "it")
    if m in ("sdiv", "udiv"):
        return Insn(size, m, operands, "div", 0, dest, "", tuple(regs[1:]))
    if m in ("mov", "add") and dest == "pc":
        return Insn(size, m, operands, "branch")
    if _MAC.match(m):
        return Insn(size, m, operands, "mac", 0, dest, "", tuple(regs[1:]))
    cond = len(m) > 2 and m[-2:] in _COND and m[:-2] in ("mov", "add", "sub", "and", "orr", "eor", "cmp", "movs")
    return Insn(size, m, operands, "alu_cond" if cond else "alu", 0, dest, "", tuple(regs[1:]))


def register_list(operands: str) -> list[str]:
    """The registers of an LDM/STM/PUSH/POP/VPUSH list, ranges expanded: ``{r4-r6, lr}`` -> r4, r5, r6, lr;
    ``{d8-d9}`` -> d8, d9 (the M55 model reads the same lists)."""
    inner = re.search(r"\{(.*?)\}", operands)
    if not inner:
        return []
    out: list[str] = []
    for part in inner.group(1).split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (p.strip() for p in part.split("-"))
            out += [f"{lo[0]}{k}" for k in range(int(lo[1:]), int(hi[1:]) + 1)]
        elif part:
            out.append(part)
    return out


def disassemble(elf: Path) -> dict[int, Insn]:
    """Address -> instruction of every instruction in the firmware's code (from arm-none-eabi-objdump)."""
    objdump = require_tool("arm-none-eabi-objdump", "gcc-arm-none-eabi")
    raw = subprocess.run([objdump, "-d", str(elf)], capture_output=True, text=True).stdout
    insns: dict[int, Insn] = {}
    for line in raw.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        addr, first, second, mnemonic, operands = m.groups()
        if mnemonic.startswith(".") or mnemonic in ("UNDEFINED",):
            continue
        size = 4 if second else 2
        insns[int(addr, 16)] = _classify(mnemonic, operands, size)
    return insns


def _block_cost(insns: list[Insn], core: str) -> int:
    """Cycles of a straight run of instructions, before any taken-branch refill."""
    cycles, prev = 0, None
    m7 = core == "cortex-m7"
    paired = False
    for ins in insns:
        k = ins.klass
        if k in ("load", "store"):
            pipelined = prev is not None and prev.klass in ("load", "store") and not (
                prev.klass == "load" and prev.dest and prev.dest == ins.base)
            c = 1 if (pipelined or m7) else 2
        elif k == "double":
            c = 3 if not m7 else 2
        elif k in ("multi", "pop_pc"):
            c = 1 + ins.regs
        elif k == "it":
            c = 0 if (prev is not None and prev.size == 2) or m7 else 1
        elif k == "div":
            c = 7
        else:  # alu, mac, branch (the not-taken cost; taken adds the refill at run time)
            c = 1
        if m7 and prev is not None and not paired and _dual(prev, ins):
            c = max(0, c - 1)
            paired = True
        else:
            paired = False
        cycles += c
        prev = ins
    return cycles


def _dual(a: Insn, b: Insn) -> bool:
    """Whether the M7 may issue ``b`` together with ``a`` (a simplification of its pairing rules)."""
    mem = ("load", "store", "double", "multi", "pop_pc")
    if a.klass in mem and b.klass in mem or a.klass == b.klass == "mac":
        return False
    if b.klass in ("branch", "pop_pc", "branch_load", "div", "it") or a.klass in ("div", "branch"):
        return False
    return not (a.dest and (a.dest in b.reads or a.dest == b.base))


def taken_refill(core: str, target: Insn | None, address: int) -> int:
    """Cycles a taken branch adds to reach ``address``: the M4's refill P = 1, plus 1 when the target is a 32-bit
    instruction that is not word aligned; the M7 predicts the branch (0), the alignment cycle stays."""
    extra = 1 if target is not None and target.size == 4 and address % 4 else 0
    return (0 if core == "cortex-m7" else 1) + extra


def loop_cycles(insns: dict[int, Insn], start: int, end: int, core: str) -> int:
    """Cycles of one iteration of the loop from ``start`` to its backward branch at ``end``, charged as a run
    charges it (the body's table cost + the taken branch's refill). Why: the table can then be checked against
    loops whose timing the TRM states."""
    body = [insns[a] for a in sorted(insns) if start <= a <= end]
    return _block_cost(body, core) + taken_refill(core, insns.get(start), start)


def flash_timing(target: Target) -> FlashTiming:
    """The profile's flash wait states (0, 'not in edgekd's table', for profiles without a cited figure)."""
    return FLASH.get(target.name, DEFAULT_FLASH)


def time_invoke(build: BoardBuild, target: Target, sample: np.ndarray, flash: FlashTiming | None = None) -> Timed:
    """Run one ``edgekd_invoke`` under unicorn and charge every executed instruction from the core's table."""
    core = target.cpu.core
    if core not in CYCLE_MODEL_CORES:
        raise EdgekdError(f"{target.name}: the cycle model covers the Cortex-M4 and M7, not {core}; "
                          "its figure stays instructions x CPI")
    return _walk(build, target, sample, flash or flash_timing(target), True)


def count_segments(build: BoardBuild, target: Target, sample: np.ndarray) -> Timed:
    """Instructions per kernel call on a core unicorn runs but the cycle table does not cover (the M0+, M3):
    each segment's cycles are its instructions x the core's CPI (:mod:`edgekd.cores`), the figure edgekd's
    counted latency uses for those cores. Why: per-layer counts to calibrate the planner's cost model on."""
    from edgekd.codegen.board import core_spec

    spec = core_spec(target)
    if spec.unicorn_cpu is None or not spec.cpi:
        raise EdgekdError(f"{target.name}: unicorn has no model of {target.cpu.core}; count it with QEMU's plugin")
    timed = _walk(build, target, sample, DEFAULT_FLASH, False)
    for seg in timed.segments:
        seg.cycles = round(seg.instructions * spec.cpi)
    timed.cycles = sum(seg.cycles for seg in timed.segments)
    return timed


def _walk(build: BoardBuild, target: Target, sample: np.ndarray, flash: FlashTiming, charge: bool) -> Timed:
    """One invoke under unicorn, split per top-level kernel call; ``charge``: cycles from the M4/M7 table."""
    import unicorn

    core = target.cpu.core if charge else ""
    insns = disassemble(build.elf)
    uc, entry, ret, symbols = load_invoke(build, target, sample)
    functions = {addr & ~1: name for name, (addr, _) in symbols.items() if name.startswith("ek_")}
    invoke_lo, invoke_size = symbols["edgekd_invoke"]
    invoke_lo &= ~1
    invoke_hi = invoke_lo + invoke_size
    block_cache: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    state = {"insns": 0, "cycles": 0, "pending": 0, "fall": -1, "seg": Segment("edgekd_invoke"), "wait": 0}
    cache: OrderedDict[int, None] = OrderedDict()
    segments: list[Segment] = [state["seg"]]  # type: ignore[list-item]
    lay = board_layout(target)
    flash_lo, flash_hi = lay.flash.origin, lay.flash.end

    def cost(address: int, size: int) -> tuple[int, int, int, int]:
        key = (address, size)
        if key not in block_cache:
            run, a = [], address
            while a < address + size and a in insns:
                run.append(insns[a])
                a += insns[a].size
            last = run[-1] if run else None
            refill = 0
            if last is not None and last.klass in ("branch", "pop_pc", "branch_load"):
                refill = 1
            block_cache[key] = (len(run), _block_cost(run, core) if charge else 0, address + size,
                                refill if charge else 0)
        return block_cache[key]

    def on_block(engine: Any, address: int, size: int, _: Any) -> None:
        n, c, fall, refill = cost(address, size)
        if state["pending"] and address != state["fall"]:  # the previous block's branch was taken
            refill = taken_refill(core, insns.get(address), address)
            state["cycles"] += refill
            state["seg"].cycles += refill
        if address in functions:
            lr = engine.reg_read(unicorn.arm_const.UC_ARM_REG_LR) & ~1
            if invoke_lo <= lr < invoke_hi:
                state["seg"] = Segment(functions[address])
                segments.append(state["seg"])
        state["insns"] += n
        state["cycles"] += c
        state["seg"].instructions += n
        state["seg"].cycles += c
        state["pending"], state["fall"] = refill, fall

    def on_read(engine: Any, access: int, address: int, size: int, value: int, _: Any) -> None:
        line = address // flash.line_bytes
        if line in cache:
            cache.move_to_end(line)
            return
        cache[line] = None
        if len(cache) > flash.cache_lines:
            cache.popitem(last=False)
        state["wait"] += flash.miss_cycles
        state["seg"].cycles += flash.miss_cycles

    uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    if flash.wait_states and charge:
        uc.hook_add(unicorn.UC_HOOK_MEM_READ, on_read, begin=flash_lo, end=flash_hi - 1)
    uc.emu_start(entry | 1, ret)
    return Timed(target.cpu.core, int(state["insns"]), int(state["cycles"]) + int(state["wait"]),
                 int(state["wait"]), flash, [seg for seg in segments if seg.instructions])
