"""What one target's build knows before any stage runs: the resolved target, the options and the folder layout.

A :class:`BuildContext` is made once per target at the start of a build. Stages take it instead of a target
name or loose paths, so a profile given as ``--target path/board.yaml`` is never looked up by name again, and
:class:`BuildLayout` is the only place that names a file of a build folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd.errors import EdgekdError
from edgekd.export.records import EXPORT_JSON
from edgekd.io import FolderLock, sha256_file
from edgekd.logs import log
from edgekd.students.store import DISTILL_JSON, STUDENT_FILE
from edgekd.tools import check_emulator_choice, emulator_tools
from edgekd.verify.records import VERIFY_JSON

if TYPE_CHECKING:
    from edgekd.data.core import TaskSpec
    from edgekd.targets import Target


@dataclass
class BuildOptions:
    """What a build does; ``fast`` is a smoke build of the same stages (few epochs, a sample of the data)."""

    task: str = "digits"
    data_dir: str | None = None
    teacher: str | None = None  # a teacher file/reference; None trains the built-in one
    teacher_weights: str | None = None  # state dict for a module:factory teacher
    allow_weak_teacher: bool = False  # distil even from a teacher at chance level on validation
    labels: int | None = None  # keep this many training labels; the rest of the training split is unlabelled
    unlabelled: str | None = None  # samples without labels (.npz with x, .npy, image folder)
    mix: str = "none"  # function matching with the teacher: mixup | cutmix | none (edgekd.distill.mix)
    views: int = 0  # distil over this many fixed augmentation draws, teacher outputs cached (0: fresh each epoch)
    min_accuracy: float | None = None  # accuracy gate's bar (0..1), above chance level
    fast: bool = False
    loss: str = "kd"
    epochs: int | None = None
    teacher_epochs: int | None = None
    seed: int = 0
    qat: bool = False
    search: int = 0
    student: str | None = None  # the user's own student (file.py:factory, package.module:factory, .pt2)
    searched: str | None = None  # an `edgekd search` result (frontier.json or its folder): train its chosen student
    baseline: bool = False
    limit: int | None = None
    sentences: int | None = None  # a text task's training sentences (None: the recipe's); image tasks refuse it
    families: list[str] | None = None
    max_drop_pp: float = 1.0
    vectors: int = 16
    sign: str | None = None  # Ed25519 private key (edgekd keygen) that signs the bundle
    progress: bool = True
    budgets: dict[str, str | None] = field(default_factory=dict)
    emulator: str = "auto"  # "auto": QEMU when the target has a QEMU machine and it is installed; "qemu"; "none"
    emulator_limit: int | None = 1000
    emulator_timeout_s: float = 900.0

    #: Test samples a ``fast`` build evaluates (all of them when the set is smaller).
    FAST_EVAL_SAMPLES = 300

    def __post_init__(self) -> None:
        """Refuse what cannot work before any stage runs (a built-in teacher would be trained first)."""
        if self.teacher_weights and not self.teacher:
            raise EdgekdError("--teacher-weights loads a state dict into --teacher package.module:factory; give "
                              "that factory too")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise EdgekdError(f"min_accuracy must be a fraction in 0..1, got {self.min_accuracy!r}")
        if self.mix != "none":
            from edgekd.distill.mix import build_mix

            build_mix(self.mix)  # an unknown name: one line now, not after the teacher stage
        from edgekd.distill.augment import check_views

        check_views(self.views)

    def resolved(self) -> BuildOptions:
        """Fill what ``fast`` changes: 6 distillation epochs, a short teacher, a stratified 3,000-sample slice."""
        if not self.fast:
            return BuildOptions(**(asdict(self) | {"epochs": self.epochs or 20}))
        return BuildOptions(**(asdict(self) | {"epochs": self.epochs or 6, "teacher_epochs": self.teacher_epochs or 8,
                                               "limit": self.limit or 3000, "vectors": min(self.vectors, 8),
                                               "emulator_limit": min(self.emulator_limit or 100, 100)}))

    @property
    def eval_limit(self) -> int | None:
        """Test samples verify evaluates: an evenly spaced 300 for ``fast`` (fewer if the set is smaller)."""
        return self.FAST_EVAL_SAMPLES if self.fast else None

    @property
    def data_label(self) -> str:
        """The data's short name for file names: the task, or the stem of the user's file or folder."""
        path = Path(self.task)
        return path.stem if path.is_file() or path.is_dir() else self.task


@dataclass(frozen=True)
class BuildLayout:
    """Every path of one target's build folder (``root``); the teacher may live in a shared parent folder."""

    root: Path

    @property
    def plan_json(self) -> Path:
        return self.root / "plan.json"

    @property
    def plan_png(self) -> Path:
        return self.root / "plan.png"

    @property
    def teacher_dir(self) -> Path:
        return self.root / "teacher"

    def teacher_file(self, task: str) -> Path:
        return self.teacher_dir / f"{Path(task).name}.pt"

    @property
    def student_dir(self) -> Path:
        return self.root / "student"

    @property
    def student_file(self) -> Path:
        return self.student_dir / STUDENT_FILE

    @property
    def distill_json(self) -> Path:
        return self.student_dir / DISTILL_JSON

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def export_json(self) -> Path:
        return self.artifacts / EXPORT_JSON

    @property
    def verify_json(self) -> Path:
        return self.artifacts / VERIFY_JSON

    @property
    def layers_png(self) -> Path:
        return self.artifacts / "layers.png"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def accuracy_png(self) -> Path:
        return self.root / "accuracy_vs_size.png"

    @property
    def stages_json(self) -> Path:
        return self.root / "stages.json"

    #: Files of a build folder that are bookkeeping, never a stage's output.
    BOOKKEEPING = ("stages.json", FolderLock.NAME)

    def bundle(self, target: str, data_label: str) -> Path:
        """``edgekd-<target>-<data>.tar.gz``: a user file ``/some/dir/mnist5k.npz`` gives ``mnist5k``."""
        return self.root / f"edgekd-{target}-{data_label}.tar.gz".replace(":", "-").replace("/", "-")

    def rel(self, path: Path) -> str:
        """``path`` as report.json names it: relative to the build folder."""
        return path.relative_to(self.root).as_posix()


