"""Shared fixtures: a per-test planner cost cache (EDGEKD_CACHE), warmed once per session for digits.

Costing one candidate exports its graph (~0.1 s), so planning digits from scratch takes ~6 s. Every test that
plans gets its own cache directory, seeded with a copy of a cache built once per session in a temporary
directory: nothing leaks between tests or into ``~/.cache/edgekd``, and no test pays the cold cost twice.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import edgekd.targets as targets

BUNDLED_TARGETS = Path(targets.__file__).resolve().parent.parent / "targets"


@pytest.fixture(scope="session")
def warm_cost_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cost-cache directory holding the int8 costs of every digits candidate (built with the real planner)."""
    from edgekd.data import get_spec
    from edgekd.planner import plan
    from edgekd.targets import load_target_file

    root = tmp_path_factory.mktemp("edgekd-cost-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEKD_CACHE", str(root))
    try:
        plan(load_target_file(BUNDLED_TARGETS / "nrf52840-dk.yaml"), get_spec("digits"))
    finally:
        mp.undo()
    assert list(root.glob("costs-*.json")), "the planner wrote no cost cache"
    return root


@pytest.fixture
def cost_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warm_cost_cache: Path) -> Path:
    """This test's own EDGEKD_CACHE, starting from a copy of the session's warm cache."""
    cache = tmp_path / "edgekd-cache"
    shutil.copytree(warm_cost_cache, cache)
    monkeypatch.setenv("EDGEKD_CACHE", str(cache))
    return cache


@pytest.fixture
def cold_cost_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own empty EDGEKD_CACHE."""
    cache = tmp_path / "edgekd-cold-cache"
    monkeypatch.setenv("EDGEKD_CACHE", str(cache))
    return cache
