"""Fixtures shared by the distillation tests (tests/test_distill.py, tests/test_distill_mix.py).

A test module takes them by name: ``isolated_teacher_cache = distill_fixtures.isolated_teacher_cache`` (autouse:
every test of the module gets its own EDGEKD_CACHE, so no teacher output leaks between tests or into
``~/.cache/edgekd``) and ``digits = distill_fixtures.digits``.
"""

from __future__ import annotations

import pytest

from edgekd.data import Splits, load_task


@pytest.fixture(autouse=True)
def isolated_teacher_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def digits() -> Splits:
    """400 stratified digits samples: seconds to train on, enough for a teacher above chance."""
    return load_task("digits", limit=400)
