"""Generated C on the emulated fashion-mnist microcontroller builds: size, RAM, exactness, counted latency.

    .venv/bin/python scripts/bench_codegen.py [--samples 1000]   # every MCU profile with a QEMU board

For each microcontroller build (default: runs/bench_build/<target>/artifacts from scripts/bench.py, plus the
nrf52840-dk student of runs/bench_export when that folder exists), edgekd generates C from the int8 .tflite,
links it into the profile's flash/RAM budgets, runs it on the profile's QEMU board over an evenly spaced sample of
the fashion-mnist test set and compares every output byte with the TFLite Micro interpreter. One invoke is
counted (unicorn, or QEMU's TCG plugin on the M55) and charged by the core's cycle model where it has one
(edgekd.emulate.timing_m on the M4/M7, timing_m55 on the M55; the M0+ is instructions x a fixed CPI); the
estimate beside it is edgekd.costmodel's calibrated per-operator cycles (edgekd/costdata/mcu_cycles.json).
Writes docs/bench_codegen.json and the "codegen" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchdocs import replace_section  # noqa: E402

from edgekd import costmodel  # noqa: E402
from edgekd.data import load_task  # noqa: E402
from edgekd.distill import DATA_SEED, load_student  # noqa: E402
from edgekd.emulate import EmulationRequest, emulate  # noqa: E402
from edgekd.emulate.cortex_m import CortexMDetails  # noqa: E402
from edgekd.export.student import load_export  # noqa: E402
from edgekd.students import model_input_shape, to_model_input  # noqa: E402
from edgekd.targets import load_all, load_target  # noqa: E402
from edgekd.verify import sample_indices  # noqa: E402


def builds(args: argparse.Namespace) -> list[tuple[str, str, Path]]:
    """(label, target, build folder): each MCU profile's own build, then the headline nrf52840-dk student."""
    out = []
    for t in load_all():
        src = Path(args.builds) / t.name / "artifacts"
        if t.is_mcu and t.emulator.kind == "qemu-system-arm" and (src / "export.json").is_file():
            out.append((f"{t.name} (bench build)", t.name, src))
    headline = ROOT / "runs" / "bench_export" / "nrf52840-dk"
    if (headline / "export.json").is_file():
        out.append(("nrf52840-dk (30-epoch KD student)", "nrf52840-dk", headline))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", default=str(ROOT / "runs" / "bench_build"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_codegen"))
    ap.add_argument("--samples", type=int, default=1000, help="test samples run on each board")
    ap.add_argument("--json", default=str(ROOT / "docs" / "bench_codegen.json"))
    args = ap.parse_args()
    rows = []
    for label, name, src in builds(args):
        target = load_target(name)
        work = Path(args.work) / label.split()[0] / src.parent.name
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src, work)
        export, arts = (rec := load_export(work)).to_json(), rec.artifacts
        data = export["data_source"]
        splits = load_task(data["task"], data["data_dir"], seed=DATA_SEED, limit=data["limit"])
        idx = sample_indices(len(splits.y_test), args.samples)
        x = to_model_input(splits.x_test[idx], tuple(export["input_shape"])).numpy()
        t = time.perf_counter()
        run = emulate(EmulationRequest(work, target, x, splits.y_test[idx], timeout_s=3600))[0]
        wall = time.perf_counter() - t
        model, _ = load_student(work)
        cost = costmodel.analyze(model, model_input_shape(model), "int8", bool(model.channels_last_input))
        est = costmodel.estimate_latency(cost, target)
        tfl = next(a for a in arts if a.format == "tflite" and a.precision == "int8")
        d = run.details if isinstance(run.details, CortexMDetails) else None  # None: it failed before building
        row = {"label": label, "target": name, "core": target.cpu.core, "clock_mhz": target.cpu.clock_mhz,
               "emulator": run.emulator, "student": export["student"]["config"], "ok": run.ok, "error": run.error,
               "samples": run.samples, "accuracy": run.accuracy, "tflm_accuracy": run.host_accuracy,
               "bit_exact_vs_host": run.bit_exact_vs_host, "max_diff_vs_host": run.max_diff_vs_host,
               "flash_bytes": d and d.flash_bytes, "model_const_bytes": d and d.model_const_bytes,
               "tflite_bytes": tfl.bytes, "tflm_runtime_flash_bytes": target.runtime_flash_bytes,
               "ram_bytes": d and d.ram_bytes, "arena_bytes": d and d.arena_bytes,
               "stack_bytes": d and d.stack_bytes, "tflm_arena_bytes": d and d.tflm_arena_bytes,
               "ram_vs_tflm": d and d.ram_vs_tflm, "instructions": run.instructions, "cpi": run.cpi,
               "cycles": d and d.cycles, "cycles_per_mac": d and d.cycles_per_mac,
               "counter": d and d.counter, "cycle_source": d and d.cpi_source, "estimate_method": est.method,
               "counted_ms": run.counted_ms, "estimated_ms": est.ms, "budget_ms": target.budgets.latency_ms,
               "flash_budget_bytes": target.budgets.flash_bytes, "ram_budget_bytes": target.budgets.ram_bytes,
               "macs": d and d.macs, "count_note": d and d.count_note, "wall_s": round(wall, 1)}
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("label", "ok", "bit_exact_vs_host", "accuracy", "flash_bytes",
                                              "ram_vs_tflm", "instructions", "cycles", "counted_ms", "estimated_ms",
                                              "wall_s")}), flush=True)
        Path(args.json).write_text(json.dumps({"samples": args.samples, "rows": rows}, indent=2) + "\n")
    lines = ["| build (core, board) | samples | C int8 acc. (board) | bit-exact vs TFLite Micro | flash: C firmware "
             "/ .tflite + TFLM runtime | RAM: C (arena + stack) / TFLM min. arena | instructions / invoke | "
             "cycles / invoke (how) | counted ms | estimated ms | budget ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["ok"]:
            lines.append(f"| {r['label']} | FAILED: {r['error']} | | | | | | | | | |")
            continue
        insns = f"{r['instructions'] / 1e6:.2f}M" if r["instructions"] else f"- ({r['count_note']})"
        counted = f"{r['counted_ms']:.1f}" if r["counted_ms"] is not None else "-"
        model = ("M55 beat model" if r["core"] == "cortex-m55" else f"{r['core'].removeprefix('cortex-')} model")
        cycles = (f"{r['cycles'] / 1e6:.2f}M ({model})" if r["cycles"] is not None else
                  f"{r['instructions'] * r['cpi'] / 1e6:.2f}M (x CPI {r['cpi']:g})" if r["instructions"] else "-")
        lines.append(
            f"| {r['label']} ({r['core']}, {r['emulator'].split('/')[1]}) | {r['samples']:,} | "
            f"{100 * r['accuracy']:.2f}% | {'yes' if r['bit_exact_vs_host'] else 'NO'} | "
            f"{r['flash_bytes']:,} / {r['tflite_bytes'] + r['tflm_runtime_flash_bytes']:,} | "
            f"{r['arena_bytes'] + r['stack_bytes']:,} / {r['tflm_arena_bytes']:,} ({r['ram_vs_tflm']:.2f}x) | "
            f"{insns} | {cycles} | {counted} | {r['estimated_ms']:.1f} | {r['budget_ms']:g} |")
    replace_section("codegen", "\n".join(lines))
    print("\n".join(lines))
    if any(not r["ok"] or not r["bit_exact_vs_host"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
