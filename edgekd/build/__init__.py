"""``edgekd build``: plan -> teacher -> distill -> export -> verify -> package for one or more targets.

Each stage is one module of this package taking a :class:`BuildContext` (the resolved target, the options, the
folder layout) and the records of the stages it needs, and returning its own record. Its inputs (settings,
upstream run tokens, the edgekd source) are hashed into a key kept in ``stages.json``; a stage whose key and
outputs are unchanged is skipped, so a re-run is cheap and changing one setting reruns only what depends on it.
Several targets share one teacher and, through ``~/.cache/edgekd``, one teacher-output cache.

From Python::

    from edgekd.build import build
    report = build("nrf52840-dk", task="digits", fast=True)
    print(report.passed, report.bundle)
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.build import distill as distill_stage
from edgekd.build import export as export_stage
from edgekd.build import package as package_stage
from edgekd.build import plan as plan_stage
from edgekd.build import teacher as teacher_stage
from edgekd.build import verify as verify_stage
from edgekd.build.context import (
    BuildContext,
    BuildLayout,
    BuildOptions,
    check_emulator_choice,
    code_hash,
    data_key,
    resolve_emulator,
)
from edgekd.build.records import DistillRecord, PlanRecord, TeacherRecord
from edgekd.build.report import Report
from edgekd.build.stages import PIPELINE, STAGES, Stage, Stages
from edgekd.build.text import is_text, run_text_target
from edgekd.errors import EdgekdError
from edgekd.io import FolderLock, check_writable

if TYPE_CHECKING:
    from edgekd.targets import Target

__all__ = ["PIPELINE", "STAGES", "BuildContext", "BuildLayout", "BuildOptions", "BuildResult", "DistillRecord",
           "PlanRecord", "Report", "Stage", "Stages", "TeacherRecord", "build", "build_many", "build_target",
           "check_emulator_choice", "code_hash", "data_key", "ensure_teacher", "resolve_emulator", "run_target"]


@dataclass
class BuildResult:
    """Several targets built into one folder: a report each, and the teacher they shared."""

    reports: list[Report]
    teacher: str | None = None
    teacher_trained_s: float | None = None
    out: Path = field(default=Path("builds"), compare=False)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports)

    def to_json(self) -> dict[str, Any]:
        """What ``edgekd build --json`` prints."""
        out: dict[str, Any] = {"reports": [r.to_json() for r in self.reports], "teacher": self.teacher}
        if self.teacher_trained_s is not None:
            out["teacher_trained_s"] = self.teacher_trained_s
        return out

    def text(self) -> str:
        """What ``edgekd build`` prints: each target's lines, with its folder as the user named it."""
        several = self.teacher is not None
        return "\n".join(r.text(f"{self.out}/{r.target}" if several else self.out) for r in self.reports)


def ensure_teacher(opts: BuildOptions, folder: Path, stages: Stages) -> str:
    """The teacher every target of this build shares (``opts`` resolved): the given one, or the built-in one
    trained once into ``folder``."""
    return teacher_stage.run(opts, BuildLayout(Path(folder)), stages).ref


def run_target(target: Target, opts: BuildOptions, out: Path, teacher: TeacherRecord | None = None,
               shared: Stages | None = None) -> Report:
    """Every stage for one resolved target into ``out`` (the caller holds ``out``'s lock); writes report.json and
    report.md and returns the :class:`Report`. ``teacher``/``shared``: a teacher trained for several targets."""
    started = time.perf_counter()
    ctx = BuildContext.create(target, opts, out)
    check_writable(ctx.layout.root)
    stages = Stages(ctx.layout.root)
    if is_text(ctx.spec):  # the task's kind picks the path: text records through the same stages
        return run_text_target(ctx, stages, started, opts.epochs, opts.sentences or opts.limit)  # type: ignore[return-value]
    plan = plan_stage.run(ctx, stages)
    teacher_stages = shared or stages
    teacher = teacher or teacher_stage.run(ctx.opts, ctx.layout, teacher_stages)
    dist = distill_stage.run(ctx, stages, plan, teacher, teacher_stages)
    export = export_stage.run(ctx, stages)
    verify = verify_stage.run(ctx, stages)
    bundle = package_stage.run(ctx, stages)
    timings = ({"teacher": shared.timings.get("teacher", 0.0)} if shared else {}) | stages.timings
    from edgekd.build.report import make_report

    report = make_report(ctx.layout, ctx.target, export, verify, dist, bundle, timings, stages.skipped)
    report.timings_s["total"] = round(time.perf_counter() - started, 2)
    report.write(ctx.layout, ctx.target.runtime_flash_bytes)
    return report


