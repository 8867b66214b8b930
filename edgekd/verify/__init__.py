"""Verification: run every artifact of a build on its real runtime on the host and check it against the target.

``.tflite`` on LiteRT (XNNPACK kernels, the target's thread count) and, for microcontrollers, on the TFLite Micro
interpreter with an arena no larger than the RAM budget; ``.pte`` on the ExecuTorch runtime. Each run is compared
with the float student (accuracy, agreement, output error, per-class accuracy); the int8 model is compared layer
by layer with the float one; gates decide whether the build fits. :func:`verify_build` is ``edgekd verify``.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgekd.emulate import EmulatedRun
    from edgekd.verify.layers import LayerError

from edgekd.errors import EdgekdError
from edgekd.io import FolderLock
from edgekd.logs import log
from edgekd.verify.fidelity import fidelity, latency_summary
from edgekd.verify.gates import accuracy_gate, emulator_gate, fidelity_gate, flash_gate, latency_gate, ram_gate
from edgekd.verify.records import (
    VERIFY_FORMAT,
    Fidelity,
    Gate,
    Latency,
    RuntimeRun,
    Samples,
    VerifyRecord,
    load_verify,
)

__all__ = ["EMULATORS", "VERIFY_FORMAT", "Gate", "RuntimeRun", "VerifyRecord", "check_emulator", "load_verify",
           "sample_indices", "verify_build"]
EMULATORS = ("qemu",)
# Emulated runs default to an evenly spaced 1,000 of the test set: LiteRT's reference kernels under
# qemu-aarch64 take ~20M instructions per invoke for a small CNN (docs/benchmarks.md, "Emulated devices").
EMULATOR_SAMPLES = 1000
HOST = "host x86_64"


def check_emulator(target: Any, emulator: str) -> None:
    """Refuse an emulator name edgekd does not know, or a target no emulator stands in for."""
    if emulator not in EMULATORS:
        raise EdgekdError(f"unknown emulator {emulator!r}: choose one of {', '.join(EMULATORS)}")
    if not target.emulator.kind.startswith("qemu"):
        raise EdgekdError(f"target {target.name} has no QEMU machine ({target.emulator.note}); "
                          "verify it without --emulator")
    from edgekd.tools import check_emulator_choice

    check_emulator_choice(emulator, target)  # missing QEMU: refused now, before minutes of host verification


def sample_indices(n: int, limit: int | None) -> np.ndarray:
    """Evenly spaced test rows (the whole set without ``limit``), so a sample covers the set's order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def verify_build(target_name: str | Any, build_dir: str | Path, max_drop_pp: float = 1.0, limit: int | None = None,
                 layer_samples: int = 100, budgets: dict[str, str | None] | None = None,
                 plot: bool = True, emulator: str | None = None, emulator_limit: int | None = EMULATOR_SAMPLES,
                 emulator_timeout_s: float = 900.0, lock: bool = True,
                 min_accuracy: float | None = None) -> VerifyRecord:
    """Verify the build in ``build_dir`` against ``target_name`` (a name, a profile path or a loaded Target);
    writes verify.json and returns what it holds.

    ``limit`` evaluates an evenly spaced sample of the test set instead of all of it. ``emulator="qemu"`` also
    runs the artifacts on the profile's emulated core (an evenly spaced ``emulator_limit`` of the same sample;
    None for all of it), compares them with the host runtimes and counts instructions for the latency gate.
    ``lock`` takes the build folder's FolderLock while verifying (``edgekd build`` holds it and passes False).
    ``min_accuracy`` (0..1): the accuracy gate's bar when above chance level (else the profile's, else chance).
    """
    from edgekd.export.records import EXPORT_JSON, load_export

    if lock and not (Path(build_dir) / EXPORT_JSON).is_file():
        load_export(build_dir)  # says what to run first; the lock would create a folder that is not there
    with FolderLock(build_dir, flag="BUILD") if lock else nullcontext():
        return _verify(target_name, Path(build_dir), max_drop_pp, limit, layer_samples, budgets, plot, emulator,
                       emulator_limit, emulator_timeout_s, min_accuracy)


