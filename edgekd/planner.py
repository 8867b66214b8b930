"""Budget planner: the most capable student in the search space that fits every budget of a target.

"Most capable" is largest MACs, then most parameters. Each candidate is costed by :mod:`edgekd.costmodel`
(flash = model bytes + a text student's tokenizer files + the runtime's flash overhead; RAM = planned arena +
the runtime's RAM overhead; latency = the estimate: per-operator cycles of edgekd's generated C calibrated on
counted runs where the target is a microcontroller with a fit, of a text student's XNNPACK operators on a
Cortex-A core likewise, else the profile's MAC rate) and refused when its converted graph would need an
operator the target does not support, so nobody trains a student that cannot ship.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgekd import costmodel, students
from edgekd.data import TaskSpec
from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, atomic_write_text, cache_dir
from edgekd.logs import log
from edgekd.students import StudentConfig, build_student, families_for, get_family, model_input_shape
from edgekd.targets import Target
from edgekd.units import format_bytes


@dataclass
class Candidate:
    family: str
    config: dict[str, Any]
    params: int
    macs: int
    predicted: dict[str, float]
    fits: bool
    over: dict[str, float] = field(default_factory=dict)  # budget -> amount over (bytes or ms)
    unsupported_ops: list[str] = field(default_factory=list)

    @property
    def student(self) -> StudentConfig:
        return StudentConfig(self.family, self.config)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        if self.family == "user":  # the user's own student: its reference, not its hash
            return f"user({self.config.get('ref')})"
        return f"{self.family}(" + ", ".join(f"{k}={v}" for k, v in sorted(self.config.items())) + ")"


@dataclass
class Plan:
    target: str
    task: str
    budgets: dict[str, float]
    student: Candidate | None
    candidates: list[Candidate]
    dtype: str

    @property
    def fits(self) -> bool:
        return self.student is not None

    def to_dict(self, runners_up: int = 10) -> dict[str, Any]:
        best = self.student
        return {
            "target": self.target,
            "task": self.task,
            "dtype": self.dtype,
            "student": {"family": best.family, "config": best.config, "params": best.params,
                        "macs": best.macs} if best else None,
            "predicted": best.predicted if best else None,
            "budgets": self.budgets,
            "fits": self.fits,
            "candidates_total": len(self.candidates),
            "candidates_fitting": sum(c.fits for c in self.candidates),
            "candidates": [c.to_dict() for c in self.candidates[: runners_up + 1]],
            "latency_kind": "estimated",
        }

    def text(self, runners_up: int, target_class: str, input_shape: tuple[int, ...]) -> str:
        """What `edgekd plan` prints: the student against each budget, then the runners-up that also fit."""
        best = self.student
        assert best is not None, "text() is for a plan that fits; explain_no_fit() says why one does not"
        b, p = self.budgets, best.predicted
        lines = [f"target {self.target} ({target_class}), task {self.task} {input_shape}, {self.dtype} tensors; "
                 f"{sum(c.fits for c in self.candidates)}/{len(self.candidates)} candidates fit",
                 f"student: {best.label()}  params {best.params:,}  MACs {best.macs:,}",
                 f"  {'':<8} {'predicted':>12} {'budget':>12}",
                 f"  {'flash':<8} {format_bytes(p['flash_bytes']):>12} {format_bytes(b['flash_bytes']):>12}",
                 f"  {'RAM':<8} {format_bytes(p['ram_bytes']):>12} {format_bytes(b['ram_bytes']):>12}",
                 f"  {'latency':<8} {p['latency_ms']:>10.2f}ms {b['latency_ms']:>10.1f}ms  (estimated)",
                 "runners-up:"]
        for c in [c for c in self.candidates[1:] if c.fits][:runners_up]:
            lines.append(f"  {c.label():<52} MACs {c.macs:>10,} flash {format_bytes(c.predicted['flash_bytes']):>10} "
                         f"RAM {format_bytes(c.predicted['ram_bytes']):>10} {c.predicted['latency_ms']:>8.2f}ms")
        return "\n".join(lines)


#: The cost cache holds whole :class:`costmodel.CostReport` records (2); bump when their shape changes.
_CACHE_SCHEMA = b"cost-report/2"


def _cache_path() -> Path:
    root = cache_dir()[0]
    version = hashlib.sha256(_CACHE_SCHEMA + Path(costmodel.__file__).read_bytes()).hexdigest()[:12]
    return root / f"costs-{version}.json"


def _report_from_dict(d: dict[str, Any]) -> costmodel.CostReport:
    """A cached cost report back as the dataclass :func:`costmodel.analyze` made (``to_dict`` round trip)."""
    fields = {k: v for k, v in d.items() if k not in ("ops", "model_bytes", "layers")}
    layers = [costmodel.Layer(**(ly | {"output_shape": tuple(ly["output_shape"])})) for ly in d["layers"]]
    return costmodel.CostReport(**(fields | {"input_shape": tuple(d["input_shape"]), "layers": layers}))


def _family_version(name: str) -> str:
    """Hash of the family's module and the shared student code, so editing an architecture invalidates costs."""
    h = hashlib.sha256(Path(students.__file__).read_bytes())
    source = inspect.getsourcefile(get_family(name).build)
    if source:
        h.update(Path(source).read_bytes())
    return h.hexdigest()[:12]


