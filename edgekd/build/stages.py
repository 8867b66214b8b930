"""The stage runner: which stages a build has, what each needs, and skipping the ones that are up to date.

:data:`PIPELINE` declares the stages in order and, for each, the stages whose results it takes (as in
ExecuTorch's ``export/stages.py``, but the results travel as typed records, not through a string-keyed dict).
A stage's key holds the run token of every stage it needs, so a stage that reruns reruns everything after it.
:class:`Stages` keeps the keys and the hashes of what each stage wrote in ``stages.json``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.build.context import BuildLayout
from edgekd.errors import EdgekdError
from edgekd.io import read_json, sha256_file, write_json
from edgekd.logs import log


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline and the stages whose results it takes."""

    name: str
    needs: tuple[str, ...] = ()


PIPELINE: tuple[Stage, ...] = (
    Stage("plan"),
    Stage("teacher"),
    Stage("distill", needs=("plan", "teacher")),
    Stage("export", needs=("distill",)),
    Stage("verify", needs=("export",)),
    Stage("package", needs=("verify",)),
)


def check_order(pipeline: Sequence[Stage]) -> tuple[str, ...]:
    """The stage names in order; a stage that needs one that does not run before it is a programming error."""
    seen: list[str] = []
    for stage in pipeline:
        late = [n for n in stage.needs if n not in seen]
        if late:
            raise ValueError(f"stage {stage.name} needs {', '.join(late)}, which must run before it")
        seen.append(stage.name)
    return tuple(seen)


STAGES = check_order(PIPELINE)
BY_NAME = {s.name: s for s in PIPELINE}


def _snapshot(roots: list[Path]) -> dict[Path, tuple[int, int, int]]:
    """(inode, size, mtime) of every file under ``roots``: what changed across a stage is what it wrote
    (edgekd writes by rename, so a rewritten file always gets a new inode)."""
    files: dict[Path, tuple[int, int, int]] = {}
    for root in roots:
        candidates = [root] if root.is_file() else root.rglob("*") if root.is_dir() else []
        for p in candidates:
            if p.name in BuildLayout.BOOKKEEPING or not p.is_file():
                continue
            st = p.stat()
            files[p] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return files


def _valid_state(state: Any) -> bool:
    """stages.json as this code writes it: stage -> {key, run, outputs: {relative path: sha256}}."""
    return isinstance(state, dict) and all(
        isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("run"), str)
        and isinstance(rec.get("outputs"), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in rec["outputs"].items())
        for rec in state.values())


class Stages:
    """Runs stages, skipping one only when its input key is unchanged and EVERY file it wrote is still there with
    the hash recorded in ``stages.json`` (paths relative to the build folder, so a moved folder still skips).

    Each run of a stage gets a fresh ``run`` token; downstream stages put their upstream's token in their key,
    so a stage that reruns (an output was changed, or its inputs) reruns everything that depends on it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = BuildLayout(folder).stages_json
        self.state: dict[str, Any] = self._load()
        self.timings: dict[str, float] = {}
        self.skipped: list[str] = []

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            state = read_json(self.path, "stage record")
        except EdgekdError as exc:
            log.warning("%s; rebuilding every stage", exc)
            return {}
        if not _valid_state(state):
            log.warning("%s: not a stage record this edgekd wrote (wrong shape); rebuilding every stage", self.path)
            return {}
        return state

    def token(self, name: str) -> str | None:
        """The run token of stage ``name`` (None if it never ran): downstream keys include it."""
        rec = self.state.get(name)
        return rec["run"] if rec else None

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.folder).as_posix()
        except ValueError:
            return str(path.resolve())

    def _changed(self, rec: dict[str, Any], outputs: list[Path]) -> str | None:
        """Why the recorded outputs cannot be trusted any more, or None when every one is intact."""
        recorded = rec["outputs"]
        for p in outputs:
            if self._rel(p) not in recorded:
                return f"{self._rel(p)} was not recorded when the stage ran"
        for rel, digest in sorted(recorded.items()):
            path = Path(rel) if Path(rel).is_absolute() else self.folder / rel
            if not path.is_file():
                return f"{rel} is missing since it was written"
            if sha256_file(path) != digest:
                return f"{rel} changed since it was written"
        return None

    def run(self, name: str, inputs: dict[str, Any], outputs: list[Path], fn: Callable[[], Any],
            roots: list[Path] | None = None) -> None:
        """Run ``fn`` unless stage ``name`` is up to date. ``outputs`` must exist afterwards; every file that
        appears or changes under ``roots`` (files or folders, default ``outputs``) while it runs is recorded too."""
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
        rec = self.state.get(name)
        if rec and rec["key"] == key:
            why = self._changed(rec, outputs)
            if why is None:
                self.timings[name] = 0.0
                self.skipped.append(name)
                log.info("stage %s: unchanged, skipped", name)
                return
            log.warning("stage %s: %s; re-running", name, why)
        elif rec:
            log.info("stage %s: inputs changed since it last ran; running", name)
        roots = roots if roots is not None else outputs
        before = _snapshot(roots)
        t = time.perf_counter()
        fn()
        self.timings[name] = round(time.perf_counter() - t, 2)
        missing = [self._rel(p) for p in outputs if not p.is_file()]
        if missing:
            raise EdgekdError(f"stage {name} did not write {', '.join(missing)}")
        after = _snapshot(roots)
        written = set(outputs) | {p for p, st in after.items() if before.get(p) != st}
        self.state[name] = {"key": key, "run": secrets.token_hex(8),
                            "outputs": {self._rel(p): sha256_file(p) for p in sorted(written)}}
        write_json(self.path, self.state, sort_keys=True)  # last: the stage counts as done only now


    def upstream_key(self, name: str, shared: Stages | None = None) -> dict[str, str | None]:
        """The run tokens of the stages ``name`` needs (``shared`` holds a teacher trained for several targets)."""
        return {f"{n}_run": (shared if n == "teacher" and shared is not None else self).token(n)
                for n in BY_NAME[name].needs}
