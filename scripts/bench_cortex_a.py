"""Check edgekd's Cortex-A cycle model out of sample against XNNPACK's published MobileNet times.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_cortex_a.py            # export, count, write the results
    .venv/bin/python scripts/bench_cortex_a.py --stage export                # only convert the models
    .venv/bin/python scripts/bench_cortex_a.py --stage count --only v2:fp32:cortex-a72

Builds MobileNet v1 1.0, v2 1.0, v3-Large and v3-Small (224x224, random weights: torch seed 0, as XNNPACK's
end2end benchmark uses random weights) with the architectures of the papers (torchvision's layer tables; no
torchvision needed), converts each with edgekd's own recipe (``export_tflite_float``, and
``export_tflite_int8``: fully-integer, per-channel, histogram-calibrated on 4 seeded random inputs) and counts
one steady invoke (the second; the first is XNNPACK's set-up) per model and core under ``qemu-aarch64`` with
LiteRT + XNNPACK on one thread and edgekd's instruction-class plugin (native/insn_class.c). The cycle model
(edgekd/emulate/timing_a.py) turns the class counts into milliseconds at the published device's clock and
thread count; rows are compared with XNNPACK's README tables. Which rows fit the model's two constants and
which only test it is in FIT_ROWS / each row's ``role``. Counts are cached under --work, so the slow part
(about 2-6 minutes per model and core on a 2-core machine) can run in the background and resume.
Writes docs/bench_cortex_a.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekd.emulate.aarch64 import provision, run_litert_script, stand_in_root  # noqa: E402
from edgekd.export.tflite import export_tflite_float, export_tflite_int8, inspect_tflite  # noqa: E402
from edgekd.io import write_json  # noqa: E402
from edgekd.targets import load_target  # noqa: E402

README = ("XNNPACK README, Performance (github.com/google/XNNPACK): phone tables benchmarked Mar 27 2020 "
          "(end2end_bench, Android NDK r21), Raspberry Pi table Feb 8 2022 (end2end-bench, Raspbian Buster)")
PIXEL3A = "Pixel 3a (Snapdragon 670: 2x Kryo 360 Gold = Cortex-A75-class, 2.0 GHz)"
PI4 = "Raspberry Pi 4 (BCM2711, ARM64): 4x Cortex-A72, 1.5 GHz"
PI3 = "Raspberry Pi 3+ (BCM2837B0): 4x Cortex-A53, 1.4 GHz"
# (model, precision, device, QEMU core, MHz, threads, published ms, role). Roles: "fit" fits a core's float or
# integer factor, "fit-threads" (with the Pixel 3a's 1-thread rows) fits the per-operator serial cycles;
# "test" rows are never used to fit anything (the Pixel 3a's 1-thread v2/v3 rows enter only the thread fit,
# which a 1-thread figure does not use).
PUBLISHED = [
    ("v1", "fp32", PIXEL3A, "cortex-a76", 2000, 1, 88.0, "fit"),
    ("v2", "fp32", PIXEL3A, "cortex-a76", 2000, 1, 55.0, "test"),
    ("v3l", "fp32", PIXEL3A, "cortex-a76", 2000, 1, 44.0, "test"),
    ("v3s", "fp32", PIXEL3A, "cortex-a76", 2000, 1, 14.0, "test"),
    ("v1", "fp32", PIXEL3A, "cortex-a76", 2000, 2, 46.0, "fit-threads"),
    ("v2", "fp32", PIXEL3A, "cortex-a76", 2000, 2, 28.0, "fit-threads"),
    ("v3l", "fp32", PIXEL3A, "cortex-a76", 2000, 2, 24.0, "fit-threads"),
    ("v3s", "fp32", PIXEL3A, "cortex-a76", 2000, 2, 8.0, "fit-threads"),
    ("v1", "fp32", PI4, "cortex-a72", 1500, 4, 77.0, "fit"),
    ("v2", "fp32", PI4, "cortex-a72", 1500, 4, 46.0, "test"),
    ("v3l", "fp32", PI4, "cortex-a72", 1500, 4, 40.0, "test"),
    ("v3s", "fp32", PI4, "cortex-a72", 1500, 4, 15.0, "test"),
    ("v1", "int8", PI4, "cortex-a72", 1500, 4, 24.0, "fit"),
    ("v2", "int8", PI4, "cortex-a72", 1500, 4, 17.0, "test"),
    ("v1", "fp32", PI3, "cortex-a53", 1400, 4, 114.0, "fit"),
    ("v2", "fp32", PI3, "cortex-a53", 1400, 4, 79.0, "test"),
    ("v3l", "fp32", PI3, "cortex-a53", 1400, 4, 67.0, "test"),
    ("v3s", "fp32", PI3, "cortex-a53", 1400, 4, 22.0, "test"),
    ("v1", "int8", PI3, "cortex-a53", 1400, 4, 46.0, "fit"),
    ("v2", "int8", PI3, "cortex-a53", 1400, 4, 30.0, "test"),
]
# Counted and timed but with no published figure to compare with (the A76's int8 uses SDOT kernels).
UNPUBLISHED = [("v1", "int8", PIXEL3A, "cortex-a76", 2000, 1, None, "unpublished"),
               ("v2", "int8", PIXEL3A, "cortex-a76", 2000, 1, None, "unpublished")]
PROFILE = {"cortex-a53": "raspberry-pi-3b-plus", "cortex-a72": "raspberry-pi-4b", "cortex-a76": "raspberry-pi-5"}
NAMES = {"v1": "MobileNet v1 1.0", "v2": "MobileNet v2 1.0", "v3l": "MobileNet v3-Large", "v3s": "MobileNet v3-Small"}


def _divisible(v: float, d: int = 8) -> int:
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


def _cbn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = None
         ) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    return layers + ([act()] if act is not None else [])


def mobilenet_v1(classes: int = 1000) -> nn.Module:
    """MobileNet v1 1.0 (Howard et al. 2017): a 3x3 stem then 13 depthwise-separable blocks, ReLU6."""
    plan = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + \
        [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
    layers = _cbn(3, 32, 3, 2, act=nn.ReLU6)
    for cin, cout, stride in plan:
        layers += _cbn(cin, cin, 3, stride, cin, nn.ReLU6) + _cbn(cin, cout, 1, act=nn.ReLU6)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, classes))


class _Inverted(nn.Module):
    """An inverted residual (MobileNet v2/v3): expand 1x1, depthwise kxk, optional squeeze-excite, project 1x1;
    the skip ``x + y`` (no ReLU after it) when shapes allow."""

    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, act: type[nn.Module], stride: int) -> None:
        super().__init__()
        layers = _cbn(cin, exp, 1, act=act) if exp != cin else []
        layers += _cbn(exp, exp, k, stride, exp, act)
        if se:
            layers.append(_SqueezeExcite(exp, _divisible(exp // 4)))
        self.body = nn.Sequential(*layers, *_cbn(exp, cout, 1))
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.skip else self.body(x)


class _SqueezeExcite(nn.Module):
    def __init__(self, ch: int, squeeze: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(ch, squeeze, 1), nn.Conv2d(squeeze, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(s))))


def mobilenet_v2(classes: int = 1000) -> nn.Module:
    """MobileNet v2 1.0 (Sandler et al. 2018), torchvision's layer table."""
    layers: list[nn.Module] = list(_cbn(3, 32, 3, 2, act=nn.ReLU6))
    cin = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]:
        for i in range(n):
            layers.append(_Inverted(cin, 3, cin * t, c, False, nn.ReLU6, s if i == 0 else 1))
            cin = c
    layers += _cbn(cin, 1280, 1, act=nn.ReLU6)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes))


