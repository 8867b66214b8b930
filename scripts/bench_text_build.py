"""`edgekd build --task text-embedding` end to end, twice, and `edgekd package verify` of its bundle (issue 16).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_text_build.py --targets google-pixel-8 \
        --out runs/text-build --json docs/text_build.json [--sentences 40960]
    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_text_build.py --targets google-pixel-8,nucleo-h743zi2 \
        --once --out runs/text-build-prior --json docs/text_build_prior.json \
        --save-report 'docs/text_build_prior_{target}_report.json'      # the per-token prior start

For each target: the first build (every stage's seconds, the teacher's cache hits and misses, the report's text
metrics and gates), a second build into the same folder (which stages it skipped, its wall time) and `package
verify` of the bundle (its checks, wall time). Everything on this machine's CPU, one torch thread; the load
average is recorded because the machine is shared. ``--fast`` runs the smoke size instead. ``--c-tokenizer``:
the C tokenizer against the Python one on the whole corpus (docs/text_ctokenizer.json).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekd.build import build  # noqa: E402
from edgekd.errors import EdgekdError  # noqa: E402
from edgekd.io import write_json  # noqa: E402
from edgekd.package import verify_package  # noqa: E402


def one(target: str, out: Path, fast: bool, sentences: int | None, once: bool = False,
        emulator: str = "none") -> dict:
    load = os.getloadavg()[0]
    t = time.perf_counter()
    first = build(target, task="text-embedding", teacher="minilm", fast=fast, emulator=emulator, out=out,
                  limit=sentences)
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    second = None if once else build(target, task="text-embedding", teacher="minilm", fast=fast, emulator=emulator,
                                     out=out, limit=sentences)
    second_s = time.perf_counter() - t
    t = time.perf_counter()
    try:
        check, problem = verify_package(out / first.bundle), None
    except EdgekdError as exc:  # recorded, not fatal: the other targets still run
        check, problem = None, str(exc)
    verify_s = time.perf_counter() - t
    report = first.to_json()
    bundle_bytes = (out / first.bundle).stat().st_size
    return {"target": target, "fast": fast, "load_average_1min_before": round(load, 1),
            "load_average_1min_after": round(os.getloadavg()[0], 1),
            "first_build": {"wall_seconds": round(first_s, 1), "timings_s": report["timings_s"],
                            "skipped_stages": report["skipped_stages"], "teacher": report["teacher"],
                            "student": report["student"], "text_metrics": report["text_metrics"],
                            "gates": report["gates"], "passed": report["passed"], "training": report["distillation"],
                            "evaluated_on": report["evaluated_on"], "bundle_bytes": bundle_bytes},
            "second_build": {"wall_seconds": round(second_s, 1), "skipped_stages": second.skipped_stages}
            if second else None,
            "package_verify": {"wall_seconds": round(verify_s, 1),
                               "checks": [c.to_json() for c in check.vectors] if check else [],
                               "passed": check.passed if check else False, "error": problem}}


def c_tokenizer(buckets: int = 4096, kind: str = "hashed") -> dict:
    """The C tokenizer (host gcc) against the Python one on every corpus sentence."""
    import tempfile

    import numpy as np

    from edgekd.text.ccode import c_sources, run_c_tokenizer
    from edgekd.text.corpus import load_corpus
    from edgekd.text.tokenize import make_tokenizer

    texts = load_corpus().texts
    tok = make_tokenizer(kind, 32, buckets)
    with tempfile.TemporaryDirectory() as tmp:
        table = np.zeros((buckets, 8), np.int8).tobytes()
        for name, text in c_sources(tok.settings(), {"width": 8, "scale": 1.0, "zero_point": 0}, table,
                                    getattr(tok, "words", None)).items():
            (Path(tmp) / name).write_text(text)
        t = time.perf_counter()
        ids = run_c_tokenizer(tmp, texts, 32)
        c_s = time.perf_counter() - t
    t = time.perf_counter()
    py = tok.encode(texts)
    py_s = time.perf_counter() - t
    differ = (ids != py).any(1)
    ascii_ = np.array([t.isascii() for t in texts])
    return {"sentences": len(texts), "ascii": int(ascii_.sum()), "ascii_differ": int((differ & ascii_).sum()),
            "non_ascii_differ": int((differ & ~ascii_).sum()), "c_seconds": round(c_s, 1),
            "python_seconds": round(py_s, 1), "buckets": buckets, "kind": kind}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="google-pixel-8")
    ap.add_argument("--out", default=str(ROOT / "runs" / "text-build"))
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--sentences", type=int, help="training sentences (default: the task recipe's)")
    ap.add_argument("--json", default=str(ROOT / "docs" / "text_build.json"))
    ap.add_argument("--once", action="store_true", help="one build per target (no second, skipping build)")
    ap.add_argument("--save-report", metavar="PATTERN", help="copy each build's report.json here ({target} in "
                    "the name), e.g. docs/text_build_{target}_report.json")
    ap.add_argument("--c-tokenizer", action="store_true", help="only: C vs Python tokenizer on the whole corpus "
                                                                  "(docs/text_ctokenizer.json)")
    ap.add_argument("--kind", default="hashed", help="--c-tokenizer: hashed (docs/text_ctokenizer.json) or frequent "
                    "(docs/text_ctokenizer_frequent.json)")
    ap.add_argument("--emulator", default="none", help="the builds' --emulator (qemu: counted latency on the "
                    "emulated core)")
    args = ap.parse_args()
    if args.c_tokenizer:
        name = "text_ctokenizer.json" if args.kind == "hashed" else f"text_ctokenizer_{args.kind}.json"
        path = ROOT / "docs" / name
        write_json(path, c_tokenizer(kind=args.kind))
        print(path.read_text())
        return
    import torch

    torch.set_num_threads(1)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result = {"started": started, "host": f"{os.cpu_count()} CPU cores shared with other jobs, torch threads 1",
              "runs": []}
    for target in args.targets.split(","):
        result["runs"].append(one(target, Path(args.out) / target, args.fast, args.sentences, args.once,
                                  args.emulator))
        if args.save_report:
            from edgekd.io import atomic_write_bytes

            atomic_write_bytes(Path(args.save_report.format(target=target)),
                               (Path(args.out) / target / "report.json").read_bytes())
        write_json(args.json, result)
        print(target, result["runs"][-1]["first_build"]["text_metrics"]["int8"]["mean_cosine"], flush=True)
    print("wrote", args.json)


if __name__ == "__main__":
    main()
