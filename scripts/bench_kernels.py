"""edgekd's int8 kernels on the emulated Cortex-M4 / M7 / M55, per layer and whole model, next to CMSIS-NN.

    .venv/bin/python scripts/bench_kernels.py --label after     # ~2-4 min on one core
    .venv/bin/python scripts/bench_kernels.py --label after --keep-as after-v1   # keep the last run to compare

Models (built with tests/tflite_builder.py, random int8 weights): a keyword-spotting DS-CNN shaped like MLPerf Tiny's
(49x10x1 input, PAD + 10x4 stride-2 depthwise to 64 channels, 4 x (3x3 depthwise + 1x1 conv, 64 channels), average
pool, fully connected 12: 2,656,768 MACs) and single-operator models with the ResNet-student layer shapes of issue
14's table (conv 3x3 24->24 on 8x8, conv 3x3 stride 2 24->48 out 3x3, conv 3x3 48->48 on 3x3, ADD 8x8x24). For each:
edgekd generates the C, links it into the profile's budgets, runs it on the profile's QEMU board over seeded random
inputs and compares every output byte with the TFLite Micro interpreter; then one invoke is counted under unicorn
(instructions) and charged by edgekd's Cortex-M4/M7 cycle model (edgekd/emulate/timing_m.py), per kernel call; the M55
is counted by QEMU's TCG plugin, whole-model (runs of 1 and 2 inputs, the difference) and per kernel call
(scripts/qemu_call_marks.c: a count noted at every block of edgekd_invoke, which runs between two kernel calls), and
its whole invoke and each kernel call are charged in cycles by edgekd's beat-wise M55 model
(edgekd/emulate/timing_m55.py; per translated block counts, snapshot by the tb_profile plugin at every block of
edgekd_invoke for the per-call figures, whose instructions must equal qemu_call_marks'). The CMSIS-NN figures are the
ones issue 14 reports (CMSIS-NN built -O2, same counters). ``--label`` keeps one run per label in
docs/bench_kernels.json (``before``: the kernels before issue 14's work) and the table in docs/benchmarks.md shows the
latest label next to ``before`` (instructions) and, with ``--keep-as``, next to the run it replaced (M4 cycles per
layer). The KWS model is also built for size (``generate_c(small=True)``: EK_SMALL, the C DSP paths without the
assembly kernels) on the M4, checked and counted the same way.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from benchdocs import replace_section  # noqa: E402
from tflite_builder import issue14_layer_model, kws_dscnn_model, tflm_outputs  # noqa: E402

from edgekd.codegen import generate_c  # noqa: E402
from edgekd.codegen.board import build_board  # noqa: E402
from edgekd.emulate.cortex_m import count_on_qemu, run_board  # noqa: E402
from edgekd.emulate.timing_m import FLASH, time_invoke  # noqa: E402
from edgekd.emulate.timing_m55 import time_calls_on_qemu, time_on_qemu  # noqa: E402
from edgekd.io import atomic_path  # noqa: E402
from edgekd.targets import load_target  # noqa: E402
from edgekd.verify.tflm import min_arena  # noqa: E402

# Issue 14's table: CMSIS-NN -O2 instructions per invoke (M4, M55 MVE), measured by the issue's author.
CMSIS = {
    "kws": (8_493_409, 1_820_005),
    "kws: PAD + depthwise 1->64 (x64), 10x4 s2, out 25x5": (4_981 + 1_917_056, 1_609 + 318_270),
    "kws: depthwise 3x3, 64 ch, 25x5": (561_007, 168_726),
    "kws: pointwise 1x1 64->64, 25x5": (1_069_056, 202_948),
    "kws: average pool 25x5, 64 ch": (48_786, 12_624),
    "kws: fully connected 64->12": (2_331, 1_399),
    "conv 3x3 24->24 on 8x8": (691_001, 101_825),
    "conv 3x3 stride 2, 24->48, out 3x3": (195_875, 28_202),
    "conv 3x3 48->48 on 3x3": (363_602, 45_169),
    "ADD 8x8x24": (124_296, 21_219),
}
KWS_LAYERS = {1: "kws: PAD + depthwise 1->64 (x64), 10x4 s2, out 25x5", 2: "kws: depthwise 3x3, 64 ch, 25x5",
              3: "kws: pointwise 1x1 64->64, 25x5", 10: "kws: average pool 25x5, 64 ch",
              11: "kws: fully connected 64->12"}
M4, M7, M55 = "nrf52840-dk", "stm32f746g-disco", "alif-ensemble-e3"
MLPERF_M4_MS = 43.4  # MLPerf Tiny closed division record, DS-CNN KWS on a 120 MHz Cortex-M4 (issue 14)


def m55_layer_counts(build: Any, target: Any, sample: np.ndarray, output_size: int, ops: int,
                     work: Path) -> list[int] | None:
    """Instructions of each kernel call of one invoke on the QEMU board (scripts/qemu_call_marks.c), or None
    without gcc, QEMU's plugin header or the symbol."""
    from edgekd.emulate.qemu_plugin import plugin_header

    header, gcc, nm = plugin_header(), shutil.which("gcc"), shutil.which("arm-none-eabi-nm")
    if header is None or gcc is None or nm is None:
        return None
    plugin = work / "qemu_call_marks.so"
    if not plugin.is_file():
        subprocess.run([gcc, "-shared", "-fPIC", "-O2", f"-I{header}", str(ROOT / "scripts" / "qemu_call_marks.c"),
                        "-o", str(plugin)], check=True, capture_output=True)
    span = None
    for line in subprocess.run([nm, "-S", str(build.elf)], capture_output=True, text=True).stdout.splitlines():
        f = line.split()
        if len(f) == 4 and f[3] == "edgekd_invoke":
            span = (int(f[0], 16) & ~1, (int(f[0], 16) & ~1) + int(f[1], 16))
    if span is None:
        return None
    out = work / "marks.txt"
    run = run_board(build, target, np.asarray(sample, np.int8)[None], output_size, 300,
                    f"{plugin},out={out},lo={span[0]},hi={span[1]}")
    marks = [int(v) for v in out.read_text().split()] if run.ok and out.is_file() else []
    steps = np.diff(marks).tolist()
    return steps[1:1 + ops] if len(steps) == ops + 2 else None  # before the first call, after the last


