"""Device-side launcher for issue 15's full-label 30-epoch measurement (not part of edgekd).

edgekd itself puts the student and a loaded PyTorch teacher on CUDA when there is one
(edgekd.distill.train.device; Teacher.place), so this launcher only chooses what to run; the teacher-output
cache key (teacher file sha256, images, augmentation) does not depend on the device.

    gpu.py teacher OUT EPOCHS WIDTH BLOCKS      train a built-in resnet-teacher (recipe, no label smoothing)
    gpu.py precompute TEACHER MIX DRAW...       fill the teacher-output cache for these augmentation draws
    gpu.py bench ARGS...                        scripts/bench_distill.py ARGS
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # bench_distill imports benchdocs

LIMIT = int(os.environ["DEV15_LIMIT"]) if os.environ.get("DEV15_LIMIT") else None  # smoke tests only


def teacher(out: str, epochs: str, width: str, blocks: str) -> None:
    from edgekd.distill import train_teacher
    from edgekd.logs import setup

    setup()
    record = train_teacher("fashion-mnist", out, epochs=int(epochs), progress=False, limit=LIMIT,
                           params={"width": int(width), "blocks": int(blocks)})
    side = Path(out).with_suffix(".pt.json")
    data = json.loads(side.read_text())
    data["trained_on"] = (f"an {torch.cuda.get_device_name(0)} (PyTorch CUDA)" if torch.cuda.is_available()
                          else "the CPU")
    side.write_text(json.dumps(data, indent=2) + "\n")
    print(f"teacher {out}: test {record['test_accuracy']:.4f} val {record['val_accuracy']:.4f} "
          f"{record['train_seconds']:.0f} s", flush=True)


def precompute(ref: str, mix: str, *draws: str) -> None:
    """The cache entries ``distill`` would compute for full-label fashion-mnist (aug_seed 0), for ``draws``."""
    from edgekd.data import load_task
    from edgekd.data.unlabelled import prepare, training_union
    from edgekd.distill import DATA_SEED, augment
    from edgekd.distill.cache import TeacherCache
    from edgekd.distill.teachers import load_teacher

    splits = prepare(load_task("fashion-mnist", seed=DATA_SEED, limit=LIMIT), None, None)
    spec = splits.spec
    t = load_teacher(ref, spec, None, None, splits.x_val)
    policy = augment.Policy.for_task(spec.name, spec.kind, True)
    x_union, _ = training_union(splits)
    cache = TeacherCache(t, x_union, None, policy, 0, mix=mix)
    for v in draws:
        cache.ensure(int(v))
    print(f"precomputed {mix} draws {draws[0]}..{draws[-1]} in {cache.dir} ({cache.stats})", flush=True)


def main() -> None:
    verb, *rest = sys.argv[1:]
    if verb == "teacher":
        teacher(*rest)
    elif verb == "precompute":
        precompute(*rest)
    elif verb == "bench":
        sys.argv = [str(ROOT / "scripts" / "bench_distill.py"), *rest]
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        raise SystemExit(f"unknown verb {verb!r}")


if __name__ == "__main__":
    main()
