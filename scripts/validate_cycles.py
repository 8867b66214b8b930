"""edgekd's Cortex-M4/M7 cycle model (edgekd/emulate/timing_m.py) on loops whose timing Arm's TRM states.

    .venv/bin/python scripts/validate_cycles.py          # seconds; writes docs/cycle_validation.json

Each loop is assembled with arm-none-eabi-as, disassembled by the model's own reader and charged per iteration
as a run charges it (timing_m.loop_cycles: the body's table cost + the taken branch's refill). The expected
figure is the sum of the Cortex-M4 TRM r0p1 table 3-1 timings (section 3.3.1; P, the pipeline refill, is 1-3
"depending on the alignment and width of the target instruction"): this checks that the table and its reader
implement the TRM, not the TRM against silicon. Arm publishes no cycle table for the Cortex-M7; its column is
the model's dual-issue figure, with no published figure to compare. The models against published whole-program
cycle counts (Dhrystone 2.1 on the M4, M7 and M55): scripts/validate_cycles_published.py.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchdocs import replace_section  # noqa: E402

from edgekd.emulate.timing_m import disassemble, loop_cycles  # noqa: E402
from edgekd.io import write_json  # noqa: E402
from edgekd.tools import require_tool  # noqa: E402

# name, loop body (label 1 starts it, the last line branches back), M4 TRM cycles (low, high), how the TRM adds up
LOOPS: list[tuple[str, str, tuple[int, int], str]] = [
    ("subs + bne (branch refill)", "subs r0, r0, #1\nbne 1b", (3, 5),
     "SUBS 1 + B<cc> taken 1 + P (P = 1 for a 16-bit target; 1-3)"),
    ("SMLAD dot product (CMSIS arm_dot_prod_q15 inner loop shape)",
     "ldr r2, [r1], #4\nldr r3, [r4], #4\nsmlad r5, r2, r3, r5\nsubs r0, r0, #1\nbne 1b", (7, 9),
     "LDR 2 + LDR 1 (pipelined after a load) + SMLAD 1 + SUBS 1 + B<cc> 1 + P"),
    ("LDM/STM 4-register copy", "ldmia r1!, {r2, r3, r4, r5}\nstmia r6!, {r2, r3, r4, r5}\nsubs r0, r0, #1\nbne 1b",
     (13, 15), "LDM 1 + 4 + STM 1 + 4 + SUBS 1 + B<cc> 1 + P"),
    ("dependent loads (pointer chase)", "ldr r2, [r1]\nldr r1, [r2]\nsubs r0, r0, #1\nbne 1b", (7, 9),
     "LDR 2 + LDR 2 (its base is the previous load's result: no pipelining) + SUBS 1 + B<cc> 1 + P"),
    ("multiplies (MUL, MLA, SMULL, SMLAL)",
     "mul r2, r2, r3\nmla r4, r2, r3, r4\nsmull r5, r6, r2, r3\nsmlal r5, r6, r2, r3\nsubs r0, r0, #1\nbne 1b",
     (7, 9), "MUL 1 + MLA 1 + SMULL 1 + SMLAL 1 (single-cycle MAC) + SUBS 1 + B<cc> 1 + P"),
    ("32-bit branch target not word aligned", "add.w r2, r2, #1\nsubs r0, r0, #1\nbne 1b", (4, 6),
     "ADD.W 1 + SUBS 1 + B<cc> 1 + P (P = 2 modelled for an unaligned 32-bit target; 1-3)"),
    ("requantization (SMMLAR, ASR, SSAT, STRB)",
     "smmlar r2, r2, r3, r4\nasr r2, r2, r5\nssat r2, #8, r2\nstrb r2, [r6], #1\nsubs r0, r0, #1\nbne 1b", (8, 10),
     "SMMLAR 1 + ASR 1 + SSAT 1 + STRB 2 + SUBS 1 + B<cc> 1 + P"),
]


def assemble(body: str, misalign: bool, work: Path) -> Path:
    src = work / "loop.s"
    pad = "nop\n" if misalign else ""
    src.write_text(f".syntax unified\n.thumb\n.text\n.p2align 2\n{pad}1:\n{body}\n")
    obj = work / "loop.o"
    gas = require_tool("arm-none-eabi-as", "gcc-arm-none-eabi")
    subprocess.run([gas, "-mcpu=cortex-m4", str(src), "-o", str(obj)], check=True)
    return obj


def validate() -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekd-loops-") as tmp:
        for name, body, (lo, hi), how in LOOPS:
            insns = disassemble(assemble(body, "not word aligned" in name, Path(tmp)))
            start = min(a for a, i in insns.items() if i.mnemonic != "nop")
            end = max(a for a, i in insns.items() if i.klass == "branch")  # the assembler pads after it
            rows.append({"loop": name, "trm_m4_low": lo, "trm_m4_high": hi, "trm_sum": how,
                         "model_m4": loop_cycles(insns, start, end, "cortex-m4"),
                         "model_m7": loop_cycles(insns, start, end, "cortex-m7")})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| loop (one iteration) | Cortex-M4 TRM (P = 1 ... 3) | how the TRM adds up | M4 model | M7 model |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['loop']} | {r['trm_m4_low']}-{r['trm_m4_high']} | {r['trm_sum']} | {r['model_m4']} | "
                     f"{r['model_m7']} |")
    return "\n".join(lines)


def main() -> None:
    rows = validate()
    write_json(ROOT / "docs" / "cycle_validation.json", {"how": __doc__, "loops": rows})
    replace_section("cyclevalid", table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
