"""Cycles on a Cortex-A core from the executed instruction stream, by instruction class.

QEMU counts instructions, not cycles. One cycles-per-instruction factor per core is wrong whenever the mix
changes: int8 XNNPACK on a Cortex-A72 executes about as many instructions as fp32 (widening multiplies,
SMULL/SMLAL + SADALP, instead of FMLA) but runs about three times faster. So edgekd's QEMU plugin
(native/insn_class.c) counts each class separately, and this module turns a class vector into time:

1. **Pipe occupancy** (per class, from the core's Software Optimization Guide tables of "Exec throughput" and
   "Utilized pipelines"): every class occupies given pipes for given cycles; each pipe group's cycles are its
   load over its pipes. The modelled cycles are the busiest vector (FP/ASIMD) group + the load/store groups +
   the integer/branch groups, i.e. no overlap between the three kinds of pipe (never below instructions /
   decode width). An additive, not a max, bound: real kernels interleave loads with arithmetic only partly.
2. **A fitted factor per core and kernel kind** (measured cycles / modelled cycles): one for float kernels,
   fitted on MobileNet v1 fp32, one for integer kernels, fitted on MobileNet v1 int8 where a published
   int8 figure exists (scripts/calibrate_cpi.py -> docs/cpi_calibration.json); an invoke mixing both uses the
   mean weighted by each kind's vector-pipe cycles. Every other model is out of sample (docs/emulation.md).
   The integer factor is about half the float one on the Pi cores: fp32 moves four times the bytes, whose
   cache and DRAM misses the instruction stream does not show.
3. **Threads**: the count is one thread's work. N threads take ``(t1 - S) / N + S`` with ``S = operators x
   TAU_CYCLES / clock``: a serial part per operator (pthreadpool hand-off, barrier, the last tile's imbalance),
   fitted on XNNPACK's published Pixel 3a 1- and 2-thread MobileNet figures (S = 2 t2 - t1, pooled).

Not modelled: caches and DRAM beyond what the fitted factors absorb, frequency scaling, throttling,
big.LITTLE placement. QEMU 7.2 has no Cortex-A715: profiles run it as the A76 and it is timed as the A76.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The classes native/insn_class.c writes, in its order (SIMD&FP loads/stores count registers moved).
CLASSES = ("alu", "mul", "branch", "ld", "st", "vld", "vst", "fmul_q", "fmul_d", "fp_q", "fp_d", "imul_q",
           "imul_d", "imull", "dot_q", "dot_d", "vacc_q", "vacc_d", "vint_q", "vint_d", "sys", "other")

#: Serial cycles per operator when running on more than one thread (scripts/calibrate_cpi.py): XNNPACK README,
#: Pixel 3a, MobileNet v1/v2/v3-Large/v3-Small fp32 on 1 and 2 threads: S = 2 t2 - t1 = 11 ms over 340 operators
#: at 2.0 GHz.
TAU_CYCLES = 64_700
TAU_SOURCE = ("serial part per operator on N > 1 threads: 64,700 cycles, fitted on XNNPACK's README Pixel 3a "
              "1- and 2-thread MobileNet fp32 figures (S = 2 t2 - t1, pooled over v1/v2/v3-L/v3-S)")
FLOAT_CLASSES = ("fmul_q", "fmul_d", "fp_q", "fp_d")
INTEGER_CLASSES = ("imul_q", "imul_d", "imull", "dot_q", "dot_d", "vacc_q", "vacc_d")
_KINDS = {"vector": ("F", "F0", "F1", "FA", "FM", "V", "V0", "V1"), "memory": ("L", "S"), "scalar": ("I", "M", "B")}


@dataclass(frozen=True)
class CoreTiming:
    """One core's pipes and what each instruction class occupies, from its optimization guide."""

    core: str
    source: str
    width: float  # instructions decoded per cycle
    pipes: dict[str, int]  # pipe group -> pipes in it
    costs: dict[str, dict[str, float]]  # class -> {pipe group: cycles it occupies per instruction/register}
    factors: dict[str, float]  # fitted measured/modelled cycles: "float" and "integer" kernels

    def groups(self, classes: dict[str, int]) -> dict[str, float]:
        """Cycles each pipe group is busy: its occupied cycles over its pipes."""
        load: dict[str, float] = {g: 0.0 for g in self.pipes}
        for cls, n in classes.items():
            for group, occ in self.costs.get(cls, {}).items():
                load[group] += n * occ
        return {g: v / self.pipes[g] for g, v in load.items()}

    def modelled(self, classes: dict[str, int]) -> tuple[float, str]:
        """Modelled cycles (busiest vector group + memory groups + scalar groups, at least instructions / decode
        width) and the busiest group overall."""
        g = self.groups(classes)
        vector = max(g[k] for k in _KINDS["vector"] if k in g)
        total = vector + sum(g[k] for k in _KINDS["memory"] + _KINDS["scalar"] if k in g)
        issue = classes["total"] / self.width  # vld/vst count registers: only "total" counts instructions
        return max(total, issue), max(g, key=lambda k: g[k]) if total >= issue else "issue"

    def factor(self, classes: dict[str, int]) -> float:
        """The fitted factor for this mix: the float and integer factors weighted by the vector-pipe cycles of
        float arithmetic (FMLA, FADD...) and integer multiply/accumulate (SMLAL, SDOT, SADALP...)."""
        def busy(names: tuple[str, ...]) -> float:
            return sum(classes.get(c, 0) * sum(self.costs[c].values()) for c in names)

        fl, it = busy(FLOAT_CLASSES), busy(INTEGER_CLASSES)
        if fl + it == 0:
            return self.factors["float"]
        return (fl * self.factors["float"] + it * self.factors["integer"]) / (fl + it)


