"""The Cortex-M55 cycle model (edgekd/emulate/timing_m55.py) on sequences whose timing its sources state, and on
the KWS DS-CNN, whole model and per kernel call (``time_calls_on_qemu``); writes docs/cycle_validation_m55.json
and the `m55cycles` table of docs/benchmarks.md.

    .venv/bin/python scripts/validate_cycles_m55.py     # ~30 s (one KWS build, three QEMU runs)

Each sequence is charged as a counted run charges a translated block (``block_cycles``: steady state, the second
of two passes; ``loop_cycles`` adds the taken branch). The "stated" column is what the source says or what its
beats imply, with the reasoning; Arm publishes no Cortex-M55 cycle table, so this checks that the model implements
its sources (LLVM's ARMScheduleM55.td, SLOTHY's cortex_m55r1.py), not the sources against silicon.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from benchdocs import replace_section  # noqa: E402

from edgekd.emulate.timing_m55 import (  # noqa: E402
    block_cycles,
    classify,
    disassemble,
    loop_cycles,
    time_calls_on_qemu,
    time_on_qemu,
)
from edgekd.io import write_json  # noqa: E402

# (name, instructions, stated cycles, where the figure comes from)
SEQUENCES: list[tuple[str, list[str], int, str]] = [
    ("VLDR; VADD; VMUL; VSTR (dependent chain)", ["vldrw.u32 q0, [r0]", "vadd.i32 q1, q0, q2",
                                                  "vmul.i32 q3, q1, q2", "vstrw.32 q3, [r1]"], 5,
     "ARMScheduleM55.td pipeline diagram: 5 cycles, each instruction's second beat overlapping the next's first"),
    ("VLDR; VLDRB; VADD; VSTR (two loads)", ["vldrw.u32 q0, [r0]", "vldrb.u8 q4, [r2]", "vadd.i32 q1, q0, q4",
                                             "vstrw.32 q1, [r1]"], 6,
     "ARMScheduleM55.td pipeline diagram: 6 cycles, the loads cannot overlap (one load/store pipe)"),
    ("VLDRB + VMLADAVA.S8 under LE (16 MACs)", ["vldrb.u8 q0, [r0], #16", "vmlava.s8 r2, q0, q1", "le lr, 0"], 2,
     "dual beat: VLDRB holds the load/store pipe 2 cycles, VMLADAVA the multiply pipe 2, overlapped; LE is "
     "executed from the low-overhead loop cache: 2 cycles, 8 int8 MACs a cycle"),
    ("VMLADAVA.S8 x 3 (one pipe)", ["vmlava.s8 r2, q0, q1", "vmlava.s8 r4, q0, q2", "vmlava.s8 r6, q0, q3"], 6,
     "two beats each on the same multiply pipe: no overlap, 2 cycles each"),
    ("VQRDMULH; VRSHL; VADD; VSTRB.32 (requantization, one vector)", ["vqrdmulh.s32 q0, q0, q3",
                                                                      "vrshl.s32 q0, r4", "vadd.i32 q0, q0, q5",
                                                                      "vstrb.32 q0, [r1]"], 6,
     "a dependent chain: VQRDMULH result after 2 cycles (td: E3), VRSHL 2 (E3), VADD 1 (E2), then VSTRB "
     "(2 + 2 + 1 + 1); the next pass's VQRDMULH reads VADD's q0, so passes do not overlap"),
    ("LDR; ADDS; STR (load-use)", ["ldr r1, [r0]", "adds r1, #1", "str r1, [r0]"], 4,
     "LDR result after 2 cycles (ARMScheduleM55.td WriteLd, latency 2): one stall"),
]


def kws_profile(work: Path) -> dict[str, Any]:
    from tflite_builder import kws_dscnn_model

    from edgekd.codegen import generate_c
    from edgekd.codegen.board import build_board
    from edgekd.cores import CORES
    from edgekd.targets import load_target

    (work / "kws.tflite").write_bytes(kws_dscnn_model())
    gen = generate_c(work / "kws.tflite", work / "c")
    target = load_target("alif-ensemble-e3")
    build = build_board(work / "c", target)
    x = np.random.default_rng(2).integers(-128, 128, size=gen.input_shape[1:], dtype=np.int8)
    timed = time_on_qemu(build, target, x, gen.output_size, 300)
    calls = time_calls_on_qemu(build, target, x, gen.output_size, 300).calls(len(gen.ops)) or []
    ops = disassemble(build.elf)
    loop = _mm_loop(ops)
    cpi = float(CORES[target.cpu.core].cpi or 0)
    return {"model": "KWS DS-CNN (tests/tflite_builder.kws_dscnn_model)", "macs": gen.macs,
            "instructions": timed.instructions, "cycles": timed.cycles, "cpi": round(timed.cpi, 3),
            "cycles_per_mac": round(timed.cycles / gen.macs, 3), "clock_mhz": target.cpu.clock_mhz,
            "ms": round(timed.ms(target.cpu.clock_mhz), 3),
            "old_cycles_instructions_x_cpi": round(timed.instructions * cpi), "old_cpi": cpi,
            "per_function": [{"function": s.function, "instructions": s.instructions, "cycles": s.cycles}
                             for s in timed.segments],
            "mm_inner_loop": loop,
            "per_call": [{"op": op, "instructions": c.instructions, "cycles": c.cycles}
                         for op, c in zip(gen.ops, calls, strict=True)],
            "per_call_gap": {"instructions": timed.instructions - sum(c.instructions for c in calls),
                             "cycles": timed.cycles - sum(c.cycles for c in calls),
                             "what": "the invoke's entry/exit blocks and the harness loop"}}


def _mm_loop(ops: dict) -> dict[str, Any] | None:
    """ek_mm_mve_2px's 16-tap loop (6 VLDRB, 8 VMLADAVA, SUBS, BNE): its model cycles a 128-MAC iteration."""
    addrs = sorted(ops)
    for i, a in enumerate(addrs):
        if ops[a].branch == "b" and ops[a].mnemonic.startswith("bne"):
            body = [b for b in addrs[max(0, i - 15):i + 1]]
            names = [ops[b].mnemonic for b in body]
            if names.count("vmlava") == 8 and names.count("vldrb") == 6:
                return {"instructions": len(body), "macs": 128, "cycles": loop_cycles(ops, body[0], a),
                        "bound": "multiply pipe: 8 x 2 = 16 cycles; load/store pipe: 6 x 2 = 12"}
    return None


