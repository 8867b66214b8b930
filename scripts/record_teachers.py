"""Write docs/teachers.json from teacher files, not by hand.

    .venv/bin/python scripts/record_teachers.py runs/teachers/fashion-mnist-e5.pt --key fashion-mnist-e5
    .venv/bin/python scripts/record_teachers.py --train digits        # train the recipe teacher, then record it

Each entry is the record ``edgekd teacher`` (``edgekd.distill.train_teacher``) wrote next to the file
(``FILE.json``: test and validation accuracy, recipe, training time, data sizes), plus the file's sha256 and size
so the entry names the exact teacher it describes; the per-epoch history is replaced by the number of epochs run.
Entries are keyed by ``--key`` (default: the task); other entries of the file are kept. A teacher file that is
not an edgekd teacher, or has no record, is refused in one line (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekd.distill.teachers import FORMAT as TEACHER_FORMAT  # noqa: E402
from edgekd.distill.teachers import weights_only_load  # noqa: E402
from edgekd.errors import EdgekdError  # noqa: E402
from edgekd.io import sha256_file, write_json  # noqa: E402


def entry(path: Path) -> dict[str, Any]:
    """docs/teachers.json's entry for the teacher file ``path``, from the record written next to it."""
    meta_path = path.with_suffix(path.suffix + ".json")
    if not path.is_file():
        raise EdgekdError(f"{path}: no such teacher file; train one with `edgekd teacher --task TASK --out {path}`")
    blob = weights_only_load(path, f"{path}: not an edgekd teacher", "give a file `edgekd teacher` wrote")
    if not isinstance(blob, dict) or blob.get("format") != TEACHER_FORMAT:
        raise EdgekdError(f"{path}: not an edgekd teacher (format {TEACHER_FORMAT} expected); give a file "
                          "`edgekd teacher` wrote")
    try:
        record = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise EdgekdError(f"{path}: has no record {meta_path.name}; it is written by `edgekd teacher`, retrain "
                          "the teacher with it") from None
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"{meta_path}: unreadable record ({type(exc).__name__}); retrain the teacher") from None
    task = (blob.get("task") or {}).get("name")
    if not isinstance(record, dict) or record.get("task") != task:
        raise EdgekdError(f"{meta_path}: a record of task {record.get('task') if isinstance(record, dict) else '?'}"
                          f", the file holds a {task} teacher; retrain the teacher")
    history = record.pop("history", None) or []
    record.pop("path", None)
    return record | {"epochs_run": len(history), "file": {"name": path.name, "sha256": sha256_file(path),
                                                         "bytes": path.stat().st_size}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teachers", nargs="*", type=Path, help="teacher files written by `edgekd teacher`")
    ap.add_argument("--key", action="append", default=[], help="entry name per teacher, in order (default: task)")
    ap.add_argument("--train", action="append", default=[],
                    help="TASK: train the task's recipe teacher to runs/teachers/TASK.pt first, then record it")
    ap.add_argument("--epochs", type=int, default=None, help="with --train: epochs instead of the recipe's")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "teachers.json")
    args = ap.parse_args()
    try:
        paths = list(args.teachers)
        for task in args.train:
            from edgekd.distill import train_teacher

            paths.append(Path(train_teacher(task, ROOT / "runs" / "teachers" / f"{task}.pt", args.epochs,
                                            progress=sys.stderr.isatty())["path"]))
        if not paths:
            raise EdgekdError("name a teacher file, or --train TASK")
        if len(args.key) > len(paths):
            raise EdgekdError(f"--key given {len(args.key)} times for {len(paths)} teacher(s); one per teacher")
        entries = {}
        for i, path in enumerate(paths):
            e = entry(path)
            entries[args.key[i] if i < len(args.key) else e["task"]] = e
        try:
            current = json.loads(args.out.read_text()) if args.out.is_file() else {}
        except ValueError:
            raise EdgekdError(f"{args.out}: not JSON; fix or delete it") from None
        write_json(args.out, current | entries)
    except EdgekdError as exc:
        print(f"record_teachers: error: {exc}", file=sys.stderr)
        return 2
    for name, e in entries.items():
        print(f"{name}: {e['arch']} test {100 * e['test_accuracy']:.2f}% ({e['epochs_run']} epochs) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
