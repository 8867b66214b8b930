"""The emulator registry: an emulator is one function registered by the profile's ``emulator.kind``."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from emulated_runs import AARCH64_RUN, CORTEX_M_RUN

from edgekd.emulate import (
    DETAILS,
    EMULATORS,
    EmulatedRun,
    EmulationRequest,
    EmulatorDetails,
    emulate,
    register_emulator,
)
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

    @dataclass
    class DummyDetails(EmulatorDetails):
        cycles: int
        source: str = "one cycle per instruction"

        def cpi_note(self) -> str | None:
            return self.source

    @register_emulator("dummy-sim", details=DummyDetails)
    def dummy(req: EmulationRequest) -> list[EmulatedRun]:
        seen.append(req)
        return [EmulatedRun(emulator="dummy-sim/board", format="c", precision="int8", runtime="edgekd-c",
                            kernels="edgekd-c", path="c/model.elf", samples=len(req.y), ok=True, accuracy=1.0,
                            instructions=1000, cpi=1.0, counted_ms=1000 / (req.target.cpu.clock_mhz * 1e3),
                            details=DummyDetails(cycles=1000))]

    try:
        target = parse_target(_profile("dummy-sim"))  # the schema accepts a registered kind
        x, y = np.zeros((3, 1, 8, 8), np.float32), np.arange(3)
        (run,) = emulate(EmulationRequest(tmp_path, target, x, y))
        assert run.ok and run.samples == 3 and run.emulator == "dummy-sim/board"
        assert run.counted_ms == pytest.approx(1000 / 64e3)
        assert seen[0].build_dir == tmp_path.resolve() and seen[0].target is target
        # verify.json holds the details under their field names and reads them back typed
        stored = json.loads(json.dumps(run.to_dict()))
        assert stored["details"] == {"cycles": 1000, "source": "one cycle per instruction"}
        back = EmulatedRun.from_json(stored)
        assert back == run and isinstance(back.details, DummyDetails)
        assert back.details.cpi_note() == "one cycle per instruction"
    finally:
        EMULATORS.pop("dummy-sim")
        DETAILS.pop("dummy-sim")


def test_a_profile_without_emulator_is_refused_in_one_line(tmp_path: Path) -> None:
    target = parse_target(_profile("none"))
    with pytest.raises(EdgekdError, match="has no emulator: a simulator registered by a plugin"):
        emulate(EmulationRequest(tmp_path, target, np.zeros((1, 1)), np.zeros(1)))


def test_emulated_runs_read_back_with_their_emulators_typed_details() -> None:
    """verify.json -> typed details -> verify.json keeps every key the untyped dicts had (extend, never rename)."""
    from edgekd.emulate.aarch64 import AArch64Details
    from edgekd.emulate.cortex_m import CortexMDetails

    m = EmulatedRun.from_json(CORTEX_M_RUN)
    assert isinstance(m.details, CortexMDetails)
    assert (m.details.arena_bytes, m.details.cycles) == (4096, 180000)
    assert m.details.cpi_note() == "edgekd.emulate.timing_m"
    assert m.details.report_fields() == {"flash_bytes": 60000, "ram_bytes": 7000, "tflm_arena_bytes": 9000,
                                         "arena_bytes": 4096, "stack_bytes": 800}
    assert m.to_dict() == CORTEX_M_RUN | {"details": CORTEX_M_RUN["details"] | {"count_note": None}}

    a = EmulatedRun.from_json(AARCH64_RUN)
    assert isinstance(a.details, AArch64Details) and a.details.xnnpack_delegate is True
    assert a.details.report_fields() == {} and a.details.cpi_note() == "edgekd.emulate.timing_a"
    assert (a.details.profile_threads, a.details.counted_ms_all_threads) == (4, 0.1)
    stored = a.to_dict()
    assert {k: stored["details"][k] for k in AARCH64_RUN["details"]} == AARCH64_RUN["details"]
    assert stored | {"details": AARCH64_RUN["details"]} == AARCH64_RUN
    assert EmulatedRun.from_json(json.loads(json.dumps(stored))) == a

    failed = EmulatedRun.from_json(CORTEX_M_RUN | {"ok": False, "details": {}})
    assert failed.details is None and failed.to_dict()["details"] == {}


def test_model_inputs_take_the_typed_export_details() -> None:
    """Channels-first floats -> the .tflite's NHWC int8 input, from TfliteDetails (no dict round trip)."""
    from edgekd.emulate import model_inputs
    from edgekd.formats.tflite import QuantParams, TfliteDetails

    x = np.linspace(-1, 1, 2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    q = TfliteDetails({"CONV_2D": 1}, QuantParams(1 / 64, -3, "int8", (1, 4, 4, 3)),
                      QuantParams(0.1, 0, "int8", (1, 10)), channels_last=True)
    got = model_inputs(x, q)
    assert got.dtype == np.int8 and got.shape == (2, 4, 4, 3)
    assert got[0, 1, 2, 0] == np.clip(np.round(x[0, 0, 1, 2] * 64) - 3, -128, 127)
    f = TfliteDetails({}, QuantParams(0.0, 0, "float32", (1, 3, 4, 4)), QuantParams(0.0, 0, "float32", (1, 10)))
    assert np.array_equal(model_inputs(x, f), x) and model_inputs(x, f).dtype == np.float32
