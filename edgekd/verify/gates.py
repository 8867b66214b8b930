"""Gates: does the exported build fit the target? Flash, RAM, latency and int8 fidelity, each with its evidence."""

from __future__ import annotations

from typing import Any

from edgekd.emulate import EmulatedRun
from edgekd.export.records import Artifact
from edgekd.targets import Target
from edgekd.units import format_bytes
from edgekd.verify.records import Gate, RuntimeRun

__all__ = ["Gate", "accuracy_gate", "emulator_gate", "fidelity_gate", "flash_gate", "latency_gate", "ram_gate"]


def flash_gate(artifacts: list[Artifact], target: Target) -> Gate:
    """Every artifact (its bytes in flash, a C array counts as its .tflite) plus the runtime must fit."""
    sizes = {a.path: a.flash_bytes + target.runtime_flash_bytes for a in artifacts}
    worst = max(sizes, key=sizes.__getitem__)
    budget = target.budgets.flash_bytes
    return Gate(sizes[worst] <= budget, sizes[worst], budget, "bytes", "measured",
                f"{worst}: {format_bytes(sizes[worst] - target.runtime_flash_bytes)} + runtime "
                f"{format_bytes(target.runtime_flash_bytes)} = {format_bytes(sizes[worst])} of "
                f"{format_bytes(budget)}")


def ram_gate(ram: dict[str, tuple[int, str]], target: Target) -> Gate:
    """``ram`` maps artifact -> (bytes it needs at run time, how that was obtained), runtime overhead excluded."""
    worst = max(ram, key=lambda k: ram[k][0])
    need, how = ram[worst]
    total = need + target.runtime_ram_bytes
    budget = target.budgets.ram_bytes
    return Gate(total <= budget, total, budget, "bytes", "measured",
                f"{worst}: {how} {format_bytes(need)} + runtime {format_bytes(target.runtime_ram_bytes)} = "
                f"{format_bytes(total)} of {format_bytes(budget)}")


def latency_gate(estimates: dict[str, Any], target: Target, emulated: list[EmulatedRun] | None = None) -> Gate:
    """Counted on the emulated core when an emulator ran (deployed kernels only), else the cost model's estimate.

    Counts are single-threaded instructions x the core's cycles per instruction (its cycle model's, or a fixed
    CPI) at the profile's clock: stricter than the multi-threaded estimate on Linux targets, so a counted pass is
    a pass on the device's slowest setting.
    """
    budget = target.budgets.latency_ms
    worst = max(estimates, key=lambda k: estimates[k].ms)
    est = estimates[worst]
    counted = [r for r in emulated or [] if r.counted_ms is not None and r.kernels != "reference"]
    if counted:
        top = max(counted, key=lambda r: r.counted_ms or 0.0)
        ms = top.counted_ms or 0.0
        return Gate(ms <= budget, round(ms, 4), budget, "ms", "counted",
                    f"{top.path} ({top.runtime}, {top.emulator}, 1 thread): {top.instructions or 0:,} "
                    f"instructions x {top.cpi or 0:g} cycles per instruction = {ms:.2f} ms of {budget:g} ms; estimate "
                    f"{est.ms:.2f} ms ({worst}, {est.method})")
    return Gate(est.ms <= budget, est.ms, budget, "ms", est.kind,
                f"{worst}: {est.ms:.2f} ms of {budget:g} ms; {est.method}")


def emulator_gate(emulated: list[EmulatedRun]) -> Gate:
    """Every emulated run finished, and the kernels that must be bit-exact with the host are.

    Reference kernels and edgekd's C code are pure integer arithmetic: any difference from the host is a bug.
    XNNPACK's requantization may differ between its x86 and Arm builds by a step; that is reported, not failed.
    """
    bad = []
    for r in emulated:
        what = f"{r.path} ({r.runtime}/{r.kernels}, {r.emulator})"
        if not r.ok:
            tail = (r.log_tail or "").strip().splitlines()[-3:]
            bad.append(f"{what}: {r.error}" + (f" [log: {' | '.join(tail)}]" if tail else ""))
        elif r.kernels in ("reference", "edgekd-c") and r.bit_exact_vs_host is False:
            bad.append(f"{what}: outputs differ from the host by up to {r.max_diff_vs_host:g} steps")
    xnn = [r for r in emulated if r.ok and r.kernels == "xnnpack" and r.precision == "int8"]
    worst_xnn = max((r.max_diff_vs_host or 0 for r in xnn), default=0)
    detail = "; ".join(bad) if bad else (
        f"{len(emulated)} emulated runs finished, reference/C kernels bit-exact with the host"
        + (f", XNNPACK int8 within {worst_xnn:g} step(s) of the host" if xnn else ""))
    return Gate(not bad, len(bad), 0, "failed runs", "measured", detail)


def fidelity_gate(runs: list[RuntimeRun], float_accuracy: float, max_drop_pp: float, qat: bool) -> Gate:
    """The largest accuracy drop vs the float student over every runtime run, in percentage points."""
    drops = {f"{r.artifact} on {r.runtime}": 100 * (float_accuracy - r.accuracy) for r in runs}
    worst = max(drops, key=drops.__getitem__)
    passed = drops[worst] <= max_drop_pp
    detail = (f"{worst}: {0.0 - drops[worst]:+.2f} pp vs float ({100 * float_accuracy:.2f}%), allowed "
              f"{max_drop_pp:g} pp")
    if not passed and not qat:
        detail += "; the student was not trained with QAT: re-run `edgekd distill ... --qat`"
    return Gate(passed, round(drops[worst], 4), max_drop_pp, "pp", "measured", detail)


def accuracy_gate(runs: list[RuntimeRun], float_accuracy: float, labels: Any, num_classes: int,
                  min_accuracy: float | None = None) -> Gate:
    """The worst accuracy of what ships (every runtime run, else the float student) against a bar: chance level
    (the most common class's share of the evaluated labels plus 3 standard errors, at least 2 points; a student
    there learnt nothing), or ``min_accuracy`` (``--min-accuracy`` or the profile's ``min_accuracy``) when it is
    higher."""
    import numpy as np

    from edgekd.distill.guard import chance_level, chance_threshold

    y = np.asarray(labels)
    chance = chance_level(y, num_classes)
    bar = chance_threshold(y, num_classes)
    accs = {f"{r.artifact} on {r.runtime}": r.accuracy for r in runs} or {"float student": float_accuracy}
    worst = min(accs, key=accs.__getitem__)
    value = accs[worst]
    if min_accuracy is not None and min_accuracy > bar:
        passed = value >= min_accuracy
        detail = (f"{worst}: {100 * value:.2f}% on {len(y):,} test samples, required {100 * min_accuracy:.2f}% "
                  f"(chance {100 * chance:.2f}%)")
        return Gate(passed, round(value, 6), min_accuracy, "accuracy", "measured",
                    detail + ("" if passed else "; train longer, give more data or a better teacher"))
    passed = value > bar
    detail = (f"{worst}: {100 * value:.2f}% on {len(y):,} test samples, chance level {100 * chance:.2f}% (must be "
              f"above {100 * bar:.2f}%)")
    if not passed:
        detail += "; the student learnt nothing: train longer (--epochs), or check the data and labels"
    return Gate(passed, round(value, 6), round(bar, 6), "accuracy", "measured", detail)