def build_target(target: str | Target, opts: BuildOptions, out: Path, teacher: str | None = None,
                 shared: Stages | None = None, lock: bool = False) -> dict[str, Any]:
    """Build one target (a name, a profile path or a loaded Target) into ``out``; returns report.json's content
    (scripts/bench.py's interface). ``lock`` takes ``out``'s FolderLock."""
    from edgekd.targets import Target, load_target

    resolved = target if isinstance(target, Target) else load_target(target)
    given = TeacherRecord(teacher, trained=shared is not None) if teacher else None
    with FolderLock(out) if lock else nullcontext():
        return run_target(resolved, opts, Path(out), given, shared).to_json()


def _prepare(targets: list[str | Target], opts: BuildOptions) -> list[Target]:
    """Everything that can be refused before any work: unknown targets, bad budgets, ``--emulator qemu`` without
    QEMU, a bad signing key."""
    from edgekd.targets import Target, load_target

    resolved = opts.resolved()
    loaded = [(t if isinstance(t, Target) else load_target(t)).with_budgets(**resolved.budgets) for t in targets]
    for target in loaded:
        check_emulator_choice(resolved.emulator, target)
    if resolved.sentences is not None:
        from edgekd.data import get_spec

        if not is_text(get_spec(resolved.task, resolved.data_dir)):
            raise EdgekdError(f"--sentences sets a text task's training sentences; {resolved.task} is not a text "
                              f"task: drop it")
    if resolved.sign:  # a bad key fails now, not after training
        from edgekd.signing import load_private_key

        load_private_key(resolved.sign)
    return loaded


def build_many(targets: list[str | Target], opts: BuildOptions, out_dir: str | Path) -> BuildResult:
    """Build every target in ``targets`` (names, profile paths or Targets) into ``out_dir`` (one sub-folder each
    when there are several, sharing one teacher). ``out_dir`` stays locked for the whole build."""
    loaded = _prepare(targets, opts)
    out = Path(out_dir)
    with FolderLock(out):
        if len(loaded) == 1:
            return BuildResult([run_target(loaded[0], opts, out)], out=out)
        shared = Stages(out)
        teacher = teacher_stage.run(opts.resolved(), BuildLayout(out), shared)
        reports = []
        for t in loaded:
            with FolderLock(out / t.name):
                reports.append(run_target(t, opts, out / t.name, teacher, shared))
        return BuildResult(reports, teacher.ref, shared.timings.get("teacher", 0.0), out)


def default_out(target: Target) -> Path:
    """``builds/<profile name>``, also for ``--target path/to/board.yaml``."""
    return Path("builds") / target.name


def build(target: str | Target, opts: BuildOptions | None = None, out: str | Path | None = None,
          **options: Any) -> Report:
    """Build one target and return its :class:`Report` (the Python API of ``edgekd build``).

    ``target`` is a profile name, a profile path or a loaded Target; ``options`` are :class:`BuildOptions`
    fields (``task="digits", fast=True, emulator="none"``, ...) when ``opts`` is not given; ``out`` defaults to
    ``builds/<target>``. Refusals (unknown target, no student fits, ...) raise :class:`edgekd.errors.EdgekdError`.
    """
    opts = opts if opts is not None else BuildOptions(**({"progress": False} | options))
    loaded = _prepare([target], opts)[0]
    return build_many([loaded], opts, out if out is not None else default_out(loaded)).reports[0]