class _CostCache:
    """Cost reports keyed by student config, input shape and cost-model source; planning reruns are instant."""

    def __init__(self) -> None:
        self.path = _cache_path()
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False
        self.versions: dict[str, str] = {}

    def get(self, config: StudentConfig, task_shape: tuple[int, ...], classes: int,
            dtype: str) -> costmodel.CostReport:
        if config.family not in self.versions:  # once per planning run: sources may change between runs
            self.versions[config.family] = _family_version(config.family)
        key = f"{config.key()}|{self.versions[config.family]}|{task_shape}|{classes}|{dtype}"
        if key in self.data:
            try:
                return _report_from_dict(self.data[key])
            except (KeyError, TypeError, ValueError):  # a damaged entry is costed again, not trusted
                log.debug("cost cache %s: entry %s unreadable; costing it again", self.path, key)
        torch.manual_seed(0)
        model = build_student(config, task_shape, classes)
        report = costmodel.analyze(model, model_input_shape(model), dtype,
                                   channels_last_input=model.channels_last_input)
        self.data[key] = report.to_dict()
        self.dirty = True
        return report

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            atomic_write_text(self.path, json.dumps(self.data))
        except OSError as exc:  # a cache that cannot be written only costs time on the next run
            log.warning("cost cache %s not saved (%s)", self.path, exc.strerror or type(exc).__name__)


def app_flash_bytes(config: StudentConfig, spec: TaskSpec, target: Target) -> int:
    """Flash the app holds beside the model: a text student's tokenizer files and table header (the files its
    bundle ships, :mod:`edgekd.text.footprint`); 0 for other tasks, whose bundles the model bytes cover."""
    if spec.kind != "text":
        return 0
    from edgekd.text.footprint import app_flash_bytes as text_app_bytes
    from edgekd.text.task import RECIPE, RECIPES

    recipe = RECIPES.get(spec.name, RECIPE)
    return sum(text_app_bytes(config.params, int(spec.input_shape[0]), target.is_mcu,
                              recipe.bucket_tokenizer).values())