_V3L = [(16, 3, 16, 16, 0, "RE", 1), (16, 3, 64, 24, 0, "RE", 2), (24, 3, 72, 24, 0, "RE", 1),
        (24, 5, 72, 40, 1, "RE", 2), (40, 5, 120, 40, 1, "RE", 1), (40, 5, 120, 40, 1, "RE", 1),
        (40, 3, 240, 80, 0, "HS", 2), (80, 3, 200, 80, 0, "HS", 1), (80, 3, 184, 80, 0, "HS", 1),
        (80, 3, 184, 80, 0, "HS", 1), (80, 3, 480, 112, 1, "HS", 1), (112, 3, 672, 112, 1, "HS", 1),
        (112, 5, 672, 160, 1, "HS", 2), (160, 5, 960, 160, 1, "HS", 1), (160, 5, 960, 160, 1, "HS", 1)]
_V3S = [(16, 3, 16, 16, 1, "RE", 2), (16, 3, 72, 24, 0, "RE", 2), (24, 3, 88, 24, 0, "RE", 1),
        (24, 5, 96, 40, 1, "HS", 2), (40, 5, 240, 40, 1, "HS", 1), (40, 5, 240, 40, 1, "HS", 1),
        (40, 5, 120, 48, 1, "HS", 1), (48, 5, 144, 48, 1, "HS", 1), (48, 5, 288, 96, 1, "HS", 2),
        (96, 5, 576, 96, 1, "HS", 1), (96, 5, 576, 96, 1, "HS", 1)]


