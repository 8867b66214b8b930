"""Gates: does the exported build fit the target? Flash, RAM, latency and int8 fidelity, each with its evidence."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgekd.export.core import Artifact
from edgekd.targets import Target
from edgekd.units import format_bytes


@dataclass
class Gate:
    passed: bool
    value: float
    budget: float
    unit: str
    kind: str  # "measured" | "estimated" | "counted"
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flash_gate(artifacts: list[Artifact], target: Target) -> Gate:
    """Every artifact (its bytes in flash, a C array counts as its .tflite) plus the runtime must fit."""
    sizes = {a.path: int(a.details.get("flash_bytes", a.bytes)) + target.runtime_flash_bytes for a in artifacts}
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


def latency_gate(estimates: dict[str, Any], target: Target) -> Gate:
    """The cost model's on-target estimate per precision (the emulator issues replace it with counts)."""
    worst = max(estimates, key=lambda k: estimates[k].ms)
    est = estimates[worst]
    budget = target.budgets.latency_ms
    return Gate(est.ms <= budget, est.ms, budget, "ms", est.kind,
                f"{worst}: {est.ms:.2f} ms of {budget:g} ms; {est.method}")


def fidelity_gate(runs: list[dict[str, Any]], float_accuracy: float, max_drop_pp: float, qat: bool) -> Gate:
    """The largest accuracy drop vs the float student over every runtime run, in percentage points."""
    drops = {f"{r['artifact']} on {r['runtime']}": 100 * (float_accuracy - r["accuracy"]) for r in runs}
    worst = max(drops, key=drops.__getitem__)
    passed = drops[worst] <= max_drop_pp
    detail = (f"{worst}: {drops[worst]:+.2f} pp vs float ({100 * float_accuracy:.2f}%), allowed "
              f"{max_drop_pp:g} pp")
    if not passed and not qat:
        detail += "; the student was not trained with QAT: re-run `edgekd distill ... --qat`"
    return Gate(passed, round(drops[worst], 4), max_drop_pp, "pp", "measured", detail)
