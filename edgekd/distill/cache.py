"""Teacher outputs computed once and kept on disk.

The key is (teacher sha256, data fingerprint, augmentation policy, augmentation seed); under it, one file of
logits per epoch's augmentation draw (the teacher sees exactly the augmented images the student sees), plus
one for the clean validation/test inputs. Repeated runs, other seeds and other targets of the same task reuse
the files; only feature distillation, whose feature maps are too large to keep, runs the teacher online.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edgekd.distill import augment
from edgekd.distill.teachers import Teacher


def cache_root() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd")) / "teacher-outputs"


def fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str((x.shape, x.dtype.str)).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    seconds_computing: float = 0.0
    seconds_loading: float = 0.0


class TeacherCache:
    """Per-epoch teacher logits for one (teacher, training set, augmentation) combination."""

    def __init__(self, teacher: Teacher, x_train: np.ndarray, y_train: np.ndarray, policy: augment.Policy,
                 aug_seed: int, batch: int = 512, root: Path | None = None) -> None:
        self.teacher, self.x, self.policy, self.aug_seed, self.batch = teacher, x_train, policy, aug_seed, batch
        key = hashlib.sha256(json.dumps({"teacher": teacher.sha256, "data": fingerprint(x_train, y_train),
                                         "policy": asdict(policy), "aug_seed": aug_seed}).encode()).hexdigest()[:24]
        self.dir = (root or cache_root()) / key
        self.stats = CacheStats()
        self._epoch = -1
        self._logits: torch.Tensor | None = None
        self._seen: set[int] = set()

    def _compute(self, epoch: int) -> np.ndarray:
        draw = augment.draw(self.policy, len(self.x), self.aug_seed, epoch)
        x = torch.from_numpy(np.ascontiguousarray(self.x))
        outs = []
        for i in range(0, len(x), self.batch):
            idx = torch.arange(i, min(i + self.batch, len(x)))
            outs.append(self.teacher.logits(augment.apply(x[idx], idx, draw, self.policy)).float())
        return torch.cat(outs).numpy()

    def ensure(self, epoch: int) -> Path:
        """Make sure epoch ``epoch``'s logits are on disk; counts each epoch once as a hit or a miss."""
        path = self.dir / f"epoch-{epoch:04d}.npy"
        first_time = epoch not in self._seen
        self._seen.add(epoch)
        if path.is_file():
            self.stats.hits += first_time
            return path
        start = time.perf_counter()
        logits = self._compute(epoch)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, logits)
        os.replace(tmp, path)
        self.stats.misses += 1
        self.stats.seconds_computing += time.perf_counter() - start
        return path

    def epoch_logits(self, epoch: int) -> torch.Tensor:
        """Logits for every training sample under epoch ``epoch``'s draw (computed on first use, then read)."""
        if epoch == self._epoch and self._logits is not None:
            return self._logits
        path = self.ensure(epoch)
        start = time.perf_counter()
        self._epoch, self._logits = epoch, torch.from_numpy(np.load(path))
        self.stats.seconds_loading += time.perf_counter() - start
        return self._logits

    def __call__(self, x_aug: torch.Tensor, epoch: int, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.epoch_logits(epoch)[idx], None
