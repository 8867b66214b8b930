"""Shared fixtures: a per-test planner cost cache (EDGEKD_CACHE), warmed once per session for digits.

Costing one candidate exports its graph (~0.1 s), so planning digits from scratch takes ~6 s. Every test that
plans gets its own cache directory, seeded with a copy of a cache built once per session in a temporary
directory: nothing leaks between tests or into ``~/.cache/edgekd``, and no test pays the cold cost twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgekd.targets as targets

BUNDLED_TARGETS = Path(targets.__file__).resolve().parent.parent / "targets"


@pytest.fixture(scope="session", autouse=True)
def emulator_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One provisioned aarch64 root / built board helpers per session (EDGEKD_EMULATOR_CACHE if set)."""
    import os

    if os.environ.get("EDGEKD_EMULATOR_CACHE"):
        yield Path(os.environ["EDGEKD_EMULATOR_CACHE"])
        return
    path = tmp_path_factory.mktemp("emulators")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEKD_EMULATOR_CACHE", str(path))
    yield path
    mp.undo()


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


# ------------------------------------------------------------------ trained students and their builds

def _private_cache(root: Path) -> pytest.MonkeyPatch:
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEKD_CACHE", str(root / "cache"))
    return mp


def _student(root: Path, target: str, warm: Path) -> Path:
    """A small digits DS-CNN (15 epochs on 400 samples, no teacher, ~90% accurate) planned for ``target``; its
    private cache starts from the session's warm digits costs (the same numbers, not computed again)."""
    from edgekd.distill import distill

    out = root / f"student-{target}"
    shutil.copytree(warm, root / "cache")
    mp = _private_cache(root)
    try:
        distill(target, "digits", None, out, loss="ce", epochs=15, limit=400, families=["dscnn"],
                verify_int8=False, progress=False)
    finally:
        mp.undo()
    return out


def _build(student: Path, root: Path, target: str) -> Path:
    from edgekd.export import export_student

    mp = _private_cache(root)
    try:
        export_student(target, student, root / "build")
    finally:
        mp.undo()
    return root / "build"


@pytest.fixture(scope="session")
def mcu_student(tmp_path_factory: pytest.TempPathFactory, warm_cost_cache: Path) -> Path:
    return _student(tmp_path_factory.mktemp("mcu"), "nrf52840-dk", warm_cost_cache)


@pytest.fixture(scope="session")
def pi_student(tmp_path_factory: pytest.TempPathFactory, warm_cost_cache: Path) -> Path:
    return _student(tmp_path_factory.mktemp("pi"), "raspberry-pi-4b", warm_cost_cache)


@pytest.fixture(scope="session")
def mcu_build(mcu_student: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nrf52840-dk build of the MCU student: int8 .tflite and model_data.c/.h."""
    return _build(mcu_student, tmp_path_factory.mktemp("mcu-build"), "nrf52840-dk")


@pytest.fixture(scope="session")
def mcu_host_verified(mcu_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MCU build verified on the host runtimes only (no QEMU: no generated C in its bundles); read-only:
    tests package it into their own folders or copy it."""
    from edgekd.verify import verify_build

    out = tmp_path_factory.mktemp("mcu-host-verified") / "build"
    shutil.copytree(mcu_build, out)
    mp = _private_cache(out.parent)
    try:
        verify_build("nrf52840-dk", out, limit=40)
    finally:
        mp.undo()
    return out


@pytest.fixture(scope="session")
def pi_build(pi_student: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """raspberry-pi-4b build: .tflite and .pte, int8 and fp32."""
    return _build(pi_student, tmp_path_factory.mktemp("pi-build"), "raspberry-pi-4b")