def measure(name: str, model: bytes, work: Path, samples: int) -> dict[str, Any]:
    """Bit-exactness on each board, counted instructions and modelled cycles per kernel call."""
    path = work / f"{re.sub(r'[^A-Za-z0-9]+', '_', name)}.tflite"
    path.write_bytes(model)
    out: dict[str, Any] = {"model": name}
    tflm_arena = min_arena(path).min_arena_bytes
    for target_name in (M4, M7, M55):
        target = load_target(target_name)
        c_dir = work / f"{path.stem}-{target_name}"
        gen = generate_c(path, c_dir)
        build = build_board(c_dir, target)
        x = np.random.default_rng(0).integers(-128, 128, size=(samples, *gen.input_shape[1:]), dtype=np.int8)
        board = run_board(build, target, x, gen.output_size, timeout=300)
        exact = bool(board.ok and np.array_equal(board.outputs, tflm_outputs(model, x)))
        row: dict[str, Any] = {"core": target.cpu.core, "board": build.board, "bit_exact_vs_tflm": exact,
                               "samples": samples, "flash_bytes": build.flash_bytes,
                               "ram_bytes": gen.arena_bytes + (board.stack_used or 0),
                               "arena_bytes": gen.arena_bytes, "stack_bytes": board.stack_used,
                               "tflm_arena_bytes": tflm_arena, "macs": gen.macs, "ops": gen.ops}
        if target_name == M55:
            row["instructions"] = count_on_qemu(build, target, x[0], gen.output_size, 300)
            row["counter"] = "qemu-system-arm TCG plugin (whole invoke; per kernel call: scripts/qemu_call_marks.c)"
            m55 = time_on_qemu(build, target, x[0], gen.output_size, 300)  # per-block counts, beat-wise MVE table
            row.update(cycles=m55.cycles, clock_mhz=target.cpu.clock_mhz, ms=round(m55.ms(target.cpu.clock_mhz), 3),
                       cycle_model="edgekd.emulate.timing_m55 (whole invoke)")
            per_call = m55_layer_counts(build, target, x[0], gen.output_size, len(gen.ops), work)
            calls = time_calls_on_qemu(build, target, x[0], gen.output_size, 300).calls(len(gen.ops)) or []
            if per_call and calls and [c.instructions for c in calls] != per_call:
                raise SystemExit(f"{name}: tb_profile's per-call instructions differ from qemu_call_marks'")
            row["layer_cycle_model"] = "edgekd.emulate.timing_m55 per kernel call (tb_profile marks)"
            row["layers"] = [{"op": op, "instructions": n, **({"cycles": calls[k].cycles} if k < len(calls) else {})}
                             for k, (op, n) in enumerate(zip(gen.ops, per_call or [], strict=False))]
        else:
            timed = time_invoke(build, target, x[0])
            steps = timed.segments[2:-1] if len(timed.segments) == len(gen.ops) + 3 else []
            row.update(instructions=timed.instructions, cycles=timed.cycles, clock_mhz=target.cpu.clock_mhz,
                       ms=round(timed.ms(target.cpu.clock_mhz), 3), counter="unicorn + edgekd cycle model",
                       flash_model=timed.flash.source,
                       layers=[{"op": op, "function": s.function, "instructions": s.instructions,
                                "cycles": s.cycles} for op, s in zip(gen.ops, steps, strict=False)])
            if target_name == M4:
                l4 = time_invoke(build, target, x[0], FLASH["stm32l4r5-120mhz"])
                row["at_120mhz"] = {"cycles_no_wait": timed.cycles, "ms_no_wait": round(timed.cycles / 120e3, 2),
                                    "cycles_l4r5_flash": l4.cycles, "ms_l4r5_flash": round(l4.cycles / 120e3, 2),
                                    "flash_model": l4.flash.source}
        out[target_name] = row
    if name == "kws":  # the size choice: same model, EK_SMALL kernels, on the M4
        target = load_target(M4)
        c_dir = work / f"{path.stem}-{M4}-small"
        gen = generate_c(path, c_dir, small=True)
        build = build_board(c_dir, target)
        x = np.random.default_rng(0).integers(-128, 128, size=(samples, *gen.input_shape[1:]), dtype=np.int8)
        board = run_board(build, target, x, gen.output_size, timeout=300)
        timed = time_invoke(build, target, x[0])
        exact = bool(board.ok and np.array_equal(board.outputs, tflm_outputs(model, x)))
        out["small_m4"] = {"bit_exact_vs_tflm": exact,
                           "flash_bytes": build.flash_bytes, "instructions": timed.instructions,
                           "cycles": timed.cycles, "ms_120mhz_no_wait": round(timed.cycles / 120e3, 2)}
    return out


