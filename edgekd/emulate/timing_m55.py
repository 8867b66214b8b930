"""Cycles of a Cortex-M55 invoke from its executed instruction stream: beat-wise MVE timing, not one CPI.

QEMU's ``mps3-an547`` runs the firmware; edgekd's TCG plugin ``native/tb_profile.c`` records, per translated
block, how often it ran and how often it was left by a taken branch. The firmware runs once with one copy of the
input and once with two, and the difference of the per-block counts is one invoke (as
:func:`edgekd.emulate.cortex_m.count_on_qemu` does for the instruction total). Each block's instructions come from
``arm-none-eabi-objdump -m armv8.1-m.main`` of the ELF and are charged by an in-order pipeline model:

Sources. Arm publishes no Cortex-M55 cycle table in its TRM; the figures below are those of LLVM's Cortex-M55
scheduling model (``llvm/lib/Target/ARM/ARMScheduleM55.td``, written by Arm; its pipelines, beats and latencies)
and of SLOTHY's Cortex-M55 model (``slothy/targets/arm_v81m/cortex_m55r1.py``, Arm and H. Becker; scalar loads
share the load/store pipe). Both say their data are approximate.

- Issue: one instruction per cycle, in order. Two 16-bit instructions issue together when one of them is an
  ADD/SUB immediate, MOV immediate/register, UXT/SXT, IT or NOP (ARMScheduleM55.td, "Dual Issue") and the second
  does not read the first's result.
- MVE (dual-beat): each 128-bit vector instruction takes two beats, 64 bits a cycle, so it holds its pipeline
  (load/store, integer, float/multiply or control) for 2 cycles; the next instruction issues one cycle later and
  overlaps the second beat when it needs a different pipeline (VLDR; VADD; VMUL; VSTR takes 5 cycles, two
  VLDRs back to back 4: the td file's two diagrams). A scalar instruction also fits in a vector instruction's
  second beat (MVE instructions use one issue slot).
- Pipelines and result latencies (cycles from issue to a dependent instruction's issue): VLDR/VSTR/VLD2x/VLD4x
  load/store, 1 (VLD2x/VLD4x 2); VADD/VSUB/VAND/VORR/VEOR/VMVN/VDUP/VSHL/VSHR/VMAX/VMIN/VMOVL/VPSEL/VQADD/VIDUP
  integer, 1; VRSHL/VQRSHL/VRSHR/VMAXV/VMINV (8-bit) integer, 2 (16-bit 3, 32-bit 4); VMOVN/VQMOVN/VSHRN 3;
  VABAV 3; VMUL/VQDMULH/VQRDMULH/VMLA/VMLADAV(A)/VMLAV(A)/VADDV/VCMP/VMOV lane float/multiply pipe, 2
  (VCMP/VPT and VMOV lane 1; VMLALDAV 3); VCTP/VPST/VPNOT control, 1 cycle, one beat.
- Scalar: ALU 1 cycle, result next cycle; a shifted-register operand, MUL/MLA/SMLAD/SMULL/SMMUL, SSAT/QADD/BFX,
  LDR (load-use) have a 2-cycle result; LDR/STR hold the load/store pipe 1 cycle (SLOTHY), LDRD/STRD 2;
  LDM/STM/PUSH/POP 1 + ceil(N/2) cycles (N registers over the M55's 64-bit data interface: an assumption);
  VPUSH/VPOP/VLDM/VSTM 1 + D registers; SDIV/UDIV 2-12, charged 7 (as the M4).
- Branches: a taken branch (B, BL, BX, CBZ, POP {pc}) pays a refill of 3 cycles (ARMScheduleM55.td's
  MispredictPenalty; edgekd treats every taken branch as unpredicted); LE/LETP take no issue slot and no refill
  (Armv8.1-M's low-overhead loop: after the first iteration the core branches from its loop cache without
  executing LE; the first iteration's LE is not charged separately). A vector store reads data produced by a
  2-cycle (E3) vector instruction one cycle early (ARMScheduleM55.td, M55Read1).

A block's cycles are charged in steady state: its instructions are run through the model twice in a row and
the second pass is charged, so a loop's carried dependences and a pipeline still busy with the previous
iteration's second beat are counted (for a block that is not a loop the previous block is assumed to look like
it). Not modelled: the VSTR -> VLDR hazard (SLOTHY's ST-LD stall), memory wait states and TCM vs external memory,
caches, bus contention, interrupts, the refill draining pending beats, and which memory a load reads.
Deterministic: same firmware and input, same cycles. Checked on loops in docs/benchmarks.md
(scripts/validate_cycles_m55.py).
"""

