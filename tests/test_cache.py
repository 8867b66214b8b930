"""The teacher-output cache does not trust its files: tampered, truncated, wrong-shaped, pickled or
sidecar-less entries are recomputed (with a warning naming the file), never used."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.data import load_task
from edgekd.distill import augment, distill
from edgekd.distill.cache import TeacherCache, cache_root
from edgekd.distill.teachers import Teacher
from edgekd.errors import EdgekdError
from edgekd.io import sha256_bytes


@pytest.fixture(scope="module")
def digits():
    return load_task("digits", limit=200)


@pytest.fixture()
def teacher() -> Teacher:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    return Teacher(module, "0" * 64, "factory", "test:linear")


def _cache(teacher: Teacher, digits, root: Path) -> TeacherCache:
    return TeacherCache(teacher, digits.x_train, digits.y_train, augment.Policy.for_task("digits", "image"),
                        aug_seed=0, root=root)


@pytest.fixture()
def filled(tmp_path: Path, teacher: Teacher, digits) -> tuple[Path, torch.Tensor]:
    """A cache root holding epoch 1's entry, and the logits it holds."""
    cache = _cache(teacher, digits, tmp_path)
    logits = cache.epoch_logits(1).clone()
    assert cache.stats.misses == 1 and cache.stats.repaired == 0
    return cache.path(1), logits


def _reread(teacher: Teacher, digits, path: Path, caplog: pytest.LogCaptureFixture) -> TeacherCache:
    """A fresh cache over the same folder reading epoch 1, asserting it was recomputed with a warning."""
    cache = _cache(teacher, digits, path.parent.parent)
    with caplog.at_level(logging.WARNING, logger="edgekd"):
        cache.epoch_logits(1)
    assert cache.stats.misses == 1 and cache.stats.hits == 0 and cache.stats.repaired == 1
    assert any(str(path) in r.getMessage() and "recomputing" in r.getMessage() for r in caplog.records)
    return cache


def test_intact_entry_is_a_hit(filled: tuple[Path, torch.Tensor], teacher: Teacher, digits) -> None:
    path, logits = filled
    cache = _cache(teacher, digits, path.parent.parent)
    assert torch.equal(cache.epoch_logits(1), logits)
    assert cache.stats.hits == 1 and cache.stats.misses == 0 and cache.stats.repaired == 0


def test_same_shape_random_logits_are_detected_and_recomputed(filled: tuple[Path, torch.Tensor],
                                                              teacher: Teacher, digits,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    path, logits = filled
    np.save(path, np.random.default_rng(0).normal(size=tuple(logits.shape)).astype(np.float32))
    cache = _reread(teacher, digits, path, caplog)
    assert torch.equal(cache.epoch_logits(1), logits)
    assert torch.equal(torch.from_numpy(np.load(path)), logits)  # the file itself was replaced
    again = _cache(teacher, digits, path.parent.parent)
    again.epoch_logits(1)
    assert again.stats.hits == 1 and again.stats.repaired == 0


def test_truncated_entry_is_recomputed(filled: tuple[Path, torch.Tensor], teacher: Teacher, digits,
                                       caplog: pytest.LogCaptureFixture) -> None:
    path, logits = filled
    path.write_bytes(path.read_bytes()[:200])
    assert torch.equal(_reread(teacher, digits, path, caplog).epoch_logits(1), logits)


def test_wrong_shape_entry_with_a_matching_sidecar_is_recomputed(filled: tuple[Path, torch.Tensor],
                                                                  teacher: Teacher, digits,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    path, logits = filled
    np.save(path, np.zeros((len(logits) - 1, 10), np.float32))  # one row short, sidecar rewritten to match
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps(meta | {"sha256": sha256_bytes(path.read_bytes()),
                                                            "shape": [len(logits) - 1, 10]}))
    assert torch.equal(_reread(teacher, digits, path, caplog).epoch_logits(1), logits)


def test_missing_sidecar_is_recomputed(filled: tuple[Path, torch.Tensor], teacher: Teacher, digits,
                                       caplog: pytest.LogCaptureFixture) -> None:
    path, logits = filled
    path.with_suffix(".json").unlink()
    assert torch.equal(_reread(teacher, digits, path, caplog).epoch_logits(1), logits)
    assert path.with_suffix(".json").is_file()


def test_pickled_entry_is_never_unpickled(filled: tuple[Path, torch.Tensor], teacher: Teacher, digits,
                                          caplog: pytest.LogCaptureFixture) -> None:
    path, logits = filled
    marker = path.parent / "MARKER"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    np.save(path, np.array([Evil()], dtype=object), allow_pickle=True)
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps(meta | {"sha256": sha256_bytes(path.read_bytes())}))
    assert torch.equal(_reread(teacher, digits, path, caplog).epoch_logits(1), logits)
    assert not marker.exists()


def test_a_folder_in_place_of_an_entry_is_replaced(filled: tuple[Path, torch.Tensor], teacher: Teacher, digits,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path, logits = filled
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")
    assert torch.equal(_reread(teacher, digits, path, caplog).epoch_logits(1), logits)
    assert path.is_file()


def test_edgekd_cache_pointing_at_a_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "cache-file"
    file.write_text("x")
    monkeypatch.setenv("EDGEKD_CACHE", str(file))
    with pytest.raises(EdgekdError, match=rf"^EDGEKD_CACHE={file}: is a file; point it to a folder$"):
        cache_root()
    with pytest.raises(EdgekdError, match="is a file; point it to a folder"):
        distill("nrf52840-dk", "digits", None, tmp_path / "run", loss="ce", epochs=1, limit=200, progress=False)
    monkeypatch.setenv("EDGEKD_CACHE", str(file / "sub"))
    with pytest.raises(EdgekdError, match="cannot create"):
        distill("nrf52840-dk", "digits", None, tmp_path / "run", loss="ce", epochs=1, limit=200, progress=False)
