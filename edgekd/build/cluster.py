"""``edgekd build --targets a,b,c --ray`` (or ``--all --ray``): each target's build as a Ray task.

The shared teacher is trained (or named) once, here, exactly as :func:`edgekd.build.build_many` does; then every
target runs :func:`edgekd.build.run_target` in its own Ray task of ``threads`` CPUs, pinned to that many torch
threads, into the same sub-folder a serial build uses. Each task is the same function of its inputs as in a
serial build, so the reports are the same (apart from timings) as a serial run on the same number of threads
per target. The nodes must share the build folder (one machine, or a shared filesystem) and have edgekd
installed; a Ray Client address (``ray://host:port``) works like a node address.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.build import BuildLayout, BuildOptions, BuildResult, Report, Stages, _prepare, build_many, run_target
from edgekd.build import teacher as teacher_stage
from edgekd.io import FolderLock

if TYPE_CHECKING:
    from edgekd.targets import Target


def _build_one(job: dict[str, Any]) -> Report:
    """One target's whole build, in a Ray worker: ``job`` holds the resolved target, the options, the shared
    folder, the teacher and its timing, and the threads to pin."""
    import torch

    torch.set_num_threads(int(job["threads"]))
    here = os.getcwd()
    os.chdir(job["cwd"])  # the driver's: relative paths (the build folder, --data-dir) mean what they mean there
    try:
        out = Path(job["out"])
        shared = Stages(out)  # reads the teacher's run token from the top folder's stages.json
        shared.timings["teacher"] = job["teacher_s"]
        target: Target = job["target"]
        with FolderLock(out / target.name):
            return run_target(target, job["opts"], out / target.name, job["teacher"], shared)
    finally:
        os.chdir(here)


def build_on_ray(targets: list[str | Target], opts: BuildOptions, out_dir: str | Path, cluster: str | None = None,
                 threads: int = 1, workers: int | None = None) -> BuildResult:
    """:func:`edgekd.build.build_many` with one Ray task per target, on a local Ray instance (``workers`` CPUs,
    default all) or the cluster at ``cluster`` / ``$RAY_ADDRESS``. One target builds in this process."""
    from edgekd.search_exec import RayExecutor

    loaded = _prepare(targets, opts)
    if len(loaded) == 1:
        return build_many(loaded, opts, out_dir)
    out = Path(out_dir)
    with FolderLock(out):
        shared = Stages(out)
        teacher = teacher_stage.run(opts.resolved(), BuildLayout(out), shared)
        teacher_s = shared.timings.get("teacher", 0.0)
        runner = RayExecutor(cluster or os.environ.get("RAY_ADDRESS") or None, threads, workers, fn=_build_one)
        try:
            reports = runner.map([{"target": t, "opts": opts, "out": str(out), "cwd": os.getcwd(), "threads": threads,
                                   "teacher": teacher, "teacher_s": teacher_s} for t in loaded])
        finally:
            runner.close()
        return BuildResult(reports, teacher.ref, teacher_s, out)


__all__ = ["build_on_ray"]