from __future__ import annotations

import bisect
import math
import re
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.codegen.board import BoardBuild
from edgekd.emulate.timing_m import FlashTiming, Segment, Timed, register_list
from edgekd.errors import EdgekdError
from edgekd.targets import Target
from edgekd.tools import require_tool

CORE = "cortex-m55"
TAKEN_REFILL = 3
SOURCE = ("edgekd.emulate.timing_m55 (Cortex-M55 dual-beat MVE and scalar timing from LLVM's ARMScheduleM55.td "
          "and SLOTHY's Cortex-M55 model; per translated block counts from edgekd's QEMU plugin tb_profile)")
FLASH_M55 = FlashTiming(0, 16, 1, 16, "not modelled on the M55: code and constants are charged as if in "
                        "zero-wait-state TCM (the Alif E3's MRAM wait states are not in edgekd's table)")

_LINE = re.compile(r"^\s*([0-9a-f]+):\s+([0-9a-f]{4})(?: ([0-9a-f]{4}))?\s+(\S+)\s*(.*)$")
_REG = re.compile(r"\b(r\d+|sl|fp|ip|sp|lr|pc|q\d|d\d+|s\d+)\b")
_ALIAS = {"sl": "r10", "fp": "r11", "ip": "r12"}

# MVE: base mnemonic (no type suffix, no VPT 't'/'e') -> (pipeline, latency); 2 beats each unless in _ONE_BEAT.
_VEC: dict[str, tuple[str, int]] = {}
for _names, _pipe, _lat in (
        ("vldrb vldrh vldrw vldrd vstrb vstrh vstrw vstrd", "ls", 1),
        ("vld20 vld21 vld40 vld41 vld42 vld43 vst20 vst21 vst40 vst41 vst42 vst43", "ls", 2),
        ("vadd vsub vand vorr vorn veor vbic vmvn vdup vshl vshr vmax vmin vmaxa vmina vmovlb vmovlt vpsel vqadd "
         "vqsub vabs vneg vqabs vqneg vrev16 vrev32 vrev64 vhadd vhsub vrhadd vabd vclz vcls vsli vsri vidup vddup "
         "viwdup vdwdup vshlc vadc vsbc vbrsr vshllb vshllt", "int", 1),
        ("vrshl vqrshl vqshl vrshr vqshlu vmaxv vminv vmaxav vminav", "int", 2),
        ("vmovnb vmovnt vqmovnb vqmovnt vqmovunb vqmovunt vshrnb vshrnt vrshrnb vrshrnt vqshrnb vqshrnt vqrshrnb "
         "vqrshrnt vabav", "int", 3),
        ("vmul vmulh vrmulh vqdmulh vqrdmulh vmla vmlas vqdmlah vqrdmlah vqdmladh vqrdmladh vqdmlsdh vqrdmlsdh "
         "vmladav vmladava vmlav vmlava vmlsdav vmlsdava vmladavx vmladavax vaddv vaddva vmullb vmullt vqdmullb "
         "vqdmullt vfma vfms vcvt vcmul vcmla vcadd", "mul", 2),
        ("vcmp vpt vpte vptt vptee vptet vptte vpttt vpteee", "mul", 1),
        ("vmlaldav vmlaldava vmlsldav vmlsldava vrmlaldavh vrmlaldavha vaddlv vaddlva", "mul", 3),
        ("vctp vpst vpste vpstt vpstee vpstet vpstte vpsttt vpnot vmsr vmrs", "sys", 1)):
    for _n in _names.split():
        _VEC[_n] = (_pipe, _lat)
_ONE_BEAT = {"vctp", "vpst", "vpste", "vpstt", "vpstee", "vpstet", "vpstte", "vpsttt", "vpnot", "vmsr", "vmrs"}
_DUAL = re.compile(r"^(adds?|subs?|movs?|uxt[bh]|sxt[bh]|it[te]*|nop)$")
_LONG_SCALAR = re.compile(r"^(mul|mla|mls|smul|umul|smla|umla|smmul|smmla|smmls|smlad|smlsd|smuad|smusd|umaal|"
                          r"smlal|ssat|usat|qadd|qsub|qdadd|qdsub|sbfx|ubfx|sxtab|uxtab|sxtah|uxtah|sel|"
                          r"[su]add|[su]sub|[su]asx|[su]sax|uq|sq)")