def code_hash() -> str:
    """Hash of edgekd's own sources (Python and the C it compiles): a code change reruns every stage."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".c", ".cpp", ".h") and p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def data_key(task: str, data_dir: str | None) -> str:
    """What identifies the data: a built-in task's name, or the content of the user's file / folder."""
    path = Path(task)
    h = hashlib.sha256(f"{task}|{data_dir}".encode())
    if path.is_file():
        h.update(sha256_file(path).encode())
    elif path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(path).as_posix()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def resolve_emulator(choice: str, target: Target) -> str | None:
    """The emulator a build uses for ``target``: ``auto`` takes QEMU when the profile names a QEMU machine and
    its tools are installed, and says so when they are not; ``qemu`` insists (an error now, not after training,
    when QEMU is missing). A profile no emulator stands in for (ESP32-S3) is built without one, with a warning."""
    if choice == "none":
        return None
    kind = target.emulator.kind
    if not kind.startswith("qemu"):
        if choice == "qemu":
            log.warning("%s: not emulated: %s", target.name, target.emulator.note)
        return None
    if choice == "qemu":
        check_emulator_choice(choice, target)
        return "qemu"
    missing = [t for t in emulator_tools(target) if shutil.which(t) is None]
    if missing:
        log.warning("%s: not emulated (%s not installed; scripts/install_emulators.sh installs it)", target.name,
                    ", ".join(missing))
        return None
    return "qemu"


@dataclass
class BuildContext:
    """One target's build: made once, handed to every stage (the target is never reloaded by name)."""

    target: Target
    opts: BuildOptions  # resolved: what ``fast`` implies is filled in
    layout: BuildLayout
    emulator: str | None
    code: str  # :func:`code_hash` at the start of the build
    profile: str  # hash of the resolved profile (budgets included)
    data: str  # :func:`data_key` of the data

    @classmethod
    def create(cls, target: Target, opts: BuildOptions, out: Path) -> BuildContext:
        opts = opts.resolved()
        target = target.with_budgets(**opts.budgets)
        profile = hashlib.sha256(json.dumps(target.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
        return cls(target, opts, BuildLayout(Path(out)), resolve_emulator(opts.emulator, target), code_hash(),
                   profile, data_key(opts.task, opts.data_dir))

    @property
    def common_key(self) -> dict[str, str]:
        """What every stage after the plan depends on: the profile, the data and edgekd's code."""
        return {"target": self.profile, "data": self.data, "code": self.code}

    @property
    def spec(self) -> TaskSpec:
        """The task's typed description (its ``kind`` picks the image or the text path of the stages)."""
        from edgekd.data import get_spec

        return get_spec(self.opts.task, self.opts.data_dir)