def mobilenet_v3(table: list[tuple[int, ...]], last: int, classes: int = 1000) -> nn.Module:
    """MobileNet v3 (Howard et al. 2019), torchvision's layer tables: hardswish, squeeze-excite, 5x5 dw."""
    layers: list[nn.Module] = list(_cbn(3, 16, 3, 2, act=nn.Hardswish))
    for cin, k, exp, cout, se, act, s in table:
        layers.append(_Inverted(cin, k, exp, cout, bool(se), nn.ReLU if act == "RE" else nn.Hardswish, s))
    cout = table[-1][3]
    layers += _cbn(cout, 6 * cout, 1, act=nn.Hardswish)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6 * cout, last),
                         nn.Hardswish(), nn.Linear(last, classes))


BUILDERS = {"v1": mobilenet_v1, "v2": mobilenet_v2, "v3l": lambda: mobilenet_v3(_V3L, 1280),
            "v3s": lambda: mobilenet_v3(_V3S, 1024)}


def _old_cpi_ms(instructions: int, cpu: str, mhz: int, threads: int) -> float:
    """What the former model (one CPI per core, perfect thread scaling) would have said, for comparison."""
    return instructions * {"cortex-a53": 1.94, "cortex-a72": 2.14, "cortex-a76": 0.87}[cpu] / (mhz * 1e3) / threads


def export(work: Path, name: str, precision: str) -> Path:
    """The model's .tflite (cached): random weights (seed 0), BatchNorm statistics randomised as well."""
    path = work / f"mobilenet_{name}_{precision}.tflite"
    if path.is_file():
        return path
    torch.manual_seed(0)
    model = BUILDERS[name]()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so int8 scales are not degenerate
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    t = time.time()
    if precision == "fp32":
        art = export_tflite_float(model, (3, 224, 224), path)
    else:
        calib = np.random.default_rng(0).standard_normal((4, 3, 224, 224)).astype(np.float32)
        art = export_tflite_int8(model, (3, 224, 224), calib, path)
    print(f"exported {path.name}: {art.bytes / 1e6:.1f} MB, {len(art.graph.ops)} ops, float islands "
          f"{sorted(set(art.graph.float_islands)) or 'none'} ({time.time() - t:.0f} s)", flush=True)
    return path


