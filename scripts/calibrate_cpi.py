"""Calibrate the cycles-per-instruction factors that turn QEMU instruction counts into "counted" milliseconds.

    .venv/bin/python scripts/calibrate_cpi.py            # ~3 min: converts MobileNet v1, runs it on 3 cores

XNNPACK's README publishes MobileNet v1 1.0X fp32 (224x224, random weights) times on real boards. This script
builds the same network with random weights, converts it to an fp32 .tflite, counts the instructions of one
invoke under qemu-aarch64 (LiteRT + XNNPACK, one thread) on each core, and solves
CPI = published seconds x clock x threads / counted instructions. Multi-threaded publications (Raspberry Pi)
assume perfect scaling over the 4 threads, so their single-thread cycles and CPI are upper bounds.
Writes docs/cpi_calibration.json; edgekd/emulate/aarch64.py's CORES table carries the rounded results.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekd.emulate.aarch64 import provision, run_litert_script, stand_in_root  # noqa: E402
from edgekd.export.tflite import export_tflite_float  # noqa: E402
from edgekd.targets import load_target  # noqa: E402

XNNPACK_README = "https://github.com/google/XNNPACK/blob/master/README.md (Performance, 2020)"
# (our profile whose stand-in core runs the count, QEMU core, published board, its clock, threads, ms)
ANCHORS = [
    ("raspberry-pi-3b-plus", "cortex-a53", "Raspberry Pi 3B+ (BCM2837B0, 4x Cortex-A53)", 1400, 4, 115.0),
    ("raspberry-pi-4b", "cortex-a72", "Raspberry Pi 4 (BCM2711, 4x Cortex-A72)", 1500, 4, 75.0),
    ("raspberry-pi-5", "cortex-a76", "Pixel 3a (Snapdragon 670, Kryo 360 Gold = Cortex-A75-class)", 2000, 1, 88.0),
]


def mobilenet_v1(width: float = 1.0, classes: int = 1000) -> nn.Module:
    """MobileNet v1 (Howard et al. 2017): a 3x3 stem then 13 depthwise-separable blocks, ReLU6, BatchNorm."""
    def c(n: int) -> int:
        return int(n * width)

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]

    plan = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + \
        [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
    layers: list[nn.Module] = [nn.Conv2d(3, c(32), 3, 2, 1, bias=False), nn.BatchNorm2d(c(32)), nn.ReLU6()]
    for cin, cout, stride in plan:
        layers += block(c(cin), c(cout), stride)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c(1024), classes)]
    return nn.Sequential(*layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "cpi_calibration.json"))
    ap.add_argument("--invokes", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = mobilenet_v1().eval()
    root = provision()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgekd-cpi-") as tmp:
        work = Path(tmp)
        tflite = work / "mobilenet_v1_1.0_224_fp32.tflite"
        print("converting MobileNet v1 1.0 (random weights) to fp32 .tflite ...", flush=True)
        export_tflite_float(model, (3, 224, 224), tflite)
        x = np.random.default_rng(0).standard_normal((args.invokes, 224, 224, 3)).astype(np.float32)
        for profile, cpu, board, mhz, threads, ms in ANCHORS:
            target = load_target(profile)
            view = stand_in_root(root, target)
            run = run_litert_script(tflite, x, "xnnpack", work, 1800, (root, view, cpu))
            if not run.ok:
                raise SystemExit(f"{cpu}: {run.error}\n{run.log}")
            steady = run.instructions[1:] or run.instructions
            insns = int(np.median(steady))
            cycles = ms * 1e-3 * mhz * 1e6 * threads
            row = {"qemu_cpu": cpu, "published_board": board, "clock_mhz": mhz, "threads": threads,
                   "published_ms": ms, "single_thread_cycles": cycles, "counted_instructions": insns,
                   "cpi": round(cycles / insns, 3), "xnnpack_delegate": bool(run.info.get("delegated")),
                   "invoke_counts": run.instructions}
            print(f"{cpu:11s} {insns / 1e6:8.1f} M instructions  CPI {row['cpi']:.3f}  ({board}, {ms} ms, "
                  f"{threads} thread(s))", flush=True)
            results.append(row)
    doc = {"model": "MobileNet v1 1.0, 224x224, fp32, random weights (torch seed 0), LiteRT + XNNPACK, 1 thread",
           "source": XNNPACK_README,
           "method": "CPI = published ms x clock x threads / counted instructions per invoke (median of invokes "
                     "after the first); multi-threaded publications assume perfect 4-thread scaling (upper bound)",
           "cores": results}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
