"""Benchmark: every artifact of a trained fashion-mnist student per target, on its real runtime, side by side.

For each ``TARGET=STUDENT_DIR``: ``edgekd export`` (all the target's formats) then ``edgekd verify`` on the full
test set; accuracy of the float student, the int8 ``.pte`` on ExecuTorch, the int8 ``.tflite`` on LiteRT and
(MCU) on TFLite Micro, agreement with float, bytes, minimum TFLite Micro arena, and the host latency of each
runtime on the same model (ExecuTorch XNNPACK vs LiteRT XNNPACK, in one run).

    .venv/bin/python scripts/bench_export.py \\
        nrf52840-dk=runs/bench_distill30/nrf52840-dk/feature-seed0 \\
        raspberry-pi-4b=runs/bench_distill/raspberry-pi-4b/feature-seed0 \\
        google-pixel-8=runs/bench_distill/raspberry-pi-4b/feature-seed0

Writes docs/bench_export.json and the table between the ``export`` markers in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdocs import replace_section  # noqa: E402

from edgekd.export import export_student  # noqa: E402
from edgekd.logs import setup  # noqa: E402
from edgekd.verify import verify_build  # noqa: E402


def table(result: dict) -> str:
    rows = ["| target | student | artifact | runtime | bytes | accuracy | vs float (pp) | agreement | max abs err | "
            "TFLM min arena | host ms (median) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for b in result["builds"]:
        v, s = b["verify"], b["student"]
        label = f"{s['family']}({', '.join(f'{k}={x}' for k, x in s['config'].items() if x is not None)})"
        rows.append(f"| {b['target']} | {label} | float student | PyTorch | | {100 * v['float']['accuracy']:.2f}% "
                    "| | | | | |")
        sizes = {a["path"]: a["bytes"] for a in b["artifacts"]}
        for r in v["runs"]:
            arena = f"{r['arena_bytes']:,}" if r.get("arena_bytes") else ""
            rows.append(f"| {b['target']} | {label} | {r['artifact']} | {r['runtime']} ({r['kernels']}) | "
                        f"{sizes[r['artifact']]:,} | {100 * r['accuracy']:.2f}% | "
                        f"{100 * (r['accuracy'] - v['float']['accuracy']):+.2f} | "
                        f"{100 * r['agreement_with_float']:.2f}% | {r['max_abs_err']:.3f} | {arena} | "
                        f"{r['latency']['median_ms']:.3f} |")
    return "\n".join(rows)


def gates_table(result: dict) -> str:
    rows = ["| target | flash | RAM | latency (estimated) | fidelity | passed |", "|---|---|---|---|---|---|"]
    for b in result["builds"]:
        g = b["verify"]["gates"]
        cell = {k: ("PASS: " if g[k]["passed"] else "FAIL: ") + g[k]["detail"].split(";")[0] for k in g if g[k]}
        rows.append(f"| {b['target']} | {cell['flash']} | {cell['ram']} | {cell['latency']} | {cell['fidelity']} | "
                    f"{b['verify']['passed']} |")
    return "\n".join(rows)


def write_markdown(result: dict) -> None:
    body = (f"Measured on {result['host']} by `scripts/bench_export.py`: full fashion-mnist test set "
            f"({result['builds'][0]['verify']['samples']['test']:,} images) per artifact; host latency is the median "
            "wall time of one invoke (batch 1) on this x86_64 machine, not the device's. int8 .tflite on LiteRT uses "
            "its default XNNPACK kernels; TFLite Micro runs its reference kernels with an arena no larger than the "
            "RAM budget.\n\n" + table(result) + "\n\nGates per target (`edgekd verify`):\n\n" + gates_table(result))
    replace_section("export", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+", help="TARGET=STUDENT_DIR")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench_export.json"))
    ap.add_argument("--builds-dir", default=str(ROOT / "runs" / "bench_export"))
    ap.add_argument("--limit", type=int, default=None, help="test-set sample (smoke runs only)")
    args = ap.parse_args()
    setup()
    result = {"host": f"{platform.machine()}, {platform.processor() or 'cpu'}, 2 cores", "limit": args.limit,
              "builds": []}
    for spec in args.builds:
        target, _, student = spec.partition("=")
        build = Path(args.builds_dir) / target
        t = time.perf_counter()
        exported = export_student(target, student, build).to_json()
        export_s = time.perf_counter() - t
        t = time.perf_counter()
        verified = verify_build(target, build, limit=args.limit).to_json()
        result["builds"].append({"target": target, "student_dir": student, "student": exported["student"],
                                 "artifacts": exported["artifacts"], "verify": verified,
                                 "seconds": {"export": round(export_s, 1),
                                             "verify": round(time.perf_counter() - t, 1)}})
        print(f"{target}: passed={verified['passed']} ({export_s:.0f} s export)", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.limit is None:  # smoke runs never overwrite the committed table
        write_markdown(result)
    print(table(result))


if __name__ == "__main__":
    main()
