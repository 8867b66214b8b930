"""What edgekd knows about training on a task, registered with the task (``register_task(augment=, teacher=)``).

Two things differ per task: which augmentations keep the label (digits are not mirror-symmetric, clothes are)
and the recipe of the built-in teacher. A task without its own entry (user data, a new task) gets the default
for its kind. Both are plain frozen values, so the data layer stays free of torch; ``edgekd.distill.augment``
applies an :class:`Augmentation` and ``edgekd.distill.teachers`` builds a :class:`TeacherRecipe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Augmentation:
    """A task's label-preserving augmentation (``edgekd.distill.augment.Policy`` is this class)."""

    shift: int = 0  # max pixels (images) or steps (series) of translation
    flip: bool = False  # horizontal flip
    scale: float = 0.0  # series: amplitude scaling by 1 +- scale

    @staticmethod
    def for_task(name: str, kind: str, enabled: bool = True) -> Augmentation:
        """The registered task's augmentation, else the default for ``kind``; none when not ``enabled``."""
        if not enabled:
            return Augmentation()
        from edgekd.data.registry import TASKS

        task = TASKS.get(name)
        if task is not None and task.augment is not None:
            return task.augment
        return DEFAULT_IMAGE if kind == "image" else DEFAULT_SERIES

    @property
    def active(self) -> bool:
        return bool(self.shift or self.flip or self.scale)


DEFAULT_IMAGE = Augmentation(shift=2)
DEFAULT_SERIES = Augmentation(shift=5, scale=0.1)


@dataclass(frozen=True)
class TeacherRecipe:
    """How ``edgekd teacher`` trains the built-in teacher of a task (``augment``: with the task's augmentation)."""

    arch: str = "resnet-teacher"
    params: dict[str, Any] = field(default_factory=lambda: {"width": 32, "blocks": 1, "stages": 3})
    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 128
    augment: bool = True
    #: 0: label smoothing flattens the teacher's soft targets (at T=4 nearly uniform), which is what the student
    #: learns from; the teachers of edgekd <= 0.3 used 0.1.
    label_smoothing: float = 0.0

    @staticmethod
    def for_task(name: str) -> TeacherRecipe:
        """The registered task's recipe, else the generic one."""
        from edgekd.data.registry import TASKS

        task = TASKS.get(name)
        return task.teacher if task is not None and task.teacher is not None else GENERIC_TEACHER


GENERIC_TEACHER = TeacherRecipe()
