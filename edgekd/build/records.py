"""What the build's stages hand to each other: typed records, read from and written to the build folder once.

``plan.json`` comes back as a :class:`PlanRecord` (distill trains its chosen student, it does not plan again),
the teacher stage gives a :class:`TeacherRecord`, ``distill.json`` a :class:`DistillRecord`. Export and verify
have their own records (:class:`edgekd.export.records.ExportRecord`, :class:`edgekd.verify.records.VerifyRecord`);
:func:`read_export` and :func:`read_verify` are the build's readers of them. JSON stays at the file boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.export.records import ExportRecord, load_export
from edgekd.io import read_json
from edgekd.planner import Candidate, Plan
from edgekd.verify.records import VerifyRecord, load_verify

_REBUILD = "delete it and re-run `edgekd build`"


@dataclass
class PlanRecord:
    """plan.json: the candidates the planner listed (best first) and whether any fits."""

    target: str
    task: str
    dtype: str
    budgets: dict[str, float]
    candidates: list[Candidate]
    candidates_total: int

    @property
    def fitting(self) -> list[Candidate]:
        """The listed candidates that fit, best first; the first is the student distill trains."""
        return [c for c in self.candidates if c.fits]

    @property
    def fits(self) -> bool:
        return bool(self.fitting)

    @property
    def student(self) -> Candidate | None:
        return self.fitting[0] if self.fitting else None

    @classmethod
    def from_plan(cls, plan: Plan, listed: int) -> PlanRecord:
        return cls(plan.target, plan.task, plan.dtype, plan.budgets, plan.candidates[:listed],
                   len(plan.candidates))

    @classmethod
    def read(cls, path: Path) -> PlanRecord:
        d = read_json(path, "plan record", fix=_REBUILD)
        try:
            cands = [Candidate(**c) for c in d["candidates"]]
            return cls(d["target"], d["task"], d["dtype"], d["budgets"], cands, int(d["candidates_total"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgekdError(f"{path}: not a plan record this edgekd wrote ({exc}); {_REBUILD}") from None


@dataclass
class TeacherRecord:
    """The teacher every target of a build shares: a file or reference, and what identifies it in stage keys."""

    ref: str
    trained: bool  # trained by this build (a teacher stage ran or was skipped), not given with --teacher

    @property
    def key(self) -> str:
        """The file's sha256 when it is one, else the reference itself (``module:factory``)."""
        from edgekd.io import sha256_file

        return sha256_file(self.ref) if Path(self.ref).is_file() else self.ref


@dataclass
class TeacherSummary:
    """The teacher as distill.json describes it (report.json's ``teacher``)."""

    params: int | None
    accuracy: float | None
    path: str | None

    def to_json(self) -> dict[str, Any]:
        return {"params": self.params, "accuracy": self.accuracy, "path": self.path}


@dataclass
class StudentSummary:
    """The trained student as distill.json describes it."""

    family: str
    config: dict[str, Any]
    params: int
    macs: int
    accuracy_float: float
    accuracy_int8: float | None
    accuracy_no_teacher: float | None
    accuracy_no_teacher_int8: float | None  # the no-teacher baseline is trained and evaluated in float today
    qat: bool

    def to_json(self) -> dict[str, Any]:
        """report.json's ``student`` (its keys since issue 1)."""
        return {"family": self.family, "config": self.config, "params": self.params, "macs": self.macs,
                "accuracy_float": self.accuracy_float, "accuracy_no_teacher": self.accuracy_no_teacher,
                "qat": self.qat}


@dataclass
class DistillRecord:
    """distill.json as the report reads it: the student, the teacher and the candidates tried or listed."""

    student: StudentSummary
    teacher: TeacherSummary
    candidates: list[dict[str, Any]]  # passed through to report.json as written

    @classmethod
    def read(cls, path: Path) -> DistillRecord:
        fix = "re-run `edgekd distill`"
        d = read_json(path, "distill record", fix=fix)
        try:
            s, t, baseline = d["student"], d["teacher"], d.get("no_teacher") or {}
            student = StudentSummary(s["family"], s["config"], s["params"], s["macs"], s["accuracy_float"],
                                     s.get("accuracy_int8"), s["accuracy_no_teacher"],
                                     baseline.get("accuracy_int8"), s["qat"])
            teacher = TeacherSummary(t.get("params") or t.get("param_count"), t.get("test_accuracy"), t.get("path"))
            return cls(student, teacher, list(d["candidates"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise EdgekdError(f"{path}: not a distill record this edgekd wrote (lacks {exc}); {fix}") from None


def read_export(folder: Path) -> ExportRecord:
    """export.json, checked: every artifact it lists is there with its recorded sha256."""
    return load_export(folder)


def read_verify(folder: Path, target: str) -> VerifyRecord:
    return load_verify(folder, target)
