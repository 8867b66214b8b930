"""``edgekd export``: every format a target runs, from a trained student folder, into one build folder.

The build folder is self-contained (it gets a copy of ``student.pt``) so ``edgekd verify`` and packaging need
nothing else; ``export.json`` lists the artifacts with sizes, hashes and what each exporter found.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.export.core import EXPORTERS, Artifact, ExportContext, get_exporter
from edgekd.logs import log

EXPORT_FORMAT = "edgekd-export/1"
#: Exporters run in this order: ``c`` embeds the int8 .tflite.
ORDER = ("tflite", "pte", "c")


def read_data_source(student_dir: Path, blob: dict[str, Any]) -> dict[str, Any]:
    """Which data the student was trained on (task, data_dir, limit), from its distill.json when present."""
    record = student_dir / "distill.json"
    source = {"task": blob["task"]["name"], "data_dir": None, "limit": None}
    if record.is_file():
        source |= json.loads(record.read_text()).get("data_source", {})
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


def export_student(target_name: str, student: str | Path, out_dir: str | Path, formats: list[str] | None = None,
                   precisions: list[str] | None = None, calib_size: int = 500,
                   budgets: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Export the student in ``student`` for ``target_name`` into ``out_dir``; returns export.json's content.

    ``precisions`` defaults to int8 on microcontrollers (fully integer) and int8 + fp32 on Linux targets.
    """
    from edgekd.data import load_task
    from edgekd.distill import DATA_SEED, load_student, versions
    from edgekd.planner import evaluate
    from edgekd.students import StudentConfig, model_input_shape, to_model_input
    from edgekd.targets import load_target

    started = time.perf_counter()
    target = load_target(target_name).with_budgets(**(budgets or {}))
    fmts = _formats(formats, target)
    precisions = list(precisions or (["int8"] if target.quantization == "int8-full" else ["int8", "fp32"]))
    for p in precisions:
        if p not in ("int8", "fp32"):
            raise EdgekdError(f"--precision: unknown precision {p!r}; use int8 and/or fp32")
        if p == "fp32" and target.quantization == "int8-full":
            raise EdgekdError(f"--precision fp32: target {target.name} runs fully-integer models only")
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

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != student_dir.resolve():
        for name in ("student.pt", "distill.json"):
            if (student_dir / name).is_file():
                shutil.copyfile(student_dir / name, out / name)
    shape = model_input_shape(model)
    ctx = ExportContext(target, model, shape, bool(model.channels_last_input),
                        to_model_input(splits.x_calib, shape).numpy(), out, tuple(precisions), blob.get("qat_state"))
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
        "student": {"family": config.family, "config": dict(config.params), "qat": blob.get("qat_state") is not None,
                    "from": str(student_dir)},
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
    write_json(out / "export.json", result)
    return result


def write_json(path: Path, obj: dict[str, Any]) -> None:
    from edgekd.export.core import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def load_export(build_dir: str | Path) -> tuple[dict[str, Any], list[Artifact]]:
    """Read a build folder's export.json; every artifact it lists must be there."""
    build = Path(build_dir)
    record = build / "export.json"
    if not record.is_file():
        raise EdgekdError(f"{build}: no export.json; run `edgekd export --target T --student DIR --out {build}` first")
    data = json.loads(record.read_text())
    if data.get("format") != EXPORT_FORMAT:
        raise EdgekdError(f"{record}: not an edgekd export record")
    artifacts = [Artifact.from_dict(a) for a in data["artifacts"]]
    for a in artifacts:
        if not (build / a.path).is_file():
            raise EdgekdError(f"{build / a.path}: listed in export.json but missing; re-run `edgekd export`")
    return data, artifacts