def table(rows: list[dict[str, Any]], kws: dict[str, Any]) -> str:
    lines = ["| sequence (one pass, steady state) | stated | M55 model | where the stated figure comes from |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['stated']} | {r['model']} | {r['source']} |")
    loop = kws["mm_inner_loop"]
    lines += ["", "| KWS DS-CNN on alif-ensemble-e3 (QEMU mps3-an547) | figure |", "|---|---|",
              f"| instructions per invoke (tb_profile, 2 runs' difference) | {kws['instructions']:,} |",
              f"| cycles, M55 model | {kws['cycles']:,} (CPI {kws['cpi']}) |",
              f"| cycles / MAC ({kws['macs']:,} MACs) | {kws['cycles_per_mac']} |",
              f"| ms at {kws['clock_mhz']:g} MHz | {kws['ms']} |",
              f"| before: instructions x CPI {kws['old_cpi']:g} | {kws['old_cycles_instructions_x_cpi']:,} |"]
    if loop:
        lines.append(f"| ek_mm_mve_2px 16-tap loop ({loop['instructions']} instructions, 128 MACs) | "
                     f"{loop['cycles']} cycles ({loop['bound']}) |")
    if kws.get("per_call"):
        gap = kws["per_call_gap"]
        lines += ["", "| kernel call (tb_profile marks at edgekd_invoke's blocks) | instructions | cycles | CPI |",
                  "|---|---|---|---|"]
        for k, c in enumerate(kws["per_call"]):
            lines.append(f"| {k}: {c['op']} | {c['instructions']:,} | {c['cycles']:,} | "
                         f"{c['cycles'] / max(c['instructions'], 1):.2f} |")
        lines.append(f"| not in a call ({gap['what']}) | {gap['instructions']:,} | {gap['cycles']:,} | |")
    lines += ["", "| function (whole invoke) | instructions | cycles | CPI |", "|---|---|---|---|"]
    for s in kws["per_function"][:8]:
        lines.append(f"| {s['function']} | {s['instructions']:,} | {s['cycles']:,} | "
                     f"{s['cycles'] / max(s['instructions'], 1):.2f} |")
    return "\n".join(lines)


def main() -> None:
    rows = []
    for name, seq, stated, source in SEQUENCES:
        ops = [classify(*(line.split(None, 1) + [""])[:2], 4) for line in seq]
        rows.append({"name": name, "instructions": seq, "stated": stated, "model": block_cycles(ops),
                     "source": source})
    with tempfile.TemporaryDirectory(prefix="edgekd-m55v-") as tmp:
        kws = kws_profile(Path(tmp))
    write_json(ROOT / "docs" / "cycle_validation_m55.json",
               {"how": __doc__, "sequences": rows, "kws": kws})
    replace_section("m55cycles", table(rows, kws))
    for r in rows:
        print(f"{r['name']}: stated {r['stated']}, model {r['model']}")
    print(f"KWS: {kws['instructions']:,} instructions, {kws['cycles']:,} cycles, {kws['cycles_per_mac']} cycles/MAC")


if __name__ == "__main__":
    main()