#: Fitted measured/modelled cycles (scripts/calibrate_cpi.py writes docs/cpi_calibration.json; a test keeps the
#: two equal): "float" on MobileNet v1 fp32, "integer" on MobileNet v1 int8. The A76 has no published int8
#: figure: its integer factor is its float factor times the A72's integer/float ratio (not validated).
FACTORS: dict[str, dict[str, float]] = {
    "cortex-a53": {"float": 1.296, "integer": 0.718},
    "cortex-a72": {"float": 1.983, "integer": 0.863},
    "cortex-a76": {"float": 1.596, "integer": 0.695},
}


def _f(*pairs: tuple[str, float]) -> dict[str, float]:
    return dict(pairs)


# Cortex-A72: Arm "Cortex-A72 Software Optimization Guide" (UAN 0016A, 2015), "Pipeline overview" (3-wide
# decode; pipes B, I0/I1, M, L, S, F0, F1) and the "Instruction characteristics" tables: ASIMD multiply and
# multiply-accumulate long on F0 (one a cycle), Q-form integer multiply two F0 uops, pairwise add-accumulate
# long on F1, basic ASIMD arithmetic on F0/F1, FP multiply/FMA D-form on F0/F1 (two a cycle), Q-form one a cycle
# (both pipes), one load register a cycle on L, Q-form stores two cycles on S. The multiply entries agree with
# LLVM's AArch64SchedA57.td (the model LLVM uses for the A72: "ASIMD multiply accumulate long: F0").
A72 = CoreTiming(
    "cortex-a72", "Arm Cortex-A72 Software Optimization Guide (UAN 0016A) instruction tables", 3.0,
    {"B": 1, "I": 2, "M": 1, "L": 1, "S": 1, "F0": 1, "F1": 1, "F": 2},
    {"alu": _f(("I", 1)), "mul": _f(("M", 1)), "branch": _f(("B", 1)), "ld": _f(("L", 1)), "st": _f(("S", 1)),
     "vld": _f(("L", 1)), "vst": _f(("S", 2)),
     "fmul_q": _f(("F", 2)), "fmul_d": _f(("F", 1)), "fp_q": _f(("F", 2)), "fp_d": _f(("F", 1)),
     "imul_q": _f(("F0", 2), ("F", 2)), "imul_d": _f(("F0", 1), ("F", 1)), "imull": _f(("F0", 1), ("F", 1)),
     "dot_q": _f(("F0", 2), ("F", 2)), "dot_d": _f(("F0", 1), ("F", 1)),
     "vacc_q": _f(("F1", 2), ("F", 2)), "vacc_d": _f(("F1", 1), ("F", 1)),
     "vint_q": _f(("F", 1)), "vint_d": _f(("F", 1)), "sys": _f(("I", 1)), "other": _f(("I", 1))},
    factors=FACTORS["cortex-a72"])