_COND = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al")


@dataclass(frozen=True)
class Op:
    """One instruction as the M55 model sees it."""

    size: int
    mnemonic: str
    pipe: str  # "ls" "int" "mul" "sys" (MVE/FP), "lsu" (scalar memory), "alu"
    beats: int  # cycles the pipeline is held
    issue: int  # issue slots (LDM/STM, SDIV take several)
    latency: int
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    dual: bool = False  # may pair with a neighbouring 16-bit instruction
    branch: str = ""  # "" / "b" (may be taken) / "le" (low-overhead loop end)


def _regs(text: str) -> list[str]:
    out = []
    for r in _REG.findall(text):
        r = _ALIAS.get(r, r)
        if r[0] == "d":
            r = f"q{int(r[1:]) // 2}"
        elif r[0] == "s" and r != "sp":
            r = f"q{int(r[1:]) // 4}"
        out.append(r)
    return out


def _vec_base(m: str) -> str:
    base = m.split(".")[0]
    if base in _VEC:
        return base
    if base[-1:] in ("t", "e") and base[:-1] in _VEC:  # VPT-predicated forms: vldrbt, vstrbe
        return base[:-1]
    return base


def classify(mnemonic: str, operands: str, size: int) -> Op:
    """The M55 timing of one instruction (objdump's mnemonic and operands)."""
    ops = operands.split(";")[0].split("@")[0].split("<")[0]
    m = mnemonic.split(".")[0]
    regs = _regs(ops)
    wb = ("!" in ops or re.search(r"\],\s*#", ops) is not None)
    base_reg = _regs(ops[ops.index("["):])[:1] if "[" in ops else []
    if m in ("le", "letp"):
        return Op(size, m, "alu", 0, 0, 1, ("lr",), ("lr",), branch="le")
    if m in ("dls", "dlstp", "wls", "wlstp"):
        return Op(size, m, "alu", 1, 1, 1, tuple(regs[1:]), ("lr",), branch="b" if m.startswith("w") else "")
    if m in ("vpush", "vpop", "vldmia", "vstmia", "vldmdb", "vstmdb", "vldm", "vstm"):
        n = len(register_list(ops))
        d = n if "d" in ops.split("{")[-1][:2] else math.ceil(n / 2)
        return Op(size, m, "ls", 1 + d, 1 + d, 2, ("sp",), ("sp",))
    vb = _vec_base(m)
    if vb in _VEC:
        pipe, lat = _VEC[vb]
        beats = 1 if vb in _ONE_BEAT else 2
        store = vb.startswith(("vstr", "vst2", "vst4"))
        if vb.startswith(("vld2", "vld4")):
            writes = tuple(_regs(",".join(register_list(ops))))
        elif store or vb in ("vcmp", "vpst", "vpnot") or vb.startswith(("vpst", "vpt")):
            writes = ()
        else:
            writes = tuple(regs[:1])
        if wb and base_reg:
            writes += tuple(base_reg)
        in_place = vb in ("vrshl", "vqrshl", "vshl", "vqshl", "vshlc") and len(ops.split(",")) == 2  # Qda, Rm
        reads = tuple(regs if (store or in_place or vb.endswith("a") or vb.startswith(("vld2", "vld4"))
                               or not writes) else regs[1:])
        return Op(size, vb, pipe, beats, 1, lat, reads + (("vpr",) if mnemonic.split(".")[0] != vb else ()),
                  writes + (("vpr",) if vb.startswith(("vcmp", "vpt", "vctp")) else ()))
    if m == "vmov":  # lane moves and GPR pairs: the float/multiply pipe (the td file: VMOV_from_lane, VMOV_q_rr)
        return Op(size, m, "mul", 2 if "[" in ops else 1, 1, 1, tuple(regs[1:]), tuple(regs[:1]))
    if m.startswith("v"):  # scalar FP (VADD.F32 s0, ...): one beat on the float pipe, 2-cycle result
        return Op(size, m, "mul", 1, 1, 2, tuple(regs[1:]), tuple(regs[:1]))
    cond_branch = len(m) > 1 and m[0] == "b" and (m[1:] in _COND)
    if m in ("b", "bl", "blx", "bx", "cbz", "cbnz", "tbb", "tbh") or cond_branch:
        return Op(size, m, "alu", 1, 1, 1, tuple(regs), ("lr",) if m.startswith("bl") else (), branch="b")
    if m in ("ldm", "ldmia", "ldmdb", "stm", "stmia", "stmdb", "push", "pop"):
        lst = _regs(",".join(register_list(ops)))
        cyc = 1 + math.ceil(len(lst) / 2)
        load = m.startswith(("ldm", "pop"))
        return Op(size, m, "lsu", cyc, cyc, 2, tuple(regs[:1]) + (() if load else tuple(lst)),
                  (tuple(lst) if load else ()) + (tuple(regs[:1]) if ("!" in ops or m in ("push", "pop")) else ()),
                  branch="b" if load and "pc" in lst else "")
    stem = m.rstrip("w") if m.endswith(".w") else m
    core = re.sub(r"(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le)$", "", stem) if len(stem) > 3 else stem
    if core.startswith(("ldr", "str")) or stem.startswith(("ldr", "str")):
        load = core.startswith("ldr")
        double = core in ("ldrd", "strd")
        dest = regs[:2] if double else regs[:1]
        if load and "pc" in dest:
            return Op(size, m, "lsu", 1, 1, 2, tuple(regs[1:]), (), branch="b")
        reads = tuple(base_reg + _regs(ops[ops.index("[") + 1:]) if "[" in ops else regs[1:])
        return Op(size, m, "lsu", 2 if double else 1, 2 if double else 1, 2,
                  reads + (() if load else tuple(dest)), (tuple(dest) if load else ()) + (
                      tuple(base_reg) if wb else ()))
    if core in ("sdiv", "udiv"):
        return Op(size, m, "alu", 7, 7, 7, tuple(regs[1:]), tuple(regs[:1]))
    if m.startswith("it") and re.fullmatch(r"it[te]*", m):
        return Op(size, m, "alu", 1, 1, 1, (), (), dual=True)
    if (m in ("mov", "add", "sub") or core == "mov") and regs[:1] == ["pc"]:
        return Op(size, m, "alu", 1, 1, 1, tuple(regs[1:]), (), branch="b")
    nowrite = core in ("cmp", "cmn", "tst", "teq")
    shifted = re.search(r",\s*(lsl|lsr|asr|ror)\s*#", ops) is not None
    lat = 2 if (_LONG_SCALAR.match(core) or shifted) else 1
    if core in ("smull", "umull", "smlal", "umlal"):
        writes, reads = tuple(regs[:2]), tuple(regs[2:] + (regs[:2] if "al" in core else []))
    else:
        writes = () if nowrite else tuple(regs[:1])
        two_operand = len(ops.split(",")) <= 2 and not re.match(r"(mov|mvn|neg|rsb|[su]xt|rev|clz|rbit)", core)
        reads = tuple(regs if (nowrite or two_operand) else regs[1:])  # ADDS r1, #1 reads r1
    return Op(size, m, "alu", 1, 1, lat, reads, writes, dual=size == 2 and bool(_DUAL.match(core)))


