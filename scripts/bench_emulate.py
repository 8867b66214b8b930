"""Emulated Linux-class devices: the same fashion-mnist student on Pi 4, Pi 5 and a phone under qemu-aarch64.

    .venv/bin/python scripts/bench_emulate.py --student runs/bench_distill/raspberry-pi-4b/feature-seed0

Exports the student for each target, verifies it on the host runtimes and on the target's emulated core
(LiteRT reference + XNNPACK kernels, ExecuTorch XNNPACK), and writes docs/bench_emulate.json and the
"emulate" section of docs/benchmarks.md: host vs emulated accuracy, exactness, instructions per invoke,
counted latency (1 thread, CPI from scripts/calibrate_cpi.py) next to the cost model's estimate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchdocs import replace_section  # noqa: E402

from edgekd import costmodel  # noqa: E402
from edgekd.distill import load_student  # noqa: E402
from edgekd.emulate import exactness  # noqa: E402
from edgekd.emulate.aarch64 import AArch64Details  # noqa: E402
from edgekd.export import export_student  # noqa: E402
from edgekd.students import model_input_shape  # noqa: E402
from edgekd.targets import load_target  # noqa: E402
from edgekd.verify import verify_build  # noqa: E402

TARGETS = ["raspberry-pi-4b", "raspberry-pi-5", "google-pixel-8"]


def estimates(build: Path, target_name: str) -> dict[str, dict[str, float]]:
    """The cost model's estimate per precision at the profile's threads and at one thread (what was counted)."""
    target = load_target(target_name)
    one = dataclasses.replace(target, throughput=dataclasses.replace(target.throughput, threads=1))
    model, _ = load_student(build)
    shape = model_input_shape(model)
    out = {}
    for p in ("int8", "fp32"):
        cost = costmodel.analyze(model, shape, p, bool(model.channels_last_input))
        out[p] = {"ms": costmodel.estimate_latency(cost, target).ms, "ms_1_thread": costmodel.estimate_latency(
            cost, one).ms, "threads": target.throughput.threads}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", required=True)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_emulate"))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--emulator-limit", type=int, default=0, help="0: the whole test set")
    ap.add_argument("--json", default=str(ROOT / "docs" / "bench_emulate.json"))
    args = ap.parse_args()
    rows = []
    for name in args.targets.split(","):
        build = Path(args.out) / name
        if not (build / "export.json").is_file():
            export_student(name, args.student, build)
        t = time.perf_counter()
        record = verify_build(name, build, emulator="qemu", emulator_limit=args.emulator_limit or None,
                              emulator_timeout_s=7200)
        est = estimates(build, name)
        target = load_target(name)
        for r in record.emulated:
            d = r.details if isinstance(r.details, AArch64Details) else None  # None: the run failed early
            rows.append({"target": name, "core": target.cpu.core, "emulated_core": target.emulator.cpu,
                         "clock_mhz": target.cpu.clock_mhz, "artifact": r.path, "runtime": r.runtime,
                         "kernels": r.kernels, "samples": r.samples, "ok": r.ok,
                         "host_accuracy": r.host_accuracy, "emulated_accuracy": r.accuracy,
                         "agreement": r.agreement, "bit_exact_vs_host": r.bit_exact_vs_host,
                         "max_diff_vs_host": r.max_diff_vs_host, "diff_unit": d.diff_unit if d else None,
                         "mismatched_samples": d.mismatched_samples if d else None,
                         "instructions": r.instructions, "cpi": r.cpi, "counted_ms": r.counted_ms,
                         "estimated_ms": est[r.precision]["ms"],
                         "estimated_ms_1_thread": est[r.precision]["ms_1_thread"],
                         "xnnpack_delegate": d.xnnpack_delegate if d else None})
        gate = record.gates.get("emulator")
        print(f"{name}: {len(record.emulated)} emulated runs in {time.perf_counter() - t:.0f} s, gate "
              f"{gate.detail if gate else '-'}", flush=True)
        Path(args.json).write_text(json.dumps({"student": args.student, "rows": rows}, indent=2) + "\n")
    lines = ["| target (emulated core) | artifact | kernels | samples | host acc. | emulated acc. | vs host | "
             "instructions / invoke | counted ms (1 thread) | estimate ms (1 thread / profile threads) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        exact = exactness(r) + (f" ({r['mismatched_samples']} samples)" if r["bit_exact_vs_host"] is False else "")
        lines.append(f"| {r['target']} ({r['emulated_core']}) | {r['artifact']} ({r['runtime']}) | {r['kernels']} | "
                     f"{r['samples']:,} | {100 * r['host_accuracy']:.2f}% | {100 * r['emulated_accuracy']:.2f}% | "
                     f"{exact} | {r['instructions'] / 1e6:.2f}M | {r['counted_ms']:.2f} | "
                     f"{r['estimated_ms_1_thread']:.2f} / {r['estimated_ms']:.2f} |")
    replace_section("emulate", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