def count(work: Path, name: str, precision: str, cpu: str) -> dict:
    """Class counts of the second invoke on ``cpu`` (cached as JSON next to the model)."""
    out = work / f"mobilenet_{name}_{precision}.{cpu}.json"
    if out.is_file():
        return json.loads(out.read_text())
    model = export(work, name, precision)
    graph = inspect_tflite(model)
    rng = np.random.default_rng(0)
    shape = (2, *graph.input.shape[1:])
    x = rng.standard_normal(shape).astype(np.float32) if graph.input.dtype == "float32" else \
        rng.integers(-128, 128, shape).astype(np.int8)
    root = provision()
    view = stand_in_root(root, load_target(PROFILE[cpu]))
    t = time.time()
    tmp = work / f"run-{name}-{precision}-{cpu}"
    tmp.mkdir(exist_ok=True)
    run = run_litert_script(model, x, "xnnpack", tmp, 3600, (root, view, cpu))
    if not run.ok or not run.classes:
        raise SystemExit(f"{model.name} on {cpu}: {run.error}\n{run.log}")
    result = {"model": name, "precision": precision, "cpu": cpu, "ops": len(graph.ops),
              "float_islands": sorted(set(graph.float_islands)), "instructions": run.instructions,
              "classes": run.classes[-1], "xnnpack_delegate": bool(run.info.get("delegated")),
              "wall_s": round(time.time() - t, 1)}
    write_json(out, result)
    print(f"counted {model.name} on {cpu}: {run.instructions[-1] / 1e6:.1f}M instructions ({result['wall_s']} s)",
          flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "edgekd" / "bench_cortex_a"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench_cortex_a.json"))
    ap.add_argument("--stage", choices=("export", "count", "all"), default="all")
    ap.add_argument("--only", nargs="*", help="model:precision:cpu triples to count (default: every row's)")
    ap.add_argument("--cores", nargs="*", default=["cortex-a72", "cortex-a76", "cortex-a53"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    every = {(m, p, c) for m, p, _, c, *_ in PUBLISHED + UNPUBLISHED if c in args.cores}
    jobs = sorted(every, key=lambda j: (j[2] != "cortex-a72", j[2], j[1], j[0]))
    if args.only:
        jobs = [tuple(s.split(":")) for s in args.only]  # type: ignore[misc]
    for name, precision in sorted({(m, p) for m, p, _ in jobs}):
        export(work, name, precision)
    if args.stage == "export":
        return
    for job in jobs:
        count(work, *job)
    if args.stage == "count":
        return
    from edgekd.emulate import timing_a
    rows = []
    for name, precision, device, cpu, mhz, threads, ms, role in PUBLISHED + UNPUBLISHED:
        counted = work / f"mobilenet_{name}_{precision}.{cpu}.json"
        if not counted.is_file():
            continue
        c = json.loads(counted.read_text())
        pred = timing_a.predict(c["classes"], cpu, mhz, threads, c["ops"])
        rows.append({"model": NAMES[name], "precision": precision, "device": device, "qemu_cpu": cpu,
                     "clock_mhz": mhz, "threads": threads, "published_ms": ms, "role": role,
                     "counted_ms": round(pred.ms, 2), "ratio": round(pred.ms / ms, 3) if ms else None,
                     "single_thread_ms": round(pred.single_thread_ms, 2), "factor": round(pred.factor, 4),
                     "busiest_group": pred.busiest, "instructions": c["classes"]["total"],
                     "old_cpi_ms": round(_old_cpi_ms(c["classes"]["total"], cpu, mhz, threads), 2),
                     "operators": c["ops"], "float_islands": c["float_islands"]})
    counts = {p.stem: json.loads(p.read_text()) for p in sorted(work.glob("mobilenet_*.json"))}
    doc = {"source": README, "model": timing_a.describe(),
           "method": "one steady invoke (the second) per model and core, LiteRT 2.3 + XNNPACK, 1 thread, counted by "
                     "class under qemu-aarch64 with native/insn_class.c; counted_ms = edgekd.emulate.timing_a at the "
                     "published device's clock and threads; old_cpi_ms = instructions x the former single CPI "
                     "(1.94 / 2.14 / 0.87) / threads (perfect scaling)",
           "rows": rows, "counts": counts}
    write_json(Path(args.out), doc)
    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r['device'].split(':')[0].split(' (')[0]} | {r['qemu_cpu']} | "
              f"{r['threads']} | {r['published_ms'] or '-'} | {r['counted_ms']:.1f} | "
              f"{r['ratio'] if r['ratio'] is not None else '-'} | {r['old_cpi_ms']:.1f} | {r['role']} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
