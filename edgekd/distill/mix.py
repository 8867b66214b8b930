"""Function matching (Beyer et al. 2022, "Knowledge distillation: A good teacher is patient and consistent"):
the student is shown mixed images (mixup or CutMix) and learns the teacher's output on exactly that mixed image.

A mixed image is not any one class, so it has no label term: it is trained like an unlabelled sample (the
loss's soft-target term against the teacher's logits on the mixed input). Each epoch a share ``prob`` of the
training samples is mixed with a partner drawn from all training samples (labelled and unlabelled); the rest
keep their plain (augmented) image and their full loss.

Like the augmentation draw, an epoch's mix draw (who is mixed, partner, mixing weight, CutMix box) is a pure
function of ``(aug_seed, epoch)`` and indexed by sample id, not by batch position. So the teacher's outputs on
the mixed images are computed once per draw and cached (``edgekd.distill.cache`` applies the same mix), other
seeds and targets reuse them, and a resumed run replays the same mixes. Adding a method is one class registered
with :func:`register_mix`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from edgekd.errors import EdgekdError

MIXES: dict[str, type[Mix]] = {}
#: Chosen by measurement (docs/distillation.md, "Function matching"); "none" keeps training as before.
DEFAULT_MIX = "none"


def register_mix(name: str) -> Callable[[type[Mix]], type[Mix]]:
    def wrap(cls: type[Mix]) -> type[Mix]:
        cls.name = name
        MIXES[name] = cls
        return cls

    return wrap


@dataclass
class MixDraw:
    """One epoch's mixing parameters for every training sample (indexed by sample id)."""

    mixed: torch.Tensor  # (N,) bool: this sample is shown mixed this epoch
    partner: torch.Tensor  # (N,) long: the sample it is mixed with
    lam: torch.Tensor  # (N,) float: weight of the sample itself (mixup), or its kept area (CutMix, exact)
    boxes: torch.Tensor  # (N, 4) long: CutMix's pasted region (r0, r1, c0, c1); rows only (r0, r1) for series


class Mix:
    """Base: who is mixed, with whom and how much, drawn per epoch; :meth:`combine` makes the mixed batch."""

    name: ClassVar[str] = "base"

    def __init__(self, prob: float = 0.5, alpha: float = 1.0) -> None:
        if not 0.0 <= prob <= 1.0 or alpha <= 0:
            raise EdgekdError(f"--mix {self.name}: need 0 <= prob <= 1 and alpha > 0, got prob={prob}, alpha={alpha}")
        self.prob, self.alpha = prob, alpha

    def draw(self, n: int, sample_shape: tuple[int, ...], aug_seed: int, epoch: int) -> MixDraw:
        rng = np.random.default_rng([7_919, aug_seed, epoch])  # its own stream: the augmentation draw is unchanged
        mixed = rng.random(n) < self.prob
        partner = rng.integers(0, n, n)
        lam = rng.beta(self.alpha, self.alpha, n)
        boxes, lam = self.regions(lam, sample_shape, rng)
        return MixDraw(torch.from_numpy(mixed), torch.from_numpy(partner).long(), torch.from_numpy(lam).float(),
                       torch.from_numpy(boxes).long())

    def regions(self, lam: np.ndarray, sample_shape: tuple[int, ...],
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(boxes, lam): the regions a method pastes, and the weights that result (mixup pastes none)."""
        return np.zeros((len(lam), 4), np.int64), lam

    def combine(self, x: torch.Tensor, xp: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict[str, float | str]:
        return {"name": self.name, "prob": self.prob, "alpha": self.alpha}


@register_mix("mixup")
class Mixup(Mix):
    """``lam * x + (1 - lam) * x_partner``, lam ~ Beta(alpha, alpha) (Zhang et al. 2018)."""

    def combine(self, x: torch.Tensor, xp: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        w = lam.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return w * x + (1 - w) * xp


@register_mix("cutmix")
class CutMix(Mix):
    """A box of the partner pasted into the sample (Yun et al. 2019): area ``1 - lam`` of the image (a segment of
    the series), centred uniformly and clipped at the border; ``lam`` is then the exact share kept."""

    def regions(self, lam: np.ndarray, sample_shape: tuple[int, ...],
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = len(lam)
        if len(sample_shape) == 3:  # (C, H, W)
            h, w = sample_shape[1:]
            cut = np.sqrt(1 - lam)
            bh, bw = np.round(h * cut).astype(np.int64), np.round(w * cut).astype(np.int64)
            cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
            r0, r1 = np.clip(cy - bh // 2, 0, h), np.clip(cy - bh // 2 + bh, 0, h)
            c0, c1 = np.clip(cx - bw // 2, 0, w), np.clip(cx - bw // 2 + bw, 0, w)
            return np.stack([r0, r1, c0, c1], 1), 1 - (r1 - r0) * (c1 - c0) / (h * w)
        length = sample_shape[-1]  # (C, L)
        bl = np.round(length * (1 - lam)).astype(np.int64)
        c = rng.integers(0, length, n)
        r0, r1 = np.clip(c - bl // 2, 0, length), np.clip(c - bl // 2 + bl, 0, length)
        return np.stack([r0, r1, np.zeros(n, np.int64), np.zeros(n, np.int64)], 1), 1 - (r1 - r0) / length

    def combine(self, x: torch.Tensor, xp: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        along = torch.arange(x.shape[-2 if x.dim() == 4 else -1])
        inside = (along[None] >= boxes[:, 0:1]) & (along[None] < boxes[:, 1:2])  # (B, H) or (B, L)
        if x.dim() == 4:
            cols = torch.arange(x.shape[-1])
            across = (cols[None] >= boxes[:, 2:3]) & (cols[None] < boxes[:, 3:4])  # (B, W)
            mask = (inside[:, :, None] & across[:, None, :])[:, None]  # (B, 1, H, W)
        else:
            mask = inside[:, None, :]  # (B, 1, L)
        return torch.where(mask, xp, x)


def build_mix(name: str | None) -> Mix | None:
    """The registered method ``name`` with its defaults; None for "none" (no mixing)."""
    if name is None or name == "none":
        return None
    if name not in MIXES:
        raise EdgekdError(f"--mix {name!r}: unknown; known: none, {', '.join(sorted(MIXES))}")
    return MIXES[name]()


def apply(mix: Mix, d: MixDraw, x_aug: torch.Tensor, idx: torch.Tensor,
          partner_aug: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, mixed rows) for the augmented batch ``x_aug`` of samples ``idx``: the rows drawn for mixing get
    their partner's augmented image (``partner_aug(partner ids)``) mixed in; the others are returned as they are."""
    rows = d.mixed[idx]
    if not bool(rows.any()):
        return x_aug, rows
    out = x_aug.clone()
    sel = idx[rows]
    out[rows] = mix.combine(x_aug[rows], partner_aug(d.partner[sel]), d.lam[sel], d.boxes[sel])
    return out, rows