def disassemble(elf: Path) -> dict[int, Op]:
    """Address -> the M55 timing of every instruction of the firmware (``objdump -m armv8.1-m.main``)."""
    objdump = require_tool("arm-none-eabi-objdump", "gcc-arm-none-eabi")
    raw = subprocess.run([objdump, "-d", "-m", "armv8.1-m.main", str(elf)], capture_output=True, text=True).stdout
    return parse_objdump(raw)


def parse_objdump(raw: str) -> dict[int, Op]:
    ops: dict[int, Op] = {}
    for line in raw.splitlines():
        m = _LINE.match(line)
        if not m or m.group(4).startswith(".") or m.group(4) == "UNDEFINED":
            continue
        ops[int(m.group(1), 16)] = classify(m.group(4), m.group(5), 4 if m.group(3) else 2)
    return ops


class _Pipe:
    """The model's state: next issue cycle, when each pipeline is free, when each register's value is ready."""

    def __init__(self) -> None:
        self.t = 0
        self.free: dict[str, int] = defaultdict(int)
        self.ready: dict[str, int] = defaultdict(int)
        self.ready_st: dict[str, int] = defaultdict(int)  # when a vector store may read it
        self.prev: Op | None = None
        self.prev_start = 0
        self.paired = False

    def run(self, op: Op) -> None:
        prev = self.prev
        if (prev is not None and not self.paired and op.size == 2 and prev.size == 2 and (op.dual or prev.dual)
                and op.pipe == prev.pipe == "alu" and not prev.branch and op.issue == prev.issue == 1
                and not set(prev.writes) & set(op.reads)):
            start = self.prev_start  # dual issue with the previous 16-bit instruction
            self.paired = True
        else:
            # a vector store reads data from a 2-cycle (E3) result a cycle early (ARMScheduleM55.td: M55Read1)
            store = op.pipe == "ls" and op.mnemonic.startswith("vst")
            start = max([self.t] + [self.ready_st[r] if store and r[0] == "q" else self.ready[r] for r in op.reads])
            if op.pipe != "alu":
                start = max(start, self.free[op.pipe])
            self.t = start + op.issue
            self.paired = False
        if op.pipe != "alu":
            self.free[op.pipe] = start + op.beats
        for r in op.writes:
            self.ready[r] = max(self.ready[r], start + op.latency)
            self.ready_st[r] = self.ready[r] - (1 if op.latency >= 2 and op.pipe in ("int", "mul") else 0)
        self.prev, self.prev_start = op, start


