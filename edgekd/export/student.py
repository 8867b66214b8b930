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
from pathlib import Path, PurePosixPath
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.export.core import EXPORTERS, Artifact, ExportContext, get_exporter
from edgekd.io import FolderLock, check_writable, read_json, sha256_file, write_json
from edgekd.logs import log

EXPORT_FORMAT = "edgekd-export/1"
#: Exporters run in this order: ``c`` embeds the int8 .tflite.
ORDER = ("tflite", "pte", "c")


def read_data_source(student_dir: Path, blob: dict[str, Any]) -> dict[str, Any]:
    """Which data the student was trained on (task, data_dir, limit), from its distill.json when present."""
    record = student_dir / "distill.json"
    source = {"task": blob["task"]["name"], "data_dir": None, "limit": None}
    if record.is_file():
        found = read_json(record, "distill record", fix="re-run `edgekd distill`").get("data_source", {})
        if not isinstance(found, dict):
            raise EdgekdError(f"{record}: data_source is not a JSON object; re-run `edgekd distill`")
        source |= found
    return source


def _formats(requested: list[str] | None, target: Any) -> list[str]:
    formats = list(requested or target.formats)
    for fmt in formats:
        if fmt not in EXPORTERS:
            raise EdgekdError(f"--formats: unknown format {fmt!r}; known: {', '.join(ORDER)}")
        if fmt not in target.formats:
            raise EdgekdError(f"--formats: target {target.name} does not run {fmt!r} (its formats: "
                              f"{', '.join(target.formats)})")
    if "c" in formats and "tflite" not in formats:
        formats.append("tflite")  # the C array is the .tflite
    return sorted(set(formats), key=ORDER.index)


#: Hidden folder inside the build folder the exporters write into before the files are moved into place.
STAGING_PREFIX = ".export-"