def evaluate(config: StudentConfig, target: Target, spec: TaskSpec, cache: _CostCache | None = None) -> Candidate:
    """Cost one student config on one target and check it against every budget and the operator set."""
    cache = cache or _CostCache()
    dtype = "fp32" if target.quantization == "fp32" else "int8"
    cost = cache.get(config, spec.input_shape, spec.num_classes, dtype)
    app = app_flash_bytes(config, spec, target)
    predicted = {
        "flash_bytes": int(cost.model_bytes + app + target.runtime_flash_bytes),
        "ram_bytes": int(cost.arena_bytes + target.runtime_ram_bytes),
        "latency_ms": round(costmodel.estimate_latency(cost, target).ms, 4),
    }
    if app:
        predicted["app_flash_bytes"] = app
    budgets = target.budgets
    over = {}
    if predicted["flash_bytes"] > budgets.flash_bytes:
        over["flash_bytes"] = predicted["flash_bytes"] - budgets.flash_bytes
    if predicted["ram_bytes"] > budgets.ram_bytes:
        over["ram_bytes"] = predicted["ram_bytes"] - budgets.ram_bytes
    if predicted["latency_ms"] > budgets.latency_ms:
        over["latency_ms"] = round(predicted["latency_ms"] - budgets.latency_ms, 4)
    unsupported = [op for op in cost.ops if op not in target.operators]
    return Candidate(config.family, dict(config.params), cost.params, cost.macs, predicted,
                     not over and not unsupported, over, unsupported)


class OverBudget(EdgekdError):
    """A named student misses a budget: a failed budget, exit 1 (README "Command line")."""

    exit_code = 1


def check_student(config: StudentConfig, target: Target, spec: TaskSpec) -> Candidate:
    """Cost a student the user named (``--student``) and refuse it before any training: an operator the target
    lacks is bad input (exit 2, naming the operators), a missed budget fails that budget (exit 1, naming it and
    by how much)."""
    cand = evaluate(config, target, spec)
    name = config.params.get("ref", cand.label())
    if cand.unsupported_ops:
        ops = [op.removeprefix("UNSUPPORTED:") for op in cand.unsupported_ops]
        raise EdgekdError(f"student {name} needs operator(s) {', '.join(ops)} that {target.name} does not run "
                          f"(its operators: {', '.join(sorted(target.operators))}); replace those layers")
    if cand.over:
        p, b = cand.predicted, target.budgets.to_dict()
        parts = [f"latency {p[k]:.1f} ms > budget {b[k]:.1f} ms" if k == "latency_ms" else
                 f"{'flash' if k == 'flash_bytes' else 'RAM'} {format_bytes(p[k])} > budget {format_bytes(b[k])} "
                 f"(over by {format_bytes(v)})" for k, v in cand.over.items()]
        raise OverBudget(f"student {name} does not fit {target.name}: {'; '.join(parts)} (predicted by the cost "
                         "model); make it smaller or raise the budget (--ram-budget, --flash-budget, "
                         "--latency-budget)")
    return cand