# Cortex-A76: Arm "Cortex-A76 Software Optimization Guide", "Pipeline overview" (4-wide decode; pipes B,
# S0/S1, M, L0/L1, D, V0/V1: 128-bit) and the "Instruction characteristics" tables, the same as the Neoverse N1
# guide (the same core) that LLVM's AArch64SchedNeoverseN1.td encodes, checked there: ASIMD multiply and
# multiply-accumulate long one V0 uop, Q-form multiply two V0 uops, SADALP and shift-accumulate one V1 uop,
# basic ASIMD arithmetic, FP multiply and FMA one uop on either V pipe, LD1 one L uop per register, ST1 an L and
# a V uop. Dot product (SDOT/UDOT) on either V pipe: not in the part of LLVM's file checked.
A76 = CoreTiming(
    "cortex-a76", "Arm Cortex-A76 Software Optimization Guide instruction tables (= Neoverse N1's)", 4.0,
    {"B": 1, "I": 3, "M": 1, "L": 2, "V0": 1, "V1": 1, "V": 2},
    {"alu": _f(("I", 1)), "mul": _f(("M", 1), ("I", 1)), "branch": _f(("B", 1)), "ld": _f(("L", 1)),
     "st": _f(("L", 1)), "vld": _f(("L", 1)), "vst": _f(("L", 1), ("V", 1)),
     "fmul_q": _f(("V", 1)), "fmul_d": _f(("V", 1)), "fp_q": _f(("V", 1)), "fp_d": _f(("V", 1)),
     "imul_q": _f(("V0", 2), ("V", 2)), "imul_d": _f(("V0", 1), ("V", 1)), "imull": _f(("V0", 1), ("V", 1)),
     "dot_q": _f(("V", 1)), "dot_d": _f(("V", 1)),
     "vacc_q": _f(("V1", 1), ("V", 1)), "vacc_d": _f(("V1", 1), ("V", 1)),
     "vint_q": _f(("V", 1)), "vint_d": _f(("V", 1)), "sys": _f(("I", 1)), "other": _f(("I", 1))},
    factors=FACTORS["cortex-a76"])