def _verify(target_name: str | Any, build: Path, max_drop_pp: float, limit: int | None, layer_samples: int,
            budgets: dict[str, str | None] | None, plot: bool, emulator: str | None, emulator_limit: int | None,
            emulator_timeout_s: float, min_accuracy: float | None = None) -> VerifyRecord:
    from edgekd import costmodel
    from edgekd.data import load_task
    from edgekd.distill import DATA_SEED, load_student, versions
    from edgekd.distill.train import accuracy, predict
    from edgekd.export.records import load_export
    from edgekd.formats import get_format
    from edgekd.formats.base import VerifyInput
    from edgekd.students import to_model_input
    from edgekd.targets import Target, load_target

    started = time.perf_counter()
    export = load_export(build)  # damaged record, missing or modified artifact: one EdgekdError line
    artifacts = export.artifacts
    target = target_name if isinstance(target_name, Target) else load_target(target_name)
    target = target.with_budgets(**(budgets or {}))
    if emulator is not None:
        check_emulator(target, emulator)
    if target.name != export.target:
        log.warning("%s was exported for %s; checking it against %s", build, export.target, target.name)
    model, blob = load_student(build)
    shape = export.input_shape
    src = export.data_source
    # The whole test split: a training --limit (--fast's slice) must not shrink what is evaluated and reported.
    splits = load_task(src.task, src.data_dir, seed=DATA_SEED)
    idx = sample_indices(len(splits.y_test), limit)
    x = to_model_input(splits.x_test[idx], shape).numpy()
    y = splits.y_test[idx]
    names = splits.spec.class_names
    float_out = predict(model, splits.x_test[idx], shape)
    float_acc = accuracy(float_out, y)
    inp = VerifyInput(build, target, x, min(target.cpu.count, os.cpu_count() or 1), artifacts)

    runs: list[RuntimeRun] = []
    ram: dict[str, tuple[int, str]] = {}
    timings: dict[str, float] = {}
    for a in artifacts:
        t = time.perf_counter()
        host = get_format(a.format).host_runs(inp, a)
        for h in host.runs:
            runs.append(RuntimeRun(a.path, a.format, a.precision, h.runtime, h.kernels, h.threads,
                                   Fidelity(**fidelity(h.outputs, float_out, y, names)),
                                   Latency(**latency_summary(h.invoke_ms), kind="measured", where=HOST),
                                   h.arena_bytes, h.run_arena_bytes, h.planned_memory_bytes))
        if host.ram is not None:
            ram[a.path] = host.ram
        timings[a.path] = round(time.perf_counter() - t, 2)
        log.info("verified %s (%.0f s)", a.path, timings[a.path])

    # Per-layer int8 error: against the float .tflite of the build, or one made for the comparison.
    layers: list[LayerError] = []
    layer_n = 0
    plot_path = None
    by_key = {a.key: a for a in artifacts}
    if "tflite-int8" in by_key:
        from edgekd.formats.tflite import TfliteDetails
        from edgekd.verify.layers import layer_errors, plot_layer_errors

        t = time.perf_counter()
        q = by_key["tflite-int8"]
        assert isinstance(q.details, TfliteDetails)
        xs = q.details.model_layout(x[sample_indices(len(x), layer_samples)])
        with tempfile.TemporaryDirectory(prefix="edgekd-layers-") as tmp:
            if "tflite-fp32" in by_key:
                fp32 = build / by_key["tflite-fp32"].path
            else:
                from edgekd.export.tflite import export_tflite_float

                fp32 = export_tflite_float(model, shape, Path(tmp) / "float.tflite", q.details.channels_last).path
            rows = layer_errors(build / q.path, fp32, xs)
        layers, layer_n = rows, len(xs)
        if plot and rows:
            plot_path = plot_layer_errors(rows, build / "layers.png",
                                          f"{target.name}: per-layer int8 error, {len(xs)} test samples").name
        timings["layers"] = round(time.perf_counter() - t, 2)

    estimates = {}
    for precision in sorted({a.precision for a in artifacts}):
        cost = costmodel.analyze(model, shape, precision, export.channels_last)
        estimates[precision] = costmodel.estimate_latency(cost, target)
    emulated: list[EmulatedRun] = []
    if emulator is not None:
        from edgekd.emulate import EmulationRequest, emulate

        t = time.perf_counter()
        pick = sample_indices(len(y), emulator_limit)
        emulated = emulate(EmulationRequest(build, target, x[pick], y[pick], timeout_s=emulator_timeout_s))
        timings["emulator"] = round(time.perf_counter() - t, 2)
        log.info("emulated %d runs on %s (%.0f s)", len(emulated), target.emulator.kind, timings["emulator"])
    gates = {
        "flash": flash_gate(artifacts, target),
        "ram": ram_gate(ram, target) if ram else None,
        "latency": latency_gate(estimates, target, emulated),
        "fidelity": fidelity_gate(runs, float_acc, max_drop_pp, export.student.qat) if runs else None,
        "emulator": emulator_gate(emulated) if emulated else None,
        "accuracy": accuracy_gate(runs, float_acc, y, splits.spec.num_classes,
                                  min_accuracy if min_accuracy is not None else getattr(target, "min_accuracy", None)),
    }
    passed = all(g.passed for g in gates.values() if g is not None)
    result = VerifyRecord(
        target.name, export.target, splits.spec.name, Samples(int(len(y)), int(len(splits.y_test)), layer_n),
        float_acc, fidelity(float_out, float_out, y, names)["per_class_accuracy"], runs, layers, plot_path,
        {k: v.to_dict() for k, v in estimates.items()}, emulated, target.budgets.to_dict(), gates, max_drop_pp,
        passed, timings | {"total": round(time.perf_counter() - started, 2)}, versions())
    result.write(build)
    return result
