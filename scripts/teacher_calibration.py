"""How informative are a teacher's soft targets? Accuracy, confidence, calibration and entropy per temperature.

    .venv/bin/python scripts/teacher_calibration.py --task fashion-mnist --teacher runs/teachers/fashion-mnist.pt

Prints one line per temperature and writes docs/teacher_calibration.json. A teacher trained with label smoothing
is under-confident at T=1 and near-uniform at high T, which leaves Hinton KD little to transfer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekd.data import load_task  # noqa: E402
from edgekd.distill.teachers import load_teacher  # noqa: E402
from edgekd.distill.train import predict  # noqa: E402


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="fashion-mnist")
    ap.add_argument("--teacher", default=str(ROOT / "runs" / "teachers" / "fashion-mnist.pt"))
    ap.add_argument("--temperatures", default="1,2,4")
    ap.add_argument("--out", default=str(ROOT / "docs" / "teacher_calibration.json"))
    args = ap.parse_args()
    splits = load_task(args.task)
    teacher = load_teacher(args.teacher, splits.spec, None, None, splits.x_val)
    logits = torch.from_numpy(predict(teacher.module, splits.x_test, tuple(splits.spec.input_shape)))
    rows = []
    for t in (float(v) for v in args.temperatures.split(",")):
        p = torch.softmax(logits / t, 1).numpy()
        conf, pred = p.max(1), p.argmax(1)
        rows.append({"temperature": t, "accuracy": float((pred == splits.y_test).mean()),
                     "mean_top1_prob": float(conf.mean()), "mean_second_prob": float(np.sort(p, 1)[:, -2].mean()),
                     "entropy_nats": float(-(p * np.log(p + 1e-12)).sum(1).mean()),
                     "max_entropy_nats": float(np.log(p.shape[1])),
                     "ece": expected_calibration_error(conf, pred == splits.y_test)})
        print(json.dumps(rows[-1]))
    Path(args.out).write_text(json.dumps({"task": args.task, "teacher": args.teacher, "samples": len(logits),
                                          "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