def rows_of(results: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any] | None, dict | None]]:
    """(table label, M4 figures, M7 figures, M55 figures) for whole models and single layers. M55 per layer: the
    kernel call's count where the run has them (runs before issue 14's Helium round: the whole single-layer invoke,
    none for the KWS layers and the ADD)."""
    rows = []
    for r in results:
        m55_layers = r[M55].get("layers") or []
        if r["model"] == "kws":
            rows.append(("kws", r[M4], r[M7], r[M55]))
            for i, label in KWS_LAYERS.items():
                m4 = next((ly for k, ly in enumerate(r[M4]["layers"]) if k == i - 1), None)
                m7 = next((ly for k, ly in enumerate(r[M7]["layers"]) if k == i - 1), None)
                m55 = m55_layers[i - 1] if len(m55_layers) >= i else None
                if m4:
                    rows.append((label, m4, m7, m55))
        else:
            layer = r[M4]["layers"][-1] if r[M4]["layers"] else r[M4]
            m7 = r[M7]["layers"][-1] if r[M7]["layers"] else r[M7]
            m55 = m55_layers[-1] if m55_layers else (r[M55] if r["model"] != "ADD 8x8x24" else None)
            rows.append((r["model"], layer, m7, m55))
    return rows


def table(data: dict[str, Any], label: str, previous: str | None = None) -> str:
    """The docs table for run ``label``, next to ``before`` (instructions) and ``previous`` (M4 cycles)."""
    runs = data["runs"]
    now, before = runs[label], runs.get("before")
    prev = {n: m4 for n, m4, _, _ in rows_of(before["results"])} if before else {}
    last = {n: m4 for n, m4, _, _ in rows_of(runs[previous]["results"])} if previous in runs else {}
    shown = previous if last else None
    lines = ["| layer / model | edgekd M4 instr. | before | CMSIS-NN M4 | ratio | M4 cycles (model) | "
             + (f"M4 cycles ({shown}) | " if shown else "") + "cycles/instr. "
             "| edgekd M7 instr. | M7 cycles (model) | edgekd M55 instr. | CMSIS-NN M55 (MVE) | ratio "
             "| M55 cycles (model) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if shown else "")]
    for name, m4, m7, m55 in rows_of(now["results"]):
        cm4, cm55 = CMSIS.get(name, (None, None))
        old = prev.get(name, {}).get("instructions")
        was = last.get(name, {}).get("cycles")
        m55n = m55["instructions"] if m55 else None
        m55c = m55.get("cycles") if m55 else None
        lines.append(f"| {name} | {m4['instructions']:,} | {f'{old:,}' if old else '-'} | {cm4:,} | "
                     f"{m4['instructions'] / cm4:.2f} | {m4['cycles']:,} | "
                     + (f"{f'{was:,}' if was else '-'} | " if shown else "")
                     + f"{m4['cycles'] / m4['instructions']:.2f} | "
                     f"{m7['instructions']:,} | {m7['cycles']:,} | {f'{m55n:,}' if m55n else '-'} | "
                     f"{cm55:,} | {f'{m55n / cm55:.2f}' if m55n else '-'} | {f'{m55c:,}' if m55c else '-'} |")
    kws = next(r for r in now["results"] if r["model"] == "kws")
    m4 = kws[M4]
    at = m4["at_120mhz"]
    lines += ["", "| KWS DS-CNN whole model | M4 (nrf52840-dk) | M7 (stm32f746g-disco) | M55 (alif-ensemble-e3) |",
              "|---|---|---|---|",
              f"| bit-exact vs TFLite Micro ({m4['samples']} random inputs, on the QEMU board) | "
              f"{'yes' if m4['bit_exact_vs_tflm'] else 'NO'} | {'yes' if kws[M7]['bit_exact_vs_tflm'] else 'NO'} | "
              f"{'yes' if kws[M55]['bit_exact_vs_tflm'] else 'NO'} |",
              f"| instructions / invoke | {m4['instructions']:,} | {kws[M7]['instructions']:,} | "
              f"{kws[M55]['instructions']:,} |",
              f"| cycles (edgekd model, no flash waits) | {m4['cycles']:,} ({m4['cycles'] / m4['macs']:.2f}/MAC) | "
              f"{kws[M7]['cycles']:,} | "
              + (f"{kws[M55]['cycles']:,} ({kws[M55]['cycles'] / m4['macs']:.2f}/MAC; timing_m55) |"
                 if kws[M55].get("cycles") else "- |"),
              f"| ms at the profile clock | {m4['ms']} ({m4['clock_mhz']:g} MHz) | {kws[M7]['ms']} "
              f"({kws[M7]['clock_mhz']:g} MHz) | "
              + (f"{kws[M55]['ms']} ({kws[M55]['clock_mhz']:g} MHz) |" if kws[M55].get("ms") else "- |"),
              f"| ms at 120 MHz (MLPerf Tiny record {MLPERF_M4_MS} ms) | {at['ms_no_wait']} (0 wait states), "
              f"{at['ms_l4r5_flash']} (STM32L4R5 flash model) | - | - |",
              f"| flash (ELF) | {m4['flash_bytes']:,} | {kws[M7]['flash_bytes']:,} | {kws[M55]['flash_bytes']:,} |",
              f"| RAM: arena + stack / TFLite Micro arena | {m4['ram_bytes']:,} / {m4['tflm_arena_bytes']:,} "
              f"({m4['ram_bytes'] / m4['tflm_arena_bytes']:.2f}x) | {kws[M7]['ram_bytes']:,} | "
              f"{kws[M55]['ram_bytes']:,} |"]
    small = kws.get("small_m4")
    if small:
        lines.append(f"| size build (generate_c(small=True): EK_SMALL, no assembly kernels) | "
                     f"{'bit-exact' if small['bit_exact_vs_tflm'] else 'NOT bit-exact'}, {small['instructions']:,} "
                     f"instr., {small['cycles']:,} cycles = {small['ms_120mhz_no_wait']} ms at 120 MHz, flash "
                     f"{small['flash_bytes']:,} | - | - |")
    if shown:
        was = next(r for r in runs[previous]["results"] if r["model"] == "kws")
        lines.append(f"| {shown} (same model, earlier issue-14 kernels) | {was[M4]['instructions']:,} instr., "
                     f"{was[M4]['cycles']:,} cycles = {was[M4]['at_120mhz']['ms_no_wait']} ms at 120 MHz "
                     f"({was[M4]['at_120mhz']['ms_l4r5_flash']} ms L4R5 flash), flash {was[M4]['flash_bytes']:,} | "
                     f"{was[M7]['instructions']:,} instr., {was[M7]['cycles']:,} cycles | "
                     f"{was[M55]['instructions']:,} instr. |")
    if before:
        old = next(r for r in before["results"] if r["model"] == "kws")
        lines.append(f"| before (same model, kernels before issue 14) | {old[M4]['instructions']:,} instr., "
                     f"{old[M4]['cycles']:,} cycles, flash {old[M4]['flash_bytes']:,}, RAM "
                     f"{old[M4]['ram_bytes']:,} | {old[M7]['instructions']:,} instr. | "
                     f"{old[M55]['instructions']:,} instr. |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="after", help="which run this is (before: the kernels before issue 14)")
    ap.add_argument("--samples", type=int, default=8, help="random inputs checked against TFLite Micro")
    ap.add_argument("--json", default=str(ROOT / "docs" / "bench_kernels.json"))
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite the table in docs/benchmarks.md")
    ap.add_argument("--keep-as", default=None,
                    help="first keep the stored run of --label under this label (the table compares with it)")
    args = ap.parse_args()
    start = time.time()
    models = [("kws", kws_dscnn_model()), *((k, issue14_layer_model(k)) for k in
              ("conv 3x3 24->24 on 8x8", "conv 3x3 stride 2, 24->48, out 3x3", "conv 3x3 48->48 on 3x3",
               "ADD 8x8x24"))]
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-kernels-") as tmp:
        results = [measure(name, model, Path(tmp), args.samples) for name, model in models]
    path = Path(args.json)
    data = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    if args.keep_as and args.label in data["runs"]:
        data["runs"][args.keep_as] = data["runs"][args.label]
    data["runs"][args.label] = {"results": results, "wall_s": round(time.time() - start, 1),
                                "date": time.strftime("%Y-%m-%d", time.gmtime()), "previous": args.keep_as
                                or data["runs"].get(args.label, {}).get("previous")}
    with atomic_path(path) as tmp_json:
        Path(tmp_json).write_text(json.dumps(data, indent=1) + "\n")
    previous = data["runs"][args.label]["previous"]
    print(table(data, args.label, previous))
    if not args.no_doc:
        replace_section("kernels", table(data, args.label, previous))


if __name__ == "__main__":
    main()
