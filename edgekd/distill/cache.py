"""Teacher outputs computed once and kept on disk.

The key is (teacher sha256, data fingerprint, augmentation policy, augmentation seed); under it, one file of
logits per augmentation draw (the teacher sees exactly the augmented images the student sees). Epoch e uses
draw :func:`edgekd.distill.augment.view`: draw e by default, draw 0 in every epoch when nothing is augmented or
mixed, e mod K with ``views=K``, so a long schedule costs K teacher passes, not one per epoch. Repeated runs,
other seeds and other targets of the same task reuse the files; only feature distillation, whose feature maps
are too large to keep, runs the teacher online.

The files are not trusted: each ``epoch-NNNN.npy`` has a sidecar ``epoch-NNNN.json`` (sha256, shape, dtype)
written after it, and an entry whose bytes, shape or dtype do not match, that cannot be read, or has no sidecar
is recomputed and replaced with a warning naming it (counted as a miss and as ``repaired``). Otherwise a
tampered or half-written file would silently train every later student on wrong targets, or fail every rerun.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.distill import augment
from edgekd.distill import mix as mixing
from edgekd.distill.teachers import Teacher
from edgekd.errors import EdgekdError
from edgekd.io import atomic_write_bytes, cache_dir, sha256_bytes, write_json
from edgekd.logs import log

ENTRY_FORMAT = "edgekd-teacher-logits/1"
_NO_LABELS = np.zeros(0, dtype=np.int64)


def cache_root() -> Path:
    """``$EDGEKD_CACHE/teacher-outputs`` (default ``~/.cache/edgekd``); a file there is one line, not a traceback."""
    return cache_dir()[0] / "teacher-outputs"


def check_cache_root() -> Path:
    """Fail before planning or training when the cache folder cannot be used."""
    root = cache_root()
    _, name = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise EdgekdError(f"{name}: cannot create {root} ({reason}); point EDGEKD_CACHE to a writable folder") from None
    return root


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
    repaired: int = 0  # entries found damaged or tampered with, recomputed (also counted as misses)
    seconds_computing: float = 0.0
    seconds_loading: float = 0.0


class TeacherCache:
    """Per-epoch teacher logits for one (teacher, training set, augmentation) combination."""

    def __init__(self, teacher: Teacher, x_train: np.ndarray, y_train: np.ndarray, policy: augment.Policy,
                 aug_seed: int, batch: int = 512, root: Path | None = None, mix: str = "none") -> None:
        self.teacher, self.x, self.policy, self.aug_seed, self.batch = teacher, x_train, policy, aug_seed, batch
        self.mix = mixing.build_mix(mix)
        # The images only: teacher outputs do not depend on labels, so runs that keep other labels of the same
        # images (--labels N) share the entries. A mix is part of the images the teacher sees (no mix: the key
        # entries of earlier versions).
        what = {"teacher": teacher.sha256, "data": fingerprint(x_train, _NO_LABELS), "policy": asdict(policy),
                "aug_seed": aug_seed}
        if self.mix is not None:
            what["mix"] = self.mix.describe()
        key = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:24]
        self.dir = (root or cache_root()) / key
        self.stats = CacheStats()
        self._epoch = -1
        self._logits: torch.Tensor | None = None
        self._seen: set[int] = set()

    def path(self, epoch: int) -> Path:
        return self.dir / f"epoch-{epoch:04d}.npy"

    def _compute(self, epoch: int) -> np.ndarray:
        draw = augment.draw(self.policy, len(self.x), self.aug_seed, epoch)
        x = torch.from_numpy(np.ascontiguousarray(self.x))
        mix_draw = self.mix.draw(len(x), tuple(x.shape[1:]), self.aug_seed, epoch) if self.mix else None
        outs = []
        for i in range(0, len(x), self.batch):
            idx = torch.arange(i, min(i + self.batch, len(x)))
            xb = augment.apply(x[idx], idx, draw, self.policy)
            if mix_draw is not None:  # the same mixed images the student sees (edgekd.distill.train.fit)
                xb, _ = mixing.apply(self.mix, mix_draw, xb, idx, lambda p: augment.apply(x[p], p, draw, self.policy))
            outs.append(self.teacher.logits(xb).float())
        return torch.cat(outs).numpy()

    def _read(self, path: Path) -> tuple[np.ndarray | None, str | None]:
        """(logits, None) for an intact entry; (None, what is wrong) for a damaged one; (None, None) if absent."""
        if not path.exists():
            return None, None
        meta_path = path.with_suffix(".json")
        try:
            data = path.read_bytes()
        except OSError as exc:
            return None, f"cannot be read ({os.strerror(exc.errno) if exc.errno else type(exc).__name__})"
        try:
            meta: Any = json.loads(meta_path.read_text())
        except FileNotFoundError:
            return None, f"has no {meta_path.name} (its hash and shape)"
        except (OSError, ValueError, RecursionError):
            return None, f"has a damaged {meta_path.name}"
        if not isinstance(meta, dict) or meta.get("format") != ENTRY_FORMAT:
            return None, f"has a damaged {meta_path.name}"
        if sha256_bytes(data) != meta.get("sha256"):
            return None, "does not match its recorded sha256 (changed or truncated)"
        try:
            logits = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            return None, f"is not a readable .npy ({type(exc).__name__})"
        if (not isinstance(logits, np.ndarray) or logits.dtype != np.float32 or logits.ndim != 2
                or len(logits) != len(self.x) or list(logits.shape) != meta.get("shape")):
            return None, (f"holds {getattr(logits, 'dtype', '?')} {getattr(logits, 'shape', '?')}, expected float32 "
                          f"({len(self.x)}, classes) as recorded")
        return logits, None

    def _write(self, path: Path, logits: np.ndarray) -> None:
        """The .npy, then its sidecar: a crash between the two leaves an entry that is recomputed, never trusted."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(logits, dtype=np.float32), allow_pickle=False)
        data = buf.getvalue()
        for entry in (path, path.with_suffix(".json")):
            if entry.is_dir() and not entry.is_symlink():  # a folder where an entry belongs: it cannot be renamed over
                shutil.rmtree(entry)
        try:
            atomic_write_bytes(path, data)
            write_json(path.with_suffix(".json"), {"format": ENTRY_FORMAT, "sha256": sha256_bytes(data),
                                                   "shape": list(logits.shape), "dtype": "float32"})
        except NotADirectoryError:
            _, name = cache_dir()
            raise EdgekdError(f"{name}: cannot create {self.dir} (a file is in the way); point EDGEKD_CACHE to "
                              "a writable folder") from None

    def _get(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s verified logits, computed (and stored) when absent or damaged; counts each epoch once
        as a hit or a miss."""
        path = self.path(epoch)
        first_time = epoch not in self._seen
        self._seen.add(epoch)
        start = time.perf_counter()
        logits, problem = self._read(path)
        if logits is not None:
            self.stats.hits += first_time
            self.stats.seconds_loading += time.perf_counter() - start
            return logits
        if problem is not None:
            log.warning("teacher-output cache: %s %s; recomputing it", path, problem)
            self.stats.repaired += 1
        start = time.perf_counter()
        logits = self._compute(epoch)
        self._write(path, logits)
        self.stats.misses += 1
        self.stats.seconds_computing += time.perf_counter() - start
        return logits

    def ensure(self, epoch: int) -> Path:
        """Make sure epoch ``epoch``'s logits are on disk and intact."""
        self._get(epoch)
        return self.path(epoch)

    def epoch_logits(self, epoch: int) -> torch.Tensor:
        """Logits for every training sample under epoch ``epoch``'s draw (computed on first use, then read)."""
        if epoch == self._epoch and self._logits is not None:
            return self._logits
        self._epoch, self._logits = epoch, torch.from_numpy(self._get(epoch))
        return self._logits

    def __call__(self, x_aug: torch.Tensor, epoch: int, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Rows ``idx`` of draw ``epoch`` (``fit`` passes the draw its epoch uses, not the epoch itself)."""
        return self.epoch_logits(epoch)[idx], None
