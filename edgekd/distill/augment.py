"""Deterministic, vectorised augmentation: each epoch's draw is a pure function of (aug_seed, epoch).

Because a draw depends only on the augmentation seed and the epoch, the teacher's outputs on exactly the
images the student sees can be computed once and cached per draw (``edgekd.distill.cache``), and a resumed
run replays the same draws. Which augmentations a task takes is registered with the task
(:class:`edgekd.data.knowledge.Augmentation`).

A run with a teacher need not draw anew each epoch: :func:`view` maps an epoch to the draw it uses, so a run
without augmentation (and without a mix) uses draw 0 throughout, and ``views=K`` cycles K fixed draws. The
teacher's outputs are then computed K times (once), not once per epoch: a pass of a 54k-sample teacher costs
minutes on a CPU, training the student for an epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgekd.data.knowledge import Augmentation
from edgekd.errors import EdgekdError

#: A task's augmentation: registered with the task (``edgekd.data.register_task(augment=...)``), default per kind.
Policy = Augmentation
__all__ = ["Draw", "Policy", "apply", "check_views", "draw", "view", "views_used"]


@dataclass
class Draw:
    """One epoch's augmentation parameters for every training sample (indexed by sample id)."""

    shifts: torch.Tensor  # (N, 2) ints in [-shift, shift]
    flips: torch.Tensor  # (N,) bool
    scales: torch.Tensor  # (N,) float


def draw(policy: Policy, n: int, aug_seed: int, epoch: int) -> Draw:
    g = torch.Generator().manual_seed(1_000_003 * aug_seed + epoch)
    shifts = torch.randint(-policy.shift, policy.shift + 1, (n, 2), generator=g) if policy.shift else \
        torch.zeros(n, 2, dtype=torch.long)
    flips = torch.rand(n, generator=g) < 0.5 if policy.flip else torch.zeros(n, dtype=torch.bool)
    scales = 1 + (torch.rand(n, generator=g) * 2 - 1) * policy.scale if policy.scale else torch.ones(n)
    return Draw(shifts, flips, scales)


def check_views(views: int) -> None:
    """A negative ``views`` is one line (for ``distill`` and, before any stage runs, ``build``)."""
    if views < 0:
        raise EdgekdError(f"--views {views}: give 0 (a fresh augmentation draw each epoch) or a positive count")


def view(epoch: int, views: int, policy: Policy, mixed: bool = False) -> int:
    """The draw epoch ``epoch`` uses: 0 when nothing varies between draws (no augmentation, no mix), epoch mod
    ``views`` for a fixed set of ``views`` draws, else the epoch itself (a fresh draw each epoch, ``views=0``)."""
    if not policy.active and not mixed:
        return 0
    return epoch % views if views > 0 else epoch


def views_used(epochs: int, views: int, policy: Policy, mixed: bool = False) -> list[int]:
    """The distinct draws a run of ``epochs`` epochs uses, in order: the teacher outputs it needs cached."""
    return sorted({view(e, views, policy, mixed) for e in range(epochs)})


def apply(x: torch.Tensor, idx: torch.Tensor, d: Draw, policy: Policy) -> torch.Tensor:
    """Augment a batch ``x`` (B, C, H, W) or (B, C, L) whose rows are samples ``idx`` of the epoch's draw."""
    if not policy.active:
        return x
    s = policy.shift
    if x.dim() == 4:
        if s:
            padded = F.pad(x, (s, s, s, s), mode="replicate")
            h, w = x.shape[2:]
            rows = (torch.arange(h)[None, :] + s + d.shifts[idx, 0:1])  # (B, H)
            cols = (torch.arange(w)[None, :] + s + d.shifts[idx, 1:2])  # (B, W)
            b = torch.arange(len(x))[:, None, None]
            x = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        flips = d.flips[idx]
        if flips.any():
            x = torch.where(flips[:, None, None, None], x.flip(3), x)
        return x.contiguous()
    if s:
        padded = F.pad(x, (s, s), mode="replicate")
        steps = torch.arange(x.shape[2])[None, :] + s + d.shifts[idx, 0:1]
        x = torch.gather(padded, 2, steps[:, None, :].expand(-1, x.shape[1], -1))
    return (x * d.scales[idx][:, None, None]).contiguous()
