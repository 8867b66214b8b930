"""Check the cost model against reality: convert real students to fully-int8 .tflite, measure the file size
and the minimum tensor arena TFLite Micro accepts, and compare with the predictions.

Writes docs/costmodel.json and the table between the markers in docs/costmodel.md. ~40 s on 2 cores.
    .venv/bin/python scripts/check_costmodel.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekd.costmodel import analyze  # noqa: E402
from edgekd.export.tflite import export_tflite_int8  # noqa: E402
from edgekd.students import StudentConfig, build_student, model_input_shape  # noqa: E402
from edgekd.verify.tflm import min_arena  # noqa: E402


class ByHandDSCNN(nn.Module):
    """The by-hand Fashion-MNIST DS-CNN of docs/stack (ds_m-like): padding=1, stride=2 on 28x28 -> PAD ops."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                    nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.net = nn.Sequential(nn.Conv2d(1, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                 *block(width, width * 2, 1), *block(width * 2, width * 2, 2),
                                 *block(width * 2, width * 4, 1))
        self.fc = nn.Linear(width * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x).mean((2, 3)))


CASES = [
    ("dscnn", {"width": 48, "depth": 6, "resolution": None}, (1, 28, 28)),
    ("dscnn", {"width": 16, "depth": 4, "resolution": 20}, (1, 28, 28)),
    ("resnet", {"width": 16, "depth": 2, "stages": 2, "resolution": None}, (1, 28, 28)),
    ("resnet", {"width": 24, "depth": 1, "stages": 3, "resolution": None}, (1, 8, 8)),
    ("cnn1d", {"width": 32, "depth": 3, "kernel": 5}, (6, 100)),
    ("mlp", {"width": 128, "depth": 2}, (1, 8, 8)),
    ("by-hand-dscnn", {"width": 32}, (1, 28, 28)),
]


def measure(name: str, params: dict, task_shape: tuple[int, ...], workdir: Path) -> dict:
    torch.manual_seed(0)
    if name == "by-hand-dscnn":
        model, shape, channels_last = ByHandDSCNN(**params).eval(), task_shape, True
    else:
        model = build_student(StudentConfig(name, params), task_shape, 10).eval()
        shape, channels_last = model_input_shape(model), model.channels_last_input
    # Calibrate the BN statistics away from identity so quantization ranges are realistic.
    calib = np.random.default_rng(0).standard_normal((64, *shape)).astype(np.float32)
    predicted = analyze(model, shape, "int8", channels_last_input=channels_last)
    start = time.perf_counter()
    artifact = export_tflite_int8(model, shape, calib, workdir / f"{name}.tflite", channels_last=channels_last)
    measured = min_arena(artifact.path)
    seconds = time.perf_counter() - start
    return {
        "architecture": name,
        "config": params,
        "input_shape": list(shape),
        "params": predicted.params,
        "macs": predicted.macs,
        "ops_predicted": [ly.op for ly in predicted.layers],
        "ops_converted": artifact.graph.ops,
        "ops_match": [ly.op for ly in predicted.layers] == artifact.graph.ops,
        "float_islands": artifact.graph.float_islands,
        "int8_weight_bytes_predicted": predicted.int8_weight_bytes,
        "tflite_bytes_predicted": predicted.tflite_bytes,
        "tflite_bytes_measured": artifact.bytes,
        "activation_bytes_predicted": predicted.activation_bytes,
        "arena_head_measured": measured.head_bytes,
        "overhead_bytes_predicted": predicted.overhead_bytes,
        "arena_tail_measured": measured.tail_bytes,
        "arena_bytes_predicted": predicted.arena_bytes,
        "arena_bytes_measured": measured.min_arena_bytes,
        "arena_error_pct": round(100 * (predicted.arena_bytes / measured.min_arena_bytes - 1), 2),
        "tflite_error_pct": round(100 * (predicted.tflite_bytes / artifact.bytes - 1), 2),
        "weights_over_file": round(predicted.int8_weight_bytes / artifact.bytes, 3),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, params, shape in CASES:
            row = measure(name, params, shape, Path(tmp))
            rows.append(row)
            print(f"{name:<14} arena pred {row['arena_bytes_predicted']:>7} "
                  f"meas {row['arena_bytes_measured']:>7} ({row['arena_error_pct']:+.1f}%)  "
                  f"tflite pred {row['tflite_bytes_predicted']:>7} meas {row['tflite_bytes_measured']:>7} "
                  f"({row['tflite_error_pct']:+.1f}%)  ops match {row['ops_match']}", flush=True)
    out = {"runtime": "tflite-micro Python interpreter (host, x86_64, reference kernels), min arena searched "
                      "to 16 bytes in subprocesses", "converter": "litert-torch 0.10.0 PT2E full int8",
           "rows": rows}
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "costmodel.json").write_text(json.dumps(out, indent=2) + "\n")
    write_table(rows)
    print("wrote docs/costmodel.json and docs/costmodel.md")


def write_table(rows: list[dict]) -> None:
    lines = ["| architecture | config | params | MACs | int8 weights (pred) | .tflite pred / measured | "
             "weights / file | arena pred / measured (TFLM) | arena error | ops match | float islands |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        config = ", ".join(f"{k}={v}" for k, v in r["config"].items() if v is not None)
        lines.append(
            f"| {r['architecture']} | {config} | {r['params']:,} | {r['macs']:,} | "
            f"{r['int8_weight_bytes_predicted']:,} | {r['tflite_bytes_predicted']:,} / {r['tflite_bytes_measured']:,} "
            f"({r['tflite_error_pct']:+.1f}%) | {r['weights_over_file']:.2f} | "
            f"{r['arena_bytes_predicted']:,} / {r['arena_bytes_measured']:,} | {r['arena_error_pct']:+.1f}% | "
            f"{'yes' if r['ops_match'] else 'no'} | {', '.join(r['float_islands']) or 'none'} |")
    doc = ROOT / "docs" / "costmodel.md"
    text = doc.read_text()
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    doc.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail)


if __name__ == "__main__":
    main()