def plan(target: Target, spec: TaskSpec, families: list[str] | None = None, progress: bool = False) -> Plan:
    """Rank every candidate of the families that serve the task; the best fitting one is the student.

    Costing a candidate exports its graph (~0.1 s); results are cached on disk, so re-planning is instant.
    """
    fams = families_for(spec.kind, families)
    if not fams:
        raise EdgekdError(f"no student family serves {spec.kind} tasks"
                          + (f" among {', '.join(families)}" if families else ""))
    cache = _CostCache()
    configs = [StudentConfig(f.name, params) for f in fams for params in f.candidates(spec.input_shape)]
    with Progress(TextColumn("planning {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True, disable=not progress) as bar:
        job = bar.add_task(f"{spec.name} on {target.name}", total=len(configs))
        candidates = []
        for config in configs:
            candidates.append(evaluate(config, target, spec, cache))
            bar.advance(job)
    cache.save()
    candidates.sort(key=lambda c: (not c.fits, -c.macs, -c.params, c.label()))
    best = candidates[0] if candidates and candidates[0].fits else None
    return Plan(target.name, spec.name, target.budgets.to_dict(), best, candidates,
                "fp32" if target.quantization == "fp32" else "int8")


@dataclass
class StudentCost:
    """`edgekd cost`: one student's per-layer cost report, and its estimated latency on a target if one is given."""

    config: StudentConfig
    task: str
    report: costmodel.CostReport
    latency: costmodel.LatencyEstimate | None

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.config.family, "config": self.config.params, "task": self.task,
                "cost": self.report.to_dict(), "latency": self.latency.to_dict() if self.latency else None}

    def text(self) -> str:
        r, lat = self.report, self.latency
        lines = [r.table(),
                 f"params {r.params:,}  MACs {r.macs:,}  int8 weights {format_bytes(r.int8_weight_bytes)}"
                 f"  .tflite ~{format_bytes(r.tflite_bytes)}",
                 f"arena: activations {format_bytes(r.activation_bytes)} + TFLite Micro overhead "
                 f"{format_bytes(r.overhead_bytes)} = {format_bytes(r.arena_bytes)} (predicted)"]
        if lat:
            lines.append(f"latency {lat.ms:.2f} ms (estimated; floor {lat.floor_ms:.3f} ms): {lat.method}")
        return "\n".join(lines)


def student_cost(config: StudentConfig, spec: TaskSpec, dtype: str = "int8", target: Target | None = None
                 ) -> StudentCost:
    """Build ``config`` for ``spec`` and cost it layer by layer (a config its family cannot build is bad input)."""
    try:
        model = build_student(config, spec.input_shape, spec.num_classes)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise EdgekdError(f"--config: {config.family} cannot be built with {config.params}: {exc}") from None
    report = costmodel.analyze(model, model_input_shape(model), dtype, channels_last_input=model.channels_last_input)
    return StudentCost(config, spec.name, report, report.latency(target) if target else None)


def explain_no_fit(p: Plan) -> str:
    """One line: which budget the closest candidate misses, and by how much."""
    def excess(c: Candidate) -> float:
        return sum(v / p.budgets[k] for k, v in c.over.items()) + (10.0 if c.unsupported_ops else 0.0)

    closest = min(p.candidates, key=excess)
    parts = []
    for key, amount in closest.over.items():
        if key == "latency_ms":
            parts.append(f"latency {closest.predicted[key]:.1f} ms > budget {p.budgets[key]:.1f} ms "
                         f"(over by {amount:.1f} ms)")
        else:
            name = "flash" if key == "flash_bytes" else "RAM"
            parts.append(f"{name} {format_bytes(closest.predicted[key])} > budget {format_bytes(p.budgets[key])} "
                         f"(over by {format_bytes(amount)})")
    if closest.unsupported_ops:
        parts.append(f"operators {', '.join(closest.unsupported_ops)} not supported by {p.target}")
    return (f"no student fits {p.target} for task {p.task}: the closest, {closest.label()}, needs "
            + "; ".join(parts) + (". Raise the budget (e.g. --ram-budget) or pick a larger target" if closest.over
                                  else ". Add the operators to the target profile or pick another target"))


def plot_plan(p: Plan, path: str | Path) -> Path:
    """Scatter of every candidate's predicted RAM vs flash, with the budget lines; the chosen one ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for fits, color, label in ((True, "tab:green", "fits"), (False, "tab:red", "misses a budget")):
        pts = [c for c in p.candidates if c.fits == fits]
        if pts:
            ax.scatter([c.predicted["flash_bytes"] / 1024 for c in pts], [c.predicted["ram_bytes"] / 1024 for c in pts],
                       s=[10 + 40 * (c.macs / max(x.macs for x in p.candidates)) for c in pts], c=color, alpha=0.6,
                       label=label)
    ax.axvline(p.budgets["flash_bytes"] / 1024, color="k", ls="--", lw=1, label="flash budget")
    ax.axhline(p.budgets["ram_bytes"] / 1024, color="k", ls=":", lw=1, label="RAM budget")
    if p.student:
        ax.scatter([p.student.predicted["flash_bytes"] / 1024], [p.student.predicted["ram_bytes"] / 1024], s=160,
                   facecolors="none", edgecolors="blue", linewidths=2, label=f"chosen: {p.student.label()}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted flash (KiB, model + runtime)")
    ax.set_ylabel("predicted RAM (KiB, arena + runtime)")
    ax.set_title(f"{p.task} on {p.target}: {len(p.candidates)} candidates (marker size = MACs)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
