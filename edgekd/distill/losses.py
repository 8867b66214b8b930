"""Distillation losses, registered by name and combined with the hard-label loss.

Every loss takes student logits, teacher logits (None for label-only training) and labels, and returns the
total plus its named parts, so training logs say what each term contributes.

* ``ce``: labels only (the no-teacher baseline).
* ``kd``: Hinton et al. 2015, ``alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE``.
* ``dkd``: Decoupled KD (Zhao et al., CVPR 2022): target-class and non-target-class terms weighted apart.
* ``dist``: DIST (Huang et al., NeurIPS 2022): Pearson-correlation matching of class relations within each
  sample and across the batch; robust when the teacher is much stronger than the student.
* ``feature``: FitNets-style hints added to ``kd``: a learned 1x1 projection maps the student's feature map to
  the teacher's channels, MSE against the (spatially pooled to match) teacher features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import EdgekdError

LOSSES: dict[str, type[DistillLoss]] = {}


def register_loss(name: str) -> Callable[[type[DistillLoss]], type[DistillLoss]]:
    def wrap(cls: type[DistillLoss]) -> type[DistillLoss]:
        cls.name = name
        LOSSES[name] = cls
        return cls

    return wrap


def build_loss(name: str, **kwargs: Any) -> DistillLoss:
    if name not in LOSSES:
        raise EdgekdError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:
        raise EdgekdError(f"loss {name!r}: {exc}") from None


class DistillLoss(nn.Module):
    name = "base"
    needs_teacher = True
    needs_features = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                **features: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def soft(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The term for samples without a label: match the teacher's soft targets (KL at the loss's temperature)."""
        return kl_div_temperature(student, teacher, float(getattr(self, "temperature", 1.0)))

    def mixed(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
              **features: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of a batch whose unlabelled rows have label -1: the full loss on labelled rows, :meth:`soft`
        on the others, each weighted by its share of the batch (so a batch's loss scale does not depend on it)."""
        if labels is None or labels.dim() != 1 or labels.is_floating_point() or bool((labels >= 0).all()):
            return self(student, teacher, labels, **features)  # fully labelled, or targets that are not classes
        known = labels >= 0
        if teacher is None:
            raise EdgekdError(f"loss {self.name!r}: unlabelled samples need a teacher")
        n = len(labels)
        share = float(known.sum()) / n
        parts: dict[str, float] = {}
        total = student.new_zeros(())
        if share > 0:
            feats = {k: v[known] for k, v in features.items() if v is not None}
            loss, labelled = self(student[known], teacher[known], labels[known], **feats)
            total = total + share * loss
            parts = {k: share * v for k, v in labelled.items()}
        soft = self.soft(student[~known], teacher[~known])
        parts["soft_unlabelled"] = (1 - share) * float(soft.detach())
        return total + (1 - share) * soft, parts

    def hparams(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "training"
                and isinstance(v, int | float | str | bool)}


@register_loss("ce")
class LabelLoss(DistillLoss):
    needs_teacher = False

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                **features: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss = self.ce(student, labels)
        return loss, {"ce": float(loss.detach())}


def parse_loss_args(items: tuple[str, ...] | list[str]) -> dict[str, float]:
    """``--loss-arg temperature=4`` (repeatable) as keyword arguments for :func:`build_loss`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise EdgekdError(f"--loss-arg {item!r}: expected NAME=NUMBER, e.g. temperature=4") from None
        if not sep:
            raise EdgekdError(f"--loss-arg {item!r}: expected NAME=NUMBER, e.g. temperature=4")
    return out


def kl_div_temperature(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_teacher || p_student) at temperature T, scaled by T^2 so gradients keep their size (Hinton)."""
    log_p_s = F.log_softmax(student / temperature, dim=1)
    p_t = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature**2


@register_loss("kd")
class HintonKD(DistillLoss):
    def __init__(self, temperature: float = 4.0, alpha: float = 0.5, label_smoothing: float = 0.0) -> None:
        super().__init__(label_smoothing)
        if temperature <= 0 or not 0.0 <= alpha <= 1.0:
            raise EdgekdError(f"kd: need temperature > 0 and 0 <= alpha <= 1, got T={temperature}, alpha={alpha}")
        self.temperature, self.alpha = temperature, alpha

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                **features: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        assert teacher is not None
        kd = kl_div_temperature(student, teacher, self.temperature)
        ce = self.ce(student, labels)
        total = self.alpha * kd + (1 - self.alpha) * ce
        return total, {"kd": float(kd.detach()), "ce": float(ce.detach())}


@register_loss("dkd")
class DecoupledKD(DistillLoss):
    """TCKD (binary target vs rest) + beta * NCKD (distribution among non-target classes)."""

    def __init__(self, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0, ce_weight: float = 1.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__(label_smoothing)
        self.temperature, self.alpha, self.beta, self.ce_weight = temperature, alpha, beta, ce_weight

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                **features: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        assert teacher is not None
        t = self.temperature
        gt = F.one_hot(labels, student.shape[1]).bool()
        p_s = F.softmax(student / t, dim=1)
        p_t = F.softmax(teacher / t, dim=1)
        b_s = torch.stack([(p_s * gt).sum(1), (p_s * ~gt).sum(1)], dim=1).clamp_min(1e-8)
        b_t = torch.stack([(p_t * gt).sum(1), (p_t * ~gt).sum(1)], dim=1).clamp_min(1e-8)
        tckd = F.kl_div(b_s.log(), b_t, reduction="batchmean") * t**2
        mask = gt * 1000.0  # push the target class out of the non-target softmax
        log_q_s = F.log_softmax(student / t - mask, dim=1)
        q_t = F.softmax(teacher / t - mask, dim=1)
        nckd = F.kl_div(log_q_s, q_t, reduction="batchmean") * t**2
        ce = self.ce(student, labels)
        total = self.ce_weight * ce + self.alpha * tckd + self.beta * nckd
        return total, {"ce": float(ce.detach()), "tckd": float(tckd.detach()), "nckd": float(nckd.detach())}


def _pearson_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-8)
    return (1 - corr).mean()


@register_loss("dist")
class DIST(DistillLoss):
    """Match the teacher's class relations (inter) and each class's ranking across the batch (intra)."""

    def __init__(self, temperature: float = 1.0, beta: float = 1.0, gamma: float = 1.0, ce_weight: float = 1.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__(label_smoothing)
        self.temperature, self.beta, self.gamma, self.ce_weight = temperature, beta, gamma, ce_weight

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                **features: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        assert teacher is not None
        t = self.temperature
        p_s = F.softmax(student / t, dim=1)
        p_t = F.softmax(teacher / t, dim=1)
        inter = _pearson_distance(p_s, p_t) * t**2
        intra = _pearson_distance(p_s.t(), p_t.t()) * t**2
        ce = self.ce(student, labels)
        total = self.ce_weight * ce + self.beta * inter + self.gamma * intra
        return total, {"ce": float(ce.detach()), "inter": float(inter.detach()), "intra": float(intra.detach())}


@register_loss("feature")
class FeatureKD(HintonKD):
    """Hinton KD plus a hint loss between a student and a teacher feature map through a learned projection.

    The projection is created lazily on the first batch (channels known then) and trained with the student;
    it is not part of the exported student.
    """

    needs_features = True

    def __init__(self, temperature: float = 4.0, alpha: float = 0.5, hint_weight: float = 1.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__(temperature, alpha, label_smoothing)
        self.hint_weight = hint_weight
        self.projection: nn.Module | None = None

    def init_projection(self, student_channels: int, teacher_channels: int) -> None:
        self.projection = nn.Conv2d(student_channels, teacher_channels, 1, bias=False)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                **features: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = super().forward(student, teacher, labels)
        fs, ft = features.get("student_feature"), features.get("teacher_feature")
        if fs is None or ft is None:
            raise EdgekdError("loss 'feature' needs student and teacher feature maps (hooks not set)")
        if fs.dim() == 2:
            fs = fs[:, :, None, None]
        if ft.dim() == 2:
            ft = ft[:, :, None, None]
        if self.projection is None:
            self.init_projection(fs.shape[1], ft.shape[1])
            self.projection.to(fs.device)
        proj = self.projection(fs)
        if proj.shape[2:] != ft.shape[2:]:
            ft = F.adaptive_avg_pool2d(ft, proj.shape[2:])
        # Normalise per sample so the hint's scale does not depend on the teacher's activation magnitude.
        hint = F.mse_loss(F.layer_norm(proj, proj.shape[1:]), F.layer_norm(ft.detach(), ft.shape[1:]))
        parts["hint"] = float(hint.detach())
        return total + self.hint_weight * hint, parts


from edgekd.distill import embed_losses  # noqa: E402,F401  (embedding losses: cosine, relational; issue 16)
