"""What a verification hands on: :class:`VerifyRecord` (verify.json) with typed runs, emulated runs and gates.

``verify_build`` returns one, :func:`load_verify` reads one back; packaging, the report and the CLI read its
fields. verify.json keeps its keys: ``to_json`` writes what the dict writer did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekd.emulate import EmulatedRun, exactness
from edgekd.errors import EdgekdError
from edgekd.io import read_json, write_json
from edgekd.units import format_bytes
from edgekd.verify.layers import LayerError

VERIFY_FORMAT = "edgekd-verify/1"
VERIFY_JSON = "verify.json"


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

    def text(self, name: str) -> str:
        return f"gate {name:<8} {'PASS' if self.passed else 'FAIL'}  {self.detail} ({self.kind})"


@dataclass
class Latency:
    median_ms: float
    p90_ms: float
    kind: str
    where: str


@dataclass
class Fidelity:
    """How closely a run reproduces the float student (:func:`edgekd.verify.fidelity.fidelity`)."""

    accuracy: float
    agreement_with_float: float
    max_abs_err: float
    mean_abs_err: float
    per_class_accuracy: dict[str, float | None]


@dataclass
class RuntimeRun:
    """One artifact on one host runtime: fidelity vs the float student, memory it used, host latency."""

    artifact: str
    format: str
    precision: str
    runtime: str
    kernels: str
    threads: int | str
    fidelity: Fidelity
    latency: Latency
    arena_bytes: int | None = None
    run_arena_bytes: int | None = None
    planned_memory_bytes: int | None = None

    @property
    def accuracy(self) -> float:
        return self.fidelity.accuracy

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"artifact": self.artifact, "format": self.format, "precision": self.precision,
                               "runtime": self.runtime, "kernels": self.kernels, "threads": self.threads,
                               **asdict(self.fidelity)}
        for key in ("arena_bytes", "run_arena_bytes", "planned_memory_bytes"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out | {"latency": asdict(self.latency)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RuntimeRun:
        fid = Fidelity(d["accuracy"], d["agreement_with_float"], d["max_abs_err"], d["mean_abs_err"],
                       d["per_class_accuracy"])
        return cls(d["artifact"], d["format"], d["precision"], d["runtime"], d["kernels"], d["threads"], fid,
                   Latency(**d["latency"]), d.get("arena_bytes"), d.get("run_arena_bytes"),
                   d.get("planned_memory_bytes"))

    def text(self) -> str:
        arena = self.arena_bytes or self.planned_memory_bytes
        return (f"{self.artifact:<20} {self.runtime:<11} {100 * self.accuracy:>7.2f}% "
                f"{100 * self.fidelity.agreement_with_float:>6.2f}% {self.fidelity.max_abs_err:>8.3f} "
                f"{self.latency.median_ms:>8.3f} {format_bytes(arena) if arena else '-':>9}")


@dataclass
class Samples:
    test: int
    of: int
    layers: int


def emulated_text(runs: list[EmulatedRun]) -> str:
    """One line per emulated run: where, which kernels, accuracy, exactness vs the host, counted latency."""
    lines = [f"{'emulated artifact':<20} {'emulator':<26} {'kernels':<9} {'accuracy':>8} {'vs host':>14} "
             f"{'instr.':>8} {'counted':>9}"]
    for r in runs:
        if not r.ok:
            lines.append(f"{r.path:<20} {r.emulator:<26} {r.kernels or '-':<9} FAILED: {r.error}")
            continue
        exact = exactness(r.to_dict())
        insns = f"{r.instructions / 1e6:.2f}M" if r.instructions else "-"
        ms = f"{r.counted_ms:.2f} ms" if r.counted_ms is not None else "-"
        lines.append(f"{r.path:<20} {r.emulator:<26} {r.kernels or '-':<9} {100 * (r.accuracy or 0):>7.2f}% "
                     f"{exact:>14} {insns:>8} {ms:>9}")
    return "\n".join(lines)


@dataclass
class VerifyRecord:
    """verify.json: every host run, the per-layer error, emulated runs, the gates and whether all passed."""

    target: str
    exported_for: str
    task: str
    samples: Samples
    float_accuracy: float
    float_per_class: dict[str, float | None]
    runs: list[RuntimeRun]
    layers: list[LayerError]
    layers_plot: str | None
    latency_estimates: dict[str, dict[str, Any]]
    emulated: list[EmulatedRun]
    budgets: dict[str, Any]
    gates: dict[str, Gate | None]
    max_drop_pp: float
    passed: bool
    timings_s: dict[str, float] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": VERIFY_FORMAT, "target": self.target, "exported_for": self.exported_for,
                "task": self.task, "samples": asdict(self.samples),
                "float": {"accuracy": self.float_accuracy, "per_class_accuracy": self.float_per_class},
                "runs": [r.to_json() for r in self.runs], "layers": [asdict(r) for r in self.layers],
                "layers_plot": self.layers_plot, "latency_estimates": self.latency_estimates,
                "emulated": [r.to_dict() for r in self.emulated], "budgets": self.budgets,
                "gates": {k: g.to_dict() if g else None for k, g in self.gates.items()},
                "max_drop_pp": self.max_drop_pp, "passed": self.passed, "timings_s": self.timings_s,
                "versions": self.versions}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VerifyRecord:
        return cls(d["target"], d.get("exported_for", d["target"]), d["task"], Samples(**d["samples"]),
                   d["float"]["accuracy"], dict(d["float"]["per_class_accuracy"]),
                   [RuntimeRun.from_json(r) for r in d["runs"]], [LayerError(**r) for r in d.get("layers", [])],
                   d.get("layers_plot"), d.get("latency_estimates", {}),
                   [EmulatedRun.from_json(r) for r in d.get("emulated", [])], d["budgets"],
                   {k: Gate(**g) if g else None for k, g in d["gates"].items()}, d.get("max_drop_pp", 1.0),
                   d["passed"], d.get("timings_s", {}), d.get("versions", {}))

    def write(self, folder: Path) -> Path:
        return write_json(folder / VERIFY_JSON, self.to_json())

    def text(self, build_dir: str | Path) -> str:
        """What ``edgekd verify`` prints."""
        n = self.samples
        lines = [f"{self.target}: {n.test} of {n.of} test samples; float student accuracy "
                 f"{100 * self.float_accuracy:.2f}%",
                 f"{'artifact':<20} {'runtime':<11} {'accuracy':>8} {'agree':>7} {'max err':>8} "
                 f"{'host ms':>8} {'arena':>9}"]
        lines += [r.text() for r in self.runs]
        if self.layers:
            worst = min(self.layers, key=lambda r: r.sqnr_db)
            lines.append(f"per-layer int8 error: worst {worst.index}: {worst.op} {worst.name} "
                         f"{worst.sqnr_db:.1f} dB SQNR (plot: {build_dir}/{self.layers_plot})")
        if self.emulated:
            lines.append(emulated_text(self.emulated))
        lines += [g.text(name) for name, g in self.gates.items() if g is not None]
        lines.append(f"wrote {build_dir}/{VERIFY_JSON}")
        return "\n".join(lines)


def load_verify(build: str | Path, target: str = "T") -> VerifyRecord:
    """A build folder's verify.json; missing or of the wrong shape is one EdgekdError line."""
    build = Path(build)
    path = build / VERIFY_JSON
    fix = f"re-run `edgekd verify --target {target} {build}`"
    if not path.is_file():
        raise EdgekdError(f"{build}: no verify.json; run `edgekd verify --target {target} {build}` first")
    data = read_json(path, "verification record", fix=fix)
    try:
        return VerifyRecord.from_json(data)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        detail = f"lacks {exc}" if isinstance(exc, KeyError) else f"has a field of the wrong type ({exc})"
        raise EdgekdError(f"{path}: {detail}: not a verification record this edgekd wrote; {fix}") from None