def export_student(target_name: str | Any, student: str | Path, out_dir: str | Path,
                   formats: list[str] | None = None, precisions: list[str] | None = None, calib_size: int = 500,
                   budgets: dict[str, str | None] | None = None, lock: bool = True) -> dict[str, Any]:
    """Export the student in ``student`` for ``target_name`` (a name, a profile path or a loaded Target) into
    ``out_dir``; returns export.json's content.

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
            started: float) -> dict[str, Any]:
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
    splits = load_task(source["task"], source["data_dir"], seed=DATA_SEED, limit=source["limit"],
                       calib_size=calib_size)
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
            for name in ("student.pt", "distill.json"):
                if (student_dir / name).is_file():
                    shutil.copyfile(student_dir / name, staging / name)
        shape = model_input_shape(model)
        ctx = ExportContext(target, model, shape, bool(model.channels_last_input),
                            to_model_input(splits.x_calib, shape).numpy(), staging, tuple(precisions),
                            blob.get("qat_state"))
        timings: dict[str, float] = {}
        for fmt in fmts:
            t = time.perf_counter()
            for artifact in get_exporter(fmt)(ctx):
                ctx.done[artifact.key] = artifact
            timings[fmt] = round(time.perf_counter() - t, 2)
        result = {
            "format": EXPORT_FORMAT,
            "target": target.name,
            "task": splits.spec.name,
            "data_source": source,
            "student": {"family": config.family, "config": dict(config.params),
                        "qat": blob.get("qat_state") is not None, "from": str(student_dir)},
            "input_shape": list(shape),
            "channels_last": ctx.channels_last,
            "normalization": blob.get("normalization"),
            "calibration": {"split": "calib", "samples": len(ctx.calibration), "warnings": warnings},
            "formats": fmts,
            "precisions": precisions,
            "artifacts": [a.to_dict() for a in ctx.done.values()],
            "budgets": target.budgets.to_dict(),
            "timings_s": timings | {"total": round(time.perf_counter() - started, 2)},
            "versions": versions(),
        }
        write_json(staging / "export.json", result)
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _swap_in(staging: Path, out: Path) -> None:
    """Move the staged export into ``out``. The old export.json goes first (and the verify.json that described
    the old files), the new export.json last: an interrupted swap leaves a folder with no export.json."""
    for stale in ("export.json", "verify.json"):
        (out / stale).unlink(missing_ok=True)
    for item in sorted(staging.iterdir()):
        if item.name == "export.json":
            continue
        dest = out / item.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(item, dest)
    os.replace(staging / "export.json", out / "export.json")


#: What readers of export.json rely on: key -> type (checked so a damaged record is one line, not a KeyError).
_RECORD_KEYS: dict[str, type | tuple[type, ...]] = {
    "target": str, "task": str, "data_source": dict, "student": dict, "input_shape": list, "channels_last": bool,
    "artifacts": list, "versions": dict}
_ARTIFACT_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": str, "precision": str, "path": str, "bytes": int, "sha256": str, "runtime": str}
_FIX = "re-run `edgekd export`"


def _artifact(record: Path, i: int, a: Any) -> Artifact:
    if not isinstance(a, dict):
        raise EdgekdError(f"{record}: artifacts[{i}] is not a JSON object; {_FIX}")
    for key, kind in _ARTIFACT_KEYS.items():
        if not isinstance(a.get(key), kind) or isinstance(a.get(key), bool):
            raise EdgekdError(f"{record}: artifacts[{i}].{key} is missing or not a {_type_name(kind)}; {_FIX}")
    if not isinstance(a.get("details", {}), dict):
        raise EdgekdError(f"{record}: artifacts[{i}].details is not a JSON object; {_FIX}")
    for key in ("path", "details.header", "details.embeds"):
        rel = a["path"] if key == "path" else a.get("details", {}).get(key.split(".")[1])
        if rel is None:
            continue
        p = PurePosixPath(str(rel))
        if not str(rel) or p.is_absolute() or ".." in p.parts:
            raise EdgekdError(f"{record}: artifacts[{i}].{key} {rel!r} is outside the build folder; {_FIX}")
    return Artifact.from_dict(a)


def _type_name(kind: type | tuple[type, ...]) -> str:
    return {str: "string", int: "integer", dict: "JSON object", list: "JSON list", bool: "true/false"}.get(
        kind if isinstance(kind, type) else kind[0], "value")


def load_export(build_dir: str | Path, check_hashes: bool = True) -> tuple[dict[str, Any], list[Artifact]]:
    """Read a build folder's export.json: a damaged record is one EdgekdError line, and (``check_hashes``) every
    file it lists must be there with its recorded sha256 before anything trusts it."""
    build = Path(build_dir)
    record = build / "export.json"
    if not record.is_file():
        raise EdgekdError(f"{build}: no export.json; run `edgekd export --target T --student DIR --out {build}` first")
    data = read_json(record, "export record", fix=_FIX)
    if data.get("format") != EXPORT_FORMAT:
        raise EdgekdError(f"{record}: not an edgekd export record (format {EXPORT_FORMAT!r}); {_FIX}")
    for key, kind in _RECORD_KEYS.items():
        if not isinstance(data.get(key), kind):
            raise EdgekdError(f"{record}: {key!r} is missing or not a {_type_name(kind)}; {_FIX}")
    if not isinstance(data["data_source"].get("task"), str) or not isinstance(data["student"].get("qat"), bool):
        raise EdgekdError(f"{record}: data_source.task or student.qat is missing or of the wrong type; {_FIX}")
    artifacts = [_artifact(record, i, a) for i, a in enumerate(data["artifacts"])]
    if check_hashes:
        check_artifacts(build, artifacts)
    return data, artifacts


def check_artifacts(build: Path, artifacts: list[Artifact]) -> None:
    """Every artifact (and a C array's header) exists with the sha256 export.json recorded, and a C array embeds
    this build's .tflite."""
    for a in artifacts:
        files = [(a.path, a.sha256)]
        if a.format == "c" and a.details.get("header"):
            files.append((a.details["header"], a.details.get("header_sha256")))
        for rel, digest in files:
            path = build / rel
            if not path.is_file():
                raise EdgekdError(f"{path}: listed in export.json but missing; {_FIX}")
            if digest is not None and sha256_file(path) != digest:
                raise EdgekdError(f"{path}: sha256 differs from export.json (modified after export); {_FIX}")
        if a.format == "c":
            embedded = next((b for b in artifacts if b.path == a.details.get("embeds")), None)
            if embedded is None or embedded.sha256 != a.details.get("embeds_sha256"):
                raise EdgekdError(f"{build / a.path}: does not embed the build's {a.details.get('embeds')}; {_FIX}")