def block_cycles(ops: list[Op]) -> int:
    """Cycles of a straight run of instructions in steady state (the second of two passes), before any
    taken-branch refill."""
    p = _Pipe()
    for op in ops:
        p.run(op)
    first = p.t
    p.prev = None
    for op in ops:
        p.run(op)
    return p.t - first


def refill(last: Op | None) -> int:
    """Cycles a taken branch out of a block ending in ``last`` adds: none for LE/LETP (the loop is cached)."""
    return 0 if last is not None and last.branch == "le" else TAKEN_REFILL


def loop_cycles(ops: dict[int, Op], start: int, end: int) -> int:
    """Cycles of one iteration of the loop from ``start`` to its backward branch at ``end``, as a run charges
    it. Why: the model can be checked against loops whose timing is known."""
    body = [ops[a] for a in sorted(ops) if start <= a <= end]
    return block_cycles(body) + refill(body[-1] if body else None)


@dataclass
class Profile:
    """Per block (start, instructions, end): executions and taken exits, from tb_profile's output file."""

    blocks: dict[tuple[int, int, int], list[int]]

    @classmethod
    def read(cls, path: Path) -> Profile:
        blocks: dict[tuple[int, int, int], list[int]] = defaultdict(lambda: [0, 0])
        for line in path.read_text().splitlines():
            if line.startswith("tb "):
                _, start, n, end, count, taken = line.split()
                b = blocks[(int(start, 16), int(n), int(end, 16))]
                b[0] += int(count)
                b[1] += int(taken)
        return cls(dict(blocks))

    def minus(self, other: Profile) -> Profile:
        keys = set(self.blocks) | set(other.blocks)
        return Profile({k: [self.blocks.get(k, [0, 0])[i] - other.blocks.get(k, [0, 0])[i] for i in (0, 1)]
                        for k in keys})


def charge(profile: Profile, ops: dict[int, Op], functions: dict[int, str] | None = None) -> Timed:
    """Instructions and cycles of a block profile; one segment per function the blocks start in (named by
    ``functions``: start address -> name), in address order."""
    insns = cycles = 0
    per_fn: dict[str, Segment] = {}
    starts = sorted(functions or {})
    for (start, n, _end), (count, taken) in profile.blocks.items():
        if not count and not taken:
            continue
        run, a = [], start
        for _ in range(n):
            op = ops.get(a)
            if op is None:
                op = Op(2, "?", "alu", 1, 1, 1, (), ())
            run.append(op)
            a += op.size
        c = count * block_cycles(run) + taken * refill(run[-1])
        insns += count * n
        cycles += c
        if functions:
            i = bisect.bisect_right(starts, start) - 1
            name = functions[starts[i]] if i >= 0 else "?"
            seg = per_fn.setdefault(name, Segment(name))
            seg.instructions += count * n
            seg.cycles += c
    segs = sorted(per_fn.values(), key=lambda s: -s.cycles)
    return Timed(CORE, int(insns), int(cycles), 0, FLASH_M55, segs)


