"""Deterministic stratified sampling and per-channel normalisation, with no sklearn dependency.

Own code rather than sklearn's splitters so that tiny user sets (a class with one sample) still split
without errors and the result depends only on (labels, size, seed).
"""

from __future__ import annotations

import numpy as np

# Separate random streams per purpose, so changing e.g. calib_size never reshuffles the validation set.
STREAM_TEST, STREAM_VAL, STREAM_LIMIT, STREAM_CALIB = 1, 2, 3, 4
#: Seed of the streams that touch the test set: the test set must not move when --seed changes.
FIXED_TEST_SEED = 0


def rng_for(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def allocate(counts: np.ndarray, k: int, caps: np.ndarray | None = None, min_each: int = 1) -> np.ndarray:
    """Per-class sizes summing to ``min(k, caps.sum())``, proportional to ``counts`` (largest remainder).

    Every class with capacity gets at least ``min_each`` when the total allows it, so small samples
    (calibration, --limit) still cover all classes.
    """
    counts = np.asarray(counts, dtype=np.int64)
    caps = counts.copy() if caps is None else np.minimum(np.asarray(caps, dtype=np.int64), counts)
    caps = np.maximum(caps, 0)
    k = int(min(k, caps.sum()))
    mins = np.minimum(caps, min_each)
    if mins.sum() > k:
        mins = np.zeros_like(mins)
    desired = k * counts / max(int(counts.sum()), 1)
    alloc = np.clip(np.floor(desired).astype(np.int64), mins, caps)
    while alloc.sum() < k:
        gap = np.where(alloc < caps, desired - alloc, -np.inf)
        alloc[int(np.argmax(gap))] += 1
    while alloc.sum() > k:
        gap = np.where(alloc > mins, desired - alloc, np.inf)
        alloc[int(np.argmin(gap))] -= 1
    return alloc


def stratified_pick(
    labels: np.ndarray,
    k: int,
    rng: np.random.Generator,
    num_classes: int,
    keep_one: bool = False,
) -> np.ndarray:
    """Sorted positions of a stratified random sample of size ``k`` from ``labels``.

    ``keep_one`` never takes a class's last sample, so the remainder (the training side of a split)
    still contains every class.
    """
    counts = np.bincount(labels, minlength=num_classes)
    caps = counts - 1 if keep_one else counts
    alloc = allocate(counts, k, caps)
    picked = []
    for c in range(num_classes):
        if alloc[c]:
            members = np.flatnonzero(labels == c)
            picked.append(members[rng.permutation(len(members))[: alloc[c]]])
    if not picked:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(picked)).astype(np.int64)


def split_off(
    labels: np.ndarray, fraction: float, rng: np.random.Generator, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, split_off) positions: a stratified ``fraction`` split off, at least one per class that can
    spare one, never a class's last sample."""
    spare = int((np.bincount(labels, minlength=num_classes) >= 2).sum())
    k = max(int(round(fraction * len(labels))), spare)
    off = stratified_pick(labels, k, rng, num_classes, keep_one=True)
    mask = np.ones(len(labels), dtype=bool)
    mask[off] = False
    return np.flatnonzero(mask), off


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over all axes but the channel axis (axis 1), in float64.

    Two chunked passes keep memory small for 60k-image sets and stay exact for data with a large
    offset. A constant channel gets std 1.0 instead of 0 so normalising never divides by zero.
    """
    if x.dtype == np.uint8:
        return _uint8_stats(x)
    axes = (0,) + tuple(range(2, x.ndim))
    n = len(x)
    per_channel = n * int(np.prod(x.shape[2:], dtype=np.int64))
    total = np.zeros(x.shape[1])
    for i in range(0, n, chunk):
        total += x[i : i + chunk].sum(axis=axes, dtype=np.float64)
    mean = total / per_channel
    shape = (1, -1) + (1,) * (x.ndim - 2)
    sq = np.zeros(x.shape[1])
    for i in range(0, n, chunk):
        d = x[i : i + chunk].astype(np.float64) - mean.reshape(shape)
        sq += np.square(d).sum(axis=axes)
    std = np.sqrt(sq / per_channel)
    std = np.where(std < 1e-8, 1.0, std)
    return mean, std


def _uint8_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean/std from a 256-bin histogram per channel: several times faster than float passes."""
    values = np.arange(256, dtype=np.float64)
    mean, std = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        flat = x[:, c].reshape(-1)
        hist = np.zeros(256)
        for i in range(0, len(flat), 1 << 20):  # chunks: bincount makes an intp copy of its input
            hist += np.bincount(flat[i : i + (1 << 20)], minlength=256)
        p = hist / hist.sum()
        mean[c] = p @ values
        std[c] = np.sqrt(p @ (values - mean[c]) ** 2)
    return mean, np.where(std < 1e-8, 1.0, std)


def normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std per channel, as contiguous float32; uint8 goes through a 256-entry lookup table."""
    if x.dtype == np.uint8:
        out = np.empty(x.shape, dtype=np.float32)
        for c in range(x.shape[1]):
            lut = ((np.arange(256) - mean[c]) / std[c]).astype(np.float32)
            out[:, c] = lut[x[:, c]]
        return out
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = x.astype(np.float32, copy=True)
    out -= mean.astype(np.float32).reshape(shape)
    out /= std.astype(np.float32).reshape(shape)
    return np.ascontiguousarray(out)
