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
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.io import FolderLock, write_json
from edgekd.logs import log
from edgekd.verify.fidelity import fidelity, latency_summary
from edgekd.verify.gates import emulator_gate, fidelity_gate, flash_gate, latency_gate, ram_gate

VERIFY_FORMAT = "edgekd-verify/1"
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


def sample_indices(n: int, limit: int | None) -> np.ndarray:
    """Evenly spaced test rows (the whole set without ``limit``), so a sample covers the set's order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def _model_layout(x: np.ndarray, channels_last: bool) -> np.ndarray:
    return np.transpose(x, (0, 2, 3, 1)) if channels_last and x.ndim == 4 else x


def _run_tflm(path: Path, x: np.ndarray, details: dict[str, Any], arena: int) -> tuple[np.ndarray, list[float]]:
    from edgekd.verify.litert import quantize
    from edgekd.verify.tflm import run_tflm

    q_in, q_out = details["input"], details["output"]
    xq = quantize(_model_layout(x, details["channels_last"]).astype(np.float32), q_in["scale"], q_in["zero_point"],
                  np.dtype(q_in["dtype"]))
    run = run_tflm(path, xq, arena)
    return (run.outputs.astype(np.float32) - q_out["zero_point"]) * q_out["scale"], run.invoke_ms


def verify_build(target_name: str | Any, build_dir: str | Path, max_drop_pp: float = 1.0, limit: int | None = None,
                 layer_samples: int = 100, budgets: dict[str, str | None] | None = None,
                 plot: bool = True, emulator: str | None = None, emulator_limit: int | None = EMULATOR_SAMPLES,
                 emulator_timeout_s: float = 900.0, lock: bool = True) -> dict[str, Any]:
    """Verify the build in ``build_dir`` against ``target_name`` (a name, a profile path or a loaded Target);
    writes and returns verify.json's content.

    ``limit`` evaluates an evenly spaced sample of the test set instead of all of it. ``emulator="qemu"`` also
    runs the artifacts on the profile's emulated core (an evenly spaced ``emulator_limit`` of the same sample;
    None for all of it), compares them with the host runtimes and counts instructions for the latency gate.
    ``lock`` takes the build folder's FolderLock while verifying (``edgekd build`` holds it and passes False).
    """
    from edgekd.export.student import load_export

    if lock and not (Path(build_dir) / "export.json").is_file():
        load_export(build_dir)  # says what to run first; the lock would create a folder that is not there
    with FolderLock(build_dir, flag="BUILD") if lock else nullcontext():
        return _verify(target_name, Path(build_dir), max_drop_pp, limit, layer_samples, budgets, plot, emulator,
                       emulator_limit, emulator_timeout_s)


def _verify(target_name: str | Any, build: Path, max_drop_pp: float, limit: int | None, layer_samples: int,
            budgets: dict[str, str | None] | None, plot: bool, emulator: str | None, emulator_limit: int | None,
            emulator_timeout_s: float) -> dict[str, Any]:
    from edgekd import costmodel
    from edgekd.data import load_task
    from edgekd.distill import DATA_SEED, load_student, versions
    from edgekd.distill.train import accuracy, predict
    from edgekd.export.student import load_export
    from edgekd.students import to_model_input
    from edgekd.targets import Target, load_target
    from edgekd.verify.executorch import run_pte
    from edgekd.verify.litert import run_litert
    from edgekd.verify.tflm import min_arena

    started = time.perf_counter()
    export, artifacts = load_export(build)  # damaged record, missing or modified artifact: one EdgekdError line
    target = target_name if isinstance(target_name, Target) else load_target(target_name)
    target = target.with_budgets(**(budgets or {}))
    if emulator is not None:
        check_emulator(target, emulator)
    if target.name != export["target"]:
        log.warning("%s was exported for %s; checking it against %s", build, export["target"], target.name)
    model, blob = load_student(build)
    shape = tuple(export["input_shape"])
    src = export["data_source"]
    splits = load_task(src["task"], src["data_dir"], seed=DATA_SEED, limit=src["limit"])
    idx = sample_indices(len(splits.y_test), limit)
    x = to_model_input(splits.x_test[idx], shape).numpy()
    y = splits.y_test[idx]
    names = splits.spec.class_names
    float_out = predict(model, splits.x_test[idx], shape)
    float_acc = accuracy(float_out, y)
    threads = min(target.cpu.count, os.cpu_count() or 1)
    ram_budget_arena = target.budgets.ram_bytes - target.runtime_ram_bytes

    runs: list[dict[str, Any]] = []
    ram: dict[str, tuple[int, str]] = {}
    timings: dict[str, float] = {}
    for a in artifacts:
        path = build / a.path
        t = time.perf_counter()
        base = {"artifact": a.path, "format": a.format, "precision": a.precision}
        if a.format == "tflite":
            # The C array of the same bytes (hash checked above) already carries the measured minimum.
            embedded = next((c for c in artifacts if c.format == "c" and c.details.get("embeds") == a.path), None)
            arena = embedded.details["tensor_arena_bytes"] if embedded else min_arena(path).min_arena_bytes
            ms: list[float] = []
            out = run_litert(path, x, a.details["channels_last"], threads=threads, invoke_ms=ms)
            runs.append(base | {"runtime": "litert", "kernels": "xnnpack", "threads": threads,
                                **fidelity(out, float_out, y, names), "arena_bytes": arena,
                                "latency": latency_summary(ms) | {"kind": "measured", "where": HOST}})
            if target.is_mcu and a.precision == "int8":
                run_arena = ram_budget_arena if arena <= ram_budget_arena else arena
                out, ms = _run_tflm(path, x, a.details, run_arena)
                runs.append(base | {"runtime": "tflm", "kernels": "reference", "threads": 1,
                                    **fidelity(out, float_out, y, names), "arena_bytes": arena,
                                    "run_arena_bytes": run_arena,
                                    "latency": latency_summary(ms) | {"kind": "measured", "where": HOST}})
                ram[a.path] = (arena, "TFLite Micro minimum arena")
            else:
                ram[a.path] = (arena + a.bytes, "TFLite Micro minimum arena + model bytes")
        elif a.format == "pte":
            ms = []
            out = run_pte(path, x, invoke_ms=ms)
            runs.append(base | {"runtime": "executorch", "kernels": "xnnpack", "threads": "runtime default",
                                **fidelity(out, float_out, y, names),
                                "planned_memory_bytes": a.details.get("planned_memory_bytes"),
                                "latency": latency_summary(ms) | {"kind": "measured", "where": HOST}})
            ram[a.path] = (int(a.details.get("planned_memory_bytes", 0)) + a.bytes,
                           "ExecuTorch planned memory + model bytes")
        timings[a.path] = round(time.perf_counter() - t, 2)
        log.info("verified %s (%.0f s)", a.path, timings[a.path])

    # Per-layer int8 error: against the float .tflite of the build, or one made for the comparison.
    layers: list[dict[str, Any]] = []
    layer_n = 0
    plot_path = None
    by_key = {a.key: a for a in artifacts}
    if "tflite-int8" in by_key:
        from edgekd.verify.layers import as_dicts, layer_errors, plot_layer_errors

        t = time.perf_counter()
        q = by_key["tflite-int8"]
        xs = _model_layout(x[sample_indices(len(x), layer_samples)], q.details["channels_last"])
        with tempfile.TemporaryDirectory(prefix="edgekd-layers-") as tmp:
            if "tflite-fp32" in by_key:
                fp32 = build / by_key["tflite-fp32"].path
            else:
                from edgekd.export.tflite import export_tflite_float

                fp32 = export_tflite_float(model, shape, Path(tmp) / "float.tflite", q.details["channels_last"]).path
            rows = layer_errors(build / q.path, fp32, xs)
        layers, layer_n = as_dicts(rows), len(xs)
        if plot and rows:
            plot_path = plot_layer_errors(rows, build / "layers.png",
                                          f"{target.name}: per-layer int8 error, {len(xs)} test samples").name
        timings["layers"] = round(time.perf_counter() - t, 2)

    estimates = {}
    for precision in sorted({a.precision for a in artifacts}):
        cost = costmodel.analyze(model, shape, precision, bool(export["channels_last"]))
        estimates[precision] = costmodel.estimate_latency(cost, target)
    emulated: list[dict[str, Any]] = []
    if emulator is not None:
        from edgekd.emulate import EmulationRequest, emulate

        t = time.perf_counter()
        pick = sample_indices(len(y), emulator_limit)
        emulated = [r.to_dict() for r in emulate(EmulationRequest(build, target, x[pick], y[pick],
                                                                  timeout_s=emulator_timeout_s))]
        timings["emulator"] = round(time.perf_counter() - t, 2)
        log.info("emulated %d runs on %s (%.0f s)", len(emulated), target.emulator.kind, timings["emulator"])
    gates = {
        "flash": flash_gate(artifacts, target),
        "ram": ram_gate(ram, target) if ram else None,
        "latency": latency_gate(estimates, target, emulated),
        "fidelity": fidelity_gate(runs, float_acc, max_drop_pp, bool(export["student"]["qat"])) if runs else None,
        "emulator": emulator_gate(emulated) if emulated else None,
    }
    passed = all(g.passed for g in gates.values() if g is not None)
    result = {
        "format": VERIFY_FORMAT,
        "target": target.name,
        "exported_for": export["target"],
        "task": splits.spec.name,
        "samples": {"test": int(len(y)), "of": int(len(splits.y_test)), "layers": layer_n},
        "float": {"accuracy": float_acc, "per_class_accuracy": fidelity(float_out, float_out, y, names)[
            "per_class_accuracy"]},
        "runs": runs,
        "layers": layers,
        "layers_plot": plot_path,
        "latency_estimates": {k: v.to_dict() for k, v in estimates.items()},
        "emulated": emulated,
        "budgets": target.budgets.to_dict(),
        "gates": {k: g.to_dict() if g else None for k, g in gates.items()},
        "max_drop_pp": max_drop_pp,
        "passed": passed,
        "timings_s": timings | {"total": round(time.perf_counter() - started, 2)},
        "versions": versions(),
    }
    write_json(build / "verify.json", result)
    return result
