"""Benchmark: `edgekd build` for every target (or a chosen set) on one task, sharing one teacher.

    .venv/bin/python scripts/bench.py --task fashion-mnist --teacher runs/teachers/fashion-mnist.pt \\
        [--targets a,b,c] [--epochs 20] [--fast]
    .venv/bin/python scripts/bench.py --table-only   # redraw the table from docs/bench_build.json

Writes docs/bench_build.json (every report.json plus wall time per build and the teacher-output cache hits and
misses of each build) and the per-target table between the ``build`` markers in docs/benchmarks.md. The first
build that needs teacher outputs computes them; later targets read them from ~/.cache/edgekd, which the
cache columns show.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdocs import replace_section  # noqa: E402

from edgekd.build import BuildOptions, Stages, build_target, ensure_teacher  # noqa: E402
from edgekd.logs import setup  # noqa: E402
from edgekd.targets import load_all  # noqa: E402


def table(rows: list[dict]) -> str:
    out = ["| target | class | student | params | float | int8 .tflite (runtime) | .pte int8 | flash (of budget) | "
           "RAM (of budget) | latency: gate's (kind) / estimate (budget) | passed | build s | "
           "teacher cache hits/misses |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        r = row["report"]
        s = r["student"]
        int8 = [a for a in r["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8"]
        tfl = next((a for a in int8 if a["runtime"] == "tflm"), int8[0])  # the device's runtime first
        pte = next((a for a in r["artifacts"] if a["format"] == "pte" and a["precision"] == "int8"), None)
        g = r["gates"]
        est = next((a["estimated_ms"] for a in r["artifacts"] if a.get("latency_kind") == "counted"
                    and a.get("kernels") != "reference"), g["latency"]["value"])  # the cost model's, beside a count
        cfg = ", ".join(f"{k}={v}" for k, v in s["config"].items() if v is not None)
        out.append(f"| {r['target']} | {row['class']} | {s['family']}({cfg}) | {s['params']:,} | "
                   f"{100 * s['accuracy_float']:.2f}% | {100 * tfl['accuracy']:.2f}% ({tfl['runtime']}) | "
                   + (f"{100 * pte['accuracy']:.2f}% | " if pte else "- | ")
                   + f"{g['flash']['value'] / 1024:,.0f} KiB ({g['flash']['budget'] / 1024:,.0f}) | "
                   f"{g['ram']['value'] / 1024:,.0f} KiB ({g['ram']['budget'] / 1024:,.0f}) | "
                   f"{g['latency']['value']:.2f} ms ({g['latency']['kind']}) / {est:.2f} ms "
                   f"({g['latency']['budget']:g}) | {r['passed']} | "
                   f"{row['seconds']:.0f} | {row['cache'].get('hits', 0)}/{row['cache'].get('misses', 0)} |")
    return "\n".join(out)


def write_markdown(result: dict) -> None:
    o = result["options"]
    body = (f"`scripts/bench.py`: `edgekd build` on {o['task']}, {o['epochs']} distillation epochs, loss {o['loss']}"
            f"{', fast mode' if o['fast'] else ''}, one shared teacher. Flash and RAM include the profile's runtime "
            "overhead; latency is the gate's figure (counted on the emulated core when the build's emulator ran, "
            "else the cost model's estimate) beside the cost model's estimate. Build seconds are wall time on this "
            "2-core machine.\n\n" + table(result["rows"]))
    replace_section("build", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="fashion-mnist")
    ap.add_argument("--teacher", default=None, help="teacher file (default: train the built-in one once)")
    ap.add_argument("--targets", default=None, help="comma-separated (default: every MCU, Pi and phone profile)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--loss", default="kd")
    ap.add_argument("--family", action="append", help="restrict student families")
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench_build.json"))
    ap.add_argument("--builds-dir", default=str(ROOT / "runs" / "bench_build"))
    ap.add_argument("--table-only", action="store_true", help="only redraw the markdown table from --out")
    args = ap.parse_args()
    if args.table_only:
        write_markdown(json.loads(Path(args.out).read_text()))
        return
    setup()
    klass = {t.name: t.klass for t in load_all()}
    targets = args.targets.split(",") if args.targets else sorted(klass, key=lambda n: (klass[n], n))
    opts = BuildOptions(task=args.task, teacher=args.teacher, epochs=args.epochs, loss=args.loss,
                        families=args.family, fast=args.fast, progress=sys.stderr.isatty())
    builds = Path(args.builds_dir)
    builds.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    teacher = ensure_teacher(opts.resolved(), builds, Stages(builds))
    result = {"options": {"task": args.task, "epochs": args.epochs, "loss": args.loss, "fast": args.fast,
                          "teacher": teacher, "teacher_seconds": round(time.perf_counter() - t, 1)}, "rows": []}
    for name in targets:
        t = time.perf_counter()
        report = build_target(name, opts, builds / name, teacher)
        dist = json.loads((builds / name / "student" / "distill.json").read_text())
        result["rows"].append({"class": klass[name], "seconds": round(time.perf_counter() - t, 1),
                               "cache": dist.get("teacher_cache", {}), "report": report})
        print(f"{name}: passed={report['passed']} ({result['rows'][-1]['seconds']:.0f} s)", flush=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    write_markdown(result)
    print(table(result["rows"]))


if __name__ == "__main__":
    main()
