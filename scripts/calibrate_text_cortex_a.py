"""Per-operator cycles of text students' int8 ``.tflite`` bodies on LiteRT + XNNPACK, counted on the emulated Cortex-A
cores, fitted into ``edgekd/text/cortex_a_cycles.json`` (read by :func:`edgekd.costmodel.estimate_latency`).

Why: the profile-rate estimate (MACs / (int8 MACs per cycle x clock x threads)) put the Pixel 8 / Pi phone
student at 3.40 ms on the Pi Zero 2 W where the counter gave 6.59 ms on one thread and 1.84 ms on four; the A53's
1.2 int8 MACs/cycle is a guess (targets/raspberry-pi-zero-2-w.yaml) and the text students' (1, k) convolutions over
128-256 channels are large matrix products that XNNPACK runs at about twice that. This script does for the text
students' operators what scripts/calibrate_costs.py does for the generated C on microcontrollers:

1. bodies of the text students' operators (one (1, k) CONV_2D + ReLU and MEAN; a 1x1 CONV_2D, MEAN and a
   bias-free FULLY_CONNECTED projection; whole conv bodies of several shapes; a body starting with MEAN leaves the
   file's input float) are exported to int8 ``.tflite`` with litert-torch (random calibration rows, seed 0);
2. each runs on 4 random int8 inputs under ``qemu-aarch64 -cpu C`` with edgekd's instruction-class plugin (one
   thread, XNNPACK), and the median steady invoke is timed by :mod:`edgekd.emulate.timing_a` (cycles: the same
   counter as the build's latency gate, independent of the clock);
3. per core, non-negative least squares of the counted cycles on the cost model's features of each body
   (:func:`edgekd.costmodel.cortex_a_text_features`, summed per model): conv MACs, conv outputs, FC MACs, FC
   outputs, MEAN inputs, operators, 1 (the invoke);
4. the whole bodies listed in ``HELD_OUT`` are left out of the fit and reported as estimate vs counted, with the
   profile-rate estimate beside it (before / after).

Run: ``OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/calibrate_text_cortex_a.py`` (about 5 minutes of
one core: 17 conversions, 51 emulated runs). ``--cores cortex-a53`` limits the cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd import costmodel  # noqa: E402
from edgekd.io import write_json  # noqa: E402
from edgekd.students.text_conv import ConvBody  # noqa: E402

L = 32
DIM = 384
#: A profile per emulated core: its /proc/cpuinfo view (which XNNPACK reads to pick kernels) and clock.
VIEWS = {"cortex-a53": "raspberry-pi-zero-2-w", "cortex-a72": "raspberry-pi-4b", "cortex-a76": "raspberry-pi-5"}
#: Whole bodies kept out of the fit: the planner's phone/Pi student and a microcontroller-sized one.
HELD_OUT = ("body_128_256_2_5", "body_96_192_3_5")


class Mean(nn.Module):
    """MEAN over the tokens alone (what ConvBody does before its projection)."""

    def forward(self, x):  # type: ignore[no-untyped-def]
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def conv(cin: int, cout: int, k: int) -> nn.Module:
    """One (1, k) convolution, then the MEAN: a 4-D output would add the converter's output TRANSPOSE."""
    return nn.Sequential(nn.Conv2d(cin, cout, (1, k), padding=(0, k // 2), bias=False), nn.ReLU(), Mean())


def cases() -> list[tuple[str, nn.Module, int]]:
    """(name, body, input channels): (N, E, 1, L) rows in."""
    out: list[tuple[str, nn.Module, int]] = []
    for cin, cout, k in ((32, 64, 3), (64, 128, 5), (96, 192, 3), (128, 256, 3), (256, 256, 5), (32, 192, 5),
                         (192, 192, 5), (64, 256, 3)):
        out.append((f"conv_{cin}_{cout}_{k}", conv(cin, cout, k), cin))
    for c in (64, 192, 256):  # a MEAN first leaves the file's input float: a 1x1 convolution in front
        out.append((f"fc_{c}", ConvBody(c, c, 1, 1, DIM), c))
    for e, w, d, k in ((32, 64, 2, 5), (64, 128, 2, 3), (32, 128, 3, 5), (128, 256, 3, 3), (128, 256, 2, 5),
                       (96, 192, 3, 5)):
        out.append((f"body_{e}_{w}_{d}_{k}", ConvBody(e, w, d, k, DIM), e))
    return out


def features(body: nn.Module, cin: int) -> tuple[list[float], int, float]:
    """Summed per-class features of a body (cost model's layers), its operator count and MACs."""
    report = costmodel.analyze(body, (cin, 1, L), "int8", channels_last_input=True)
    total = [0.0] * (len(costmodel.CORTEX_A_TEXT_FEATURES) - 1) + [1.0]  # the invoke, once
    ops = 0
    for layer in report.layers:
        f = costmodel.cortex_a_text_features(layer)
        if f is None:
            raise SystemExit(f"{layer.op}: no Cortex-A text feature (the fit covers CONV_2D, MEAN, FULLY_CONNECTED)")
        if any(f):
            total = [a + b for a, b in zip(total, f, strict=True)]
            ops += 1
    return total, ops, float(report.macs)


def export(body: nn.Module, cin: int, path: Path) -> list[str]:
    from edgekd.export.tflite import export_tflite_int8

    rng = np.random.default_rng(0)
    calib = (rng.standard_normal((32, cin, 1, L)) * 0.5).astype(np.float32)
    art = export_tflite_int8(body.eval(), (cin, 1, L), calib, path, channels_last=True)
    return list(art.graph.ops)


def count(model: Path, cpu: str, x: np.ndarray, work: Path) -> dict[str, Any]:
    from edgekd.emulate import timing_a
    from edgekd.emulate.aarch64 import provision, run_litert_script, stand_in_root
    from edgekd.targets import load_target

    root = provision()
    view = stand_in_root(root, load_target(VIEWS[cpu]))
    run = run_litert_script(model, x, "xnnpack", work, 900, (root, view, cpu))
    if not run.ok or not run.classes:
        raise SystemExit(f"{model} on {cpu}: {run.error}\n{run.log[-2000:]}")
    steady = run.classes[1:] or run.classes
    median = sorted(steady, key=lambda c: c["total"])[len(steady) // 2]
    pred = timing_a.predict(median, cpu, 1000.0)
    return {"cycles": round(pred.cycles), "instructions": int(median["total"])}


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls as _nnls

    return _nnls(a, b)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cores", default=",".join(VIEWS), help="emulated cores to calibrate")
    ap.add_argument("--out", default=str(ROOT / "edgekd" / "text" / "cortex_a_cycles.json"))
    ap.add_argument("--resume", help="a JSON file of counted bodies, reused and extended (a rerun counts only the "
                    "missing ones)")
    ap.add_argument("--record", default=str(ROOT / "docs" / "text_cortex_a_calibration.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cores = args.cores.split(",")
    done_path = Path(args.resume) if args.resume else None
    done = json.loads(done_path.read_text()) if done_path and done_path.is_file() else {}
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekd-text-cal-") as tmp:
        work = Path(tmp)
        for name, body, cin in cases():
            if name in done and all(c in done[name]["counted"] for c in cores):
                rows.append(done[name])
                continue
            feat, ops, macs = features(body, cin)
            path = work / f"{name}.tflite"
            file_ops = export(body, cin, path)
            rng = np.random.default_rng(zlib.crc32(name.encode()))
            x = rng.integers(-128, 128, size=(4, 1, L, cin), dtype=np.int8)  # (N, 1, L, E): channels-last rows
            row: dict[str, Any] = {"name": name, "macs": macs, "operators": ops, "file_ops": file_ops,
                                   "features": feat, "counted": {}}
            for cpu in cores:
                row["counted"][cpu] = count(path, cpu, x, work)
            rows.append(row)
            if done_path:
                done[name] = row
                write_json(done_path, done)
            print(name, file_ops, {c: v["cycles"] for c, v in row["counted"].items()},
                  f"{time.perf_counter() - start:.0f}s", flush=True)
    fits: dict[str, Any] = {}
    for cpu in cores:
        train = [r for r in rows if r["name"] not in HELD_OUT]
        a = np.array([r["features"] for r in train])
        b = np.array([r["counted"][cpu]["cycles"] for r in train], dtype=float)
        coef = nnls(a / b[:, None], np.ones(len(b)))  # relative least squares: small and large bodies alike
        err = {r["name"]: round(100 * (float(np.dot(coef, r["features"])) / r["counted"][cpu]["cycles"] - 1), 1)
               for r in rows}
        fits[cpu] = {"coef": [float(f"{c:.6g}") for c in coef], "cases": len(train),
                     "max_abs_err_pct": max(abs(err[r["name"]]) for r in train), "err_pct": err}
        print(cpu, fits[cpu], flush=True)
    data = {"format": "edgekd-cortex-a-text-cycles/1",
            "how": "scripts/calibrate_text_cortex_a.py: int8 .tflite bodies of the text students' operators on LiteRT "
                   "+ XNNPACK (1 thread) under qemu-aarch64 with edgekd's instruction-class plugin, median steady "
                   "invoke of 4 random inputs timed by edgekd.emulate.timing_a (cycles); non-negative relative "
                   "least squares per core",
            "features": list(costmodel.CORTEX_A_TEXT_FEATURES), "held_out": list(HELD_OUT),
            "cores": {c: {k: v for k, v in f.items() if k != "err_pct"} for c, f in fits.items()}}
    write_json(args.out, data)
    write_json(args.record, data | {"cases": rows, "err_pct": {c: f["err_pct"] for c, f in fits.items()},
                                    "wall_s": round(time.perf_counter() - start, 1)})
    print(f"wrote {args.out} and {args.record}")


if __name__ == "__main__":
    main()
