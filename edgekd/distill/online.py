"""The teacher run online, batch by batch, for feature distillation (logits alone come from the cache)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from edgekd.distill.teachers import Teacher


class OnlineTeacher:
    """Teacher run on each augmented batch, capturing the feature map of ``teacher.feature_layer``.

    Use it as a context manager (or call ``close``): the hook is removed on exit, since the teacher is shared by
    every run of a ``--search`` (and QAT), and hooks left behind would pile up on it, each running on every
    forward.
    """

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher
        self.captured: dict[str, torch.Tensor] = {}
        self._handle = None
        if teacher.feature_layer:
            self._handle = dict(teacher.module.named_modules())[teacher.feature_layer].register_forward_hook(
                lambda m, i, o: self.captured.__setitem__("feature", o))

    def __call__(self, x_aug: torch.Tensor, epoch: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.teacher.logits(x_aug)
        return logits, self.captured.get("feature")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> OnlineTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def feature_channels(module: nn.Module, layer: str, shape: tuple[int, ...]) -> int:
    """Channels of ``layer``'s output for one input of ``shape``: what a feature loss projects between."""
    out: dict[str, torch.Tensor] = {}
    handle = dict(module.named_modules())[layer].register_forward_hook(lambda m, i, o: out.__setitem__("f", o))
    was = module.training
    module.eval()
    weight = next(module.parameters(), None)  # a teacher may sit on the training device already (Teacher.place)
    try:
        with torch.no_grad():
            module(torch.zeros(1, *shape, device=weight.device if weight is not None else None))
    finally:
        module.train(was)
        handle.remove()
    return int(out["f"].shape[1])
