"""Distillation losses for sentence embeddings (the student regresses the teacher's vector; no labels, no classes).

Registered like the logit losses (``build_loss("cosine")``); ``output = "embedding"`` tells them apart, and the
``labels`` argument is ignored. Both sides are compared after L2 normalisation, because the teacher's
embeddings are unit vectors and only directions matter to cosine search.

* ``cosine``: ``1 - cos(s, t)`` averaged over the batch, plus ``mse_weight`` x MSE of the unit vectors.
* ``relational``: ``cosine`` plus ``relation_weight`` x MSE between the batch's pairwise cosine-similarity
  matrices (student vs teacher): it teaches which sentences are near each other, which is what nearest-neighbour
  search needs, beyond each sentence's own direction (relational KD, Park et al. CVPR 2019, angle-free form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distill.losses import DistillLoss, register_loss
from edgekd.errors import EdgekdError


@register_loss("cosine")
class CosineEmbeddingLoss(DistillLoss):
    output = "embedding"

    def __init__(self, mse_weight: float = 0.0) -> None:
        super().__init__()
        if mse_weight < 0:
            raise EdgekdError(f"cosine: mse_weight must be >= 0, got {mse_weight}")
        self.mse_weight = mse_weight

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor | None = None,
                **features: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if teacher is None or student.shape != teacher.shape:
            raise EdgekdError(f"loss {self.name!r} needs teacher embeddings of the student's shape "
                              f"{tuple(student.shape)}, got {None if teacher is None else tuple(teacher.shape)}")
        s, t = F.normalize(student, dim=1), F.normalize(teacher, dim=1)
        cos = 1 - (s * t).sum(1).mean()
        parts = {"cosine": float(cos.detach())}
        total = cos
        if self.mse_weight:
            mse = F.mse_loss(s, t, reduction="sum") / len(s)
            parts["mse"] = float(mse.detach())
            total = total + self.mse_weight * mse
        return total, parts


@register_loss("relational")
class RelationalEmbeddingLoss(CosineEmbeddingLoss):
    def __init__(self, relation_weight: float = 1.0, mse_weight: float = 0.0) -> None:
        super().__init__(mse_weight)
        if relation_weight < 0:
            raise EdgekdError(f"relational: relation_weight must be >= 0, got {relation_weight}")
        self.relation_weight = relation_weight

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor | None = None,
                **features: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = super().forward(student, teacher, labels)
        assert teacher is not None
        s, t = F.normalize(student, dim=1), F.normalize(teacher, dim=1)
        relation = F.mse_loss(s @ s.T, t @ t.T)
        parts["relation"] = float(relation.detach())
        return total + self.relation_weight * relation, parts