# Cortex-A53: Arm publishes no Software Optimization Guide for it. Its table follows the Cortex-A53 TRM's
# pipeline description (in-order, dual issue; 2 ALU, 1 multiply-accumulate, 1 load/store, 1 branch pipe; a
# 64-bit NEON/FP datapath, so a Q-form operation occupies its pipe for two cycles) as LLVM's
# AArch64SchedA53.td encodes it: NEON/FP add-type ops on one pipe (FA), multiply-type on another (FM).
A53 = CoreTiming(
    "cortex-a53", "Cortex-A53 TRM pipeline description as encoded in LLVM AArch64SchedA53.td (no Arm SWOG exists)",
    2.0, {"B": 1, "I": 2, "M": 1, "L": 1, "FA": 1, "FM": 1, "F": 2},
    {"alu": _f(("I", 1)), "mul": _f(("M", 1)), "branch": _f(("B", 1)), "ld": _f(("L", 1)), "st": _f(("L", 1)),
     "vld": _f(("L", 2)), "vst": _f(("L", 2)),
     "fmul_q": _f(("FM", 2), ("F", 2)), "fmul_d": _f(("FM", 1), ("F", 1)),
     "fp_q": _f(("FA", 2), ("F", 2)), "fp_d": _f(("FA", 1), ("F", 1)),
     "imul_q": _f(("FM", 2), ("F", 2)), "imul_d": _f(("FM", 1), ("F", 1)), "imull": _f(("FM", 2), ("F", 2)),
     "dot_q": _f(("FM", 2), ("F", 2)), "dot_d": _f(("FM", 1), ("F", 1)),
     "vacc_q": _f(("FA", 2), ("F", 2)), "vacc_d": _f(("FA", 1), ("F", 1)),
     "vint_q": _f(("F", 2)), "vint_d": _f(("F", 1)), "sys": _f(("I", 1)), "other": _f(("I", 1))},
    factors=FACTORS["cortex-a53"])

TIMINGS: dict[str, CoreTiming] = {t.core: t for t in (A53, A72, A76)}
#: QEMU cores timed as another core's table (QEMU 7.2 has no model for them).
TIMED_AS = {"cortex-a715": "cortex-a76", "neoverse-n1": "cortex-a76"}


@dataclass
class Prediction:
    """A counted time: modelled and fitted cycles of one invoke on one thread, and the N-thread time."""

    modelled_cycles: float
    cycles: float
    busiest: str
    single_thread_ms: float
    ms: float
    threads: int
    instructions: int
    core: str
    factor: float

    @property
    def cpi(self) -> float:
        """Effective cycles per counted instruction (what one CPI factor would have had to be)."""
        return self.cycles / self.instructions if self.instructions else 0.0


def timing_for(cpu: str) -> CoreTiming:
    """The timing table for a QEMU core (the A715 and N1 are timed as the A76); KeyError for others."""
    name = TIMED_AS.get(cpu, cpu)
    if name not in TIMINGS:
        raise KeyError(f"no Cortex-A timing table for {cpu!r} (known: {', '.join(sorted(TIMINGS))})")
    return TIMINGS[name]


def threads_ms(single_ms: float, threads: int, operators: int, clock_mhz: float) -> float:
    """N-thread time from the 1-thread time: ``(t1 - S) / N + S``, S = operators x TAU_CYCLES at the clock."""
    if threads <= 1:
        return single_ms
    serial = min(operators * TAU_CYCLES / (clock_mhz * 1e3), single_ms)
    return (single_ms - serial) / threads + serial


def predict(classes: dict[str, int], cpu: str, clock_mhz: float, threads: int = 1, operators: int = 0
            ) -> Prediction:
    """Counted time of one invoke from its class counts (with ``total``) on ``cpu`` at ``clock_mhz``."""
    timing = timing_for(cpu)
    modelled, busiest = timing.modelled(classes)
    factor = timing.factor(classes)
    cycles = modelled * factor
    one = cycles / (clock_mhz * 1e3)
    return Prediction(modelled, cycles, busiest, one, threads_ms(one, threads, operators, clock_mhz), threads,
                      int(classes["total"]), timing.core, factor)


def describe() -> dict[str, Any]:
    """What the model is, for JSON records: tables, fitted constants and their sources."""
    return {"kind": "per-class pipe occupancy (vector + memory + scalar groups) x fitted factor; threads: "
                    "(t1 - S) / N + S",
            "classes": list(CLASSES), "tau_cycles_per_operator": TAU_CYCLES, "tau_source": TAU_SOURCE,
            "cores": {c: {"source": t.source, "decode_width": t.width, "pipes": t.pipes, "costs": t.costs,
                          "factors": t.factors} for c, t in TIMINGS.items()},
            "timed_as": TIMED_AS}
