"""The emulator registry: an emulator is one function registered by the profile's ``emulator.kind``."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgekd.emulate import EMULATORS, EmulatedRun, EmulationRequest, emulate, register_emulator
from edgekd.errors import EdgekdError
from edgekd.targets import available, parse_target


def _profile(kind: str) -> dict:
    data = yaml.safe_load(available()["nrf52840-dk"].read_text())
    data = copy.deepcopy(data)
    data["emulator"] = {"kind": kind, "note": "a simulator registered by a plugin"}
    return data


def test_a_registered_emulator_is_chosen_by_the_profile_and_run(tmp_path: Path) -> None:
    with pytest.raises(EdgekdError, match="emulator.kind: 'dummy-sim' is not one of"):
        parse_target(_profile("dummy-sim"))
    seen: list[EmulationRequest] = []

    @register_emulator("dummy-sim")
    def dummy(req: EmulationRequest) -> list[EmulatedRun]:
        seen.append(req)
        return [EmulatedRun(emulator="dummy-sim/board", format="c", precision="int8", runtime="edgekd-c",
                            kernels="edgekd-c", path="c/model.elf", samples=len(req.y), ok=True, accuracy=1.0,
                            instructions=1000, cpi=1.0, counted_ms=1000 / (req.target.cpu.clock_mhz * 1e3))]

    try:
        target = parse_target(_profile("dummy-sim"))  # the schema accepts a registered kind
        x, y = np.zeros((3, 1, 8, 8), np.float32), np.arange(3)
        (run,) = emulate(EmulationRequest(tmp_path, target, x, y))
        assert run.ok and run.samples == 3 and run.emulator == "dummy-sim/board"
        assert run.counted_ms == pytest.approx(1000 / 64e3)
        assert seen[0].build_dir == tmp_path.resolve() and seen[0].target is target
    finally:
        EMULATORS.pop("dummy-sim")


def test_a_profile_without_emulator_is_refused_in_one_line(tmp_path: Path) -> None:
    target = parse_target(_profile("none"))
    with pytest.raises(EdgekdError, match="has no emulator: a simulator registered by a plugin"):
        emulate(EmulationRequest(tmp_path, target, np.zeros((1, 1)), np.zeros(1)))
