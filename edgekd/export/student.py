"""``edgekd export``: every format a target runs, from a trained student folder, into one build folder.

The build folder is self-contained (it gets a copy of ``student.pt``) so ``edgekd verify`` and packaging need
nothing else; ``export.json`` lists the artifacts with sizes, hashes and what each exporter found.

Exporters write into a hidden staging folder inside the build folder; only when every one succeeded are the
files renamed into place, ``export.json`` last (the old one is removed first), so a failure, a full disk or
``kill -9`` never leaves a half export that looks whole: a folder has a complete export.json or none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.export.records import (
    EXPORT_JSON,
    Calibration,
    DataSource,
    ExportContext,
    ExportRecord,
    StudentInfo,
    load_export,
)
from edgekd.formats import formats as registered_formats
from edgekd.formats import get_format
from edgekd.io import FolderLock, check_writable, read_json
from edgekd.logs import log
from edgekd.students.store import DISTILL_JSON, STUDENT_FILE

__all__ = ["STAGING_PREFIX", "export_student", "load_export", "read_data_source"]


def read_data_source(student_dir: Path, blob: dict[str, Any]) -> DataSource:
    """Which data the student was trained on (task, data_dir, limit), from its distill.json when present."""
    record = student_dir / "distill.json"
    source: dict[str, Any] = {"task": blob["task"]["name"], "data_dir": None, "limit": None}
    if record.is_file():
        found = read_json(record, "distill record", fix="re-run `edgekd distill`").get("data_source", {})
        if not isinstance(found, dict):
            raise EdgekdError(f"{record}: data_source is not a JSON object; re-run `edgekd distill`")
        source |= found
    return DataSource.from_json(source)


def _formats(requested: list[str] | None, target: Any) -> list[str]:
    """The formats to run, in the registry's order, with the formats they need (``c`` needs ``tflite``)."""
    order = [f.name for f in registered_formats()]
    wanted = list(requested or target.formats)
    for fmt in wanted:
        if fmt not in order:
            raise EdgekdError(f"--formats: unknown format {fmt!r}; known: {', '.join(order)}")
        if fmt not in target.formats:
            raise EdgekdError(f"--formats: target {target.name} does not run {fmt!r} (its formats: "
                              f"{', '.join(target.formats)})")
    for f in reversed(registered_formats()):
        if f.name in wanted:
            wanted += [n for n in f.needs if n not in wanted]
    return sorted(set(wanted), key=order.index)


#: Hidden folder inside the build folder the exporters write into before the files are moved into place.
STAGING_PREFIX = ".export-"


def export_student(target_name: str | Any, student: str | Path, out_dir: str | Path,
                   formats: list[str] | None = None, precisions: list[str] | None = None, calib_size: int = 500,
                   budgets: dict[str, str | None] | None = None, lock: bool = True) -> ExportRecord:
    """Export the student in ``student`` for ``target_name`` (a name, a profile path or a loaded Target) into
    ``out_dir``; returns what export.json holds.

    ``precisions`` defaults to int8 on microcontrollers (fully integer) and int8 + fp32 on Linux targets.
    ``lock`` takes ``out_dir``'s FolderLock for the export (``edgekd build`` holds it already and passes False).
    """
    from edgekd.targets import Target, load_target

    started = time.perf_counter()
    target = target_name if isinstance(target_name, Target) else load_target(target_name)
    target = target.with_budgets(**(budgets or {}))
    fmts = _formats(formats, target)
    precisions = list(precisions or (["int8"] if target.quantization == "int8-full" else ["int8", "fp32"]))
    for p in precisions:
        if p not in ("int8", "fp32"):
            raise EdgekdError(f"--precision: unknown precision {p!r}; use int8 and/or fp32")
        if p == "fp32" and target.quantization == "int8-full":
            raise EdgekdError(f"--precision fp32: target {target.name} runs fully-integer models only")
    out = Path(out_dir)
    created = not out.exists()
    check_writable(out)  # before any work: loading data and converting take a while
    try:
        with FolderLock(out) if lock else nullcontext():
            return _export(target, student, out, fmts, precisions, calib_size, started)
    except BaseException:
        if created:
            _remove_if_empty(out)
        raise


def _remove_if_empty(folder: Path) -> None:
    """A refused export into a folder it created leaves nothing behind (the lock file included)."""
    try:
        if {p.name for p in folder.iterdir()} <= {FolderLock.NAME}:
            (folder / FolderLock.NAME).unlink(missing_ok=True)
            folder.rmdir()
    except OSError:
        pass


def _export(target: Any, student: str | Path, out: Path, fmts: list[str], precisions: list[str], calib_size: int,
            started: float) -> ExportRecord:
    from edgekd.data import load_task
    from edgekd.distill import DATA_SEED, load_student, versions
    from edgekd.planner import evaluate
    from edgekd.students import StudentConfig, model_input_shape, to_model_input

    student_dir = Path(student)
    student_dir = student_dir if student_dir.is_dir() else student_dir.parent
    model, blob = load_student(student_dir)
    config = StudentConfig(blob["family"], blob["config"])

    # Refuse early, from the cost model's predicted graph, before any conversion work.
    source = read_data_source(student_dir, blob)
    splits = load_task(source.task, source.data_dir, seed=DATA_SEED, limit=source.limit, calib_size=calib_size)
    predicted = evaluate(config, target, splits.spec)
    if predicted.unsupported_ops:
        raise EdgekdError(f"student {config.family} {config.params}: operator(s) "
                          f"{', '.join(predicted.unsupported_ops)} not supported by target {target.name}")
    warnings = splits.calibration_warnings()
    for w in warnings:
        log.warning("calibration: %s", w)

    for stale in out.glob(f"{STAGING_PREFIX}*"):  # left by a run that was killed (we hold the folder's lock)
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
        if out.resolve() != student_dir.resolve():
            for name in (STUDENT_FILE, DISTILL_JSON):
                if (student_dir / name).is_file():
                    shutil.copyfile(student_dir / name, staging / name)
        shape = model_input_shape(model)
        ctx = ExportContext(target, model, shape, bool(model.channels_last_input),
                            to_model_input(splits.x_calib, shape).numpy(), staging, tuple(precisions),
                            blob.get("qat_state"))
        timings: dict[str, float] = {}
        for fmt in fmts:
            t = time.perf_counter()
            for artifact in get_format(fmt).export(ctx):
                ctx.done[artifact.key] = artifact
            timings[fmt] = round(time.perf_counter() - t, 2)
        result = ExportRecord(
            target.name, splits.spec.name, source,
            StudentInfo(config.family, dict(config.params), blob.get("qat_state") is not None, str(student_dir)),
            tuple(shape), ctx.channels_last, blob.get("normalization"), list(ctx.done.values()), versions(),
            Calibration("calib", len(ctx.calibration), warnings), fmts, precisions, target.budgets.to_dict(),
            timings | {"total": round(time.perf_counter() - started, 2)})
        result.write(staging)
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _swap_in(staging: Path, out: Path) -> None:
    """Move the staged export into ``out``. The old export.json goes first (and the verify.json that described
    the old files), the new export.json last: an interrupted swap leaves a folder with no export.json."""
    for stale in (EXPORT_JSON, "verify.json"):
        (out / stale).unlink(missing_ok=True)
    for item in sorted(staging.iterdir()):
        if item.name == EXPORT_JSON:
            continue
        dest = out / item.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(item, dest)
    os.replace(staging / EXPORT_JSON, out / EXPORT_JSON)