def _symbols(elf: Path) -> dict[int, str]:
    nm = require_tool("arm-none-eabi-nm", "gcc-arm-none-eabi")
    out: dict[int, str] = {}
    for line in subprocess.run([nm, str(elf)], capture_output=True, text=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT":
            out[int(parts[0], 16) & ~1] = parts[2]
    return out


def time_on_qemu(build: BoardBuild, target: Target, sample: np.ndarray, output_size: int, timeout: float) -> Timed:
    """One invoke of ``sample`` on the QEMU board, charged by the M55 model (runs of 1 and 2 samples, the
    difference of their per-block counts). Raises EdgekdError when the plugin cannot be built or run."""
    from edgekd.emulate import cache_dir
    from edgekd.emulate.cortex_m import plugin_runs
    from edgekd.emulate.qemu_plugin import build_plugin

    plugin = build_plugin(cache_dir() / "plugins", "tb_profile.c")
    if plugin is None:
        raise EdgekdError("QEMU's plugin header is missing (scripts/install_emulators.sh installs it)")
    one, two = plugin_runs(build, target, sample, output_size, timeout, plugin, Profile.read,
                           "wrote no block profile")
    elf = Path(build.elf)
    return charge(two.minus(one), disassemble(elf), _symbols(elf))


def read_phases(path: Path) -> dict[int, Profile]:
    """tb_profile's per-mark phases ("cb PHASE START N END COUNT TAKEN" lines), phase -> block profile."""
    phases: dict[int, dict[tuple[int, int, int], list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for line in path.read_text().splitlines():
        if line.startswith("cb "):
            _, ph, start, n, end, count, taken = line.split()
            b = phases[int(ph)][(int(start, 16), int(n), int(end, 16))]
            b[0] += int(count)
            b[1] += int(taken)
    return {k: Profile(dict(v)) for k, v in sorted(phases.items())}


@dataclass
class CallTiming:
    """One invoke's run split at the blocks of ``edgekd_invoke``: ``phases[0]`` before its first block, then one
    per block of it (the block and the kernel it calls), the last after it; ``total`` is the whole run."""

    phases: list[Timed]
    total: Timed

    def calls(self, ops: int) -> list[Timed] | None:
        """The ``ops`` kernel calls: the phases between marks less the first (the invoke's entry) and the last
        (its exit), as scripts/bench_kernels.py's instruction marks take them; None when the count differs."""
        between = self.phases[1:-1]
        return between[1:1 + ops] if len(between) == ops + 2 else None


def time_calls_on_qemu(build: BoardBuild, target: Target, sample: np.ndarray, output_size: int,
                       timeout: float) -> CallTiming:
    """One run of ``sample`` on the QEMU board with tb_profile marking every block of ``edgekd_invoke``, each
    phase charged by the M55 model. Why: per kernel call cycles, which add up to the run's cycles exactly (each
    block is charged the same way in every phase). Raises EdgekdError without the plugin or the symbol."""
    import tempfile

    from edgekd.emulate import cache_dir
    from edgekd.emulate.cortex_m import run_board
    from edgekd.emulate.qemu_plugin import build_plugin

    plugin = build_plugin(cache_dir() / "plugins", "tb_profile.c")
    if plugin is None:
        raise EdgekdError("QEMU's plugin header is missing (scripts/install_emulators.sh installs it)")
    elf = Path(build.elf)
    nm = require_tool("arm-none-eabi-nm", "gcc-arm-none-eabi")
    span = None
    for line in subprocess.run([nm, "-S", str(elf)], capture_output=True, text=True).stdout.splitlines():
        f = line.split()
        if len(f) == 4 and f[3] == "edgekd_invoke":
            span = (int(f[0], 16) & ~1, (int(f[0], 16) & ~1) + int(f[1], 16))
    if span is None:
        raise EdgekdError(f"{elf} has no edgekd_invoke symbol: build it with edgekd's board harness")
    with tempfile.TemporaryDirectory(prefix="edgekd-calls-") as tmp:
        out = Path(tmp) / "calls.txt"
        run = run_board(build, target, np.asarray(sample, np.int8)[None], output_size, timeout,
                        f"{plugin},out={out},lo={span[0]},hi={span[1]}")
        if not run.ok or not out.is_file():
            raise EdgekdError(f"the QEMU plugin wrote no per-call block profile ({run.error or 'no output'})")
        phases, total = read_phases(out), Profile.read(out)
    ops, fns = disassemble(elf), _symbols(elf)
    return CallTiming([charge(p, ops, fns) for p in phases.values()], charge(total, ops, fns))
