"""`edgekd latency`: estimates from a .tflite's own graph or a build folder, provenance, budget exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd import costmodel
from edgekd.cli import main
from edgekd.distill import load_student
from edgekd.errors import EdgekdError
from edgekd.latency import model_latency, tflite_layers
from edgekd.students import model_input_shape
from edgekd.targets import load_target


@pytest.fixture(autouse=True)
def _cache(cost_cache: Path) -> None:
    """Keep planner costs out of ~/.cache/edgekd."""


def test_tflite_graph_macs_match_the_cost_model(mcu_build: Path) -> None:
    dtype, layers = tflite_layers(mcu_build / "model_int8.tflite")
    model, _ = load_student(mcu_build)
    predicted = costmodel.analyze(model, model_input_shape(model), "int8", True)
    assert dtype == "int8" and [ly.op for ly in layers] == [ly.op for ly in predicted.layers]
    assert sum(ly.macs for ly in layers) == pytest.approx(predicted.macs, rel=0.01)


def test_latency_report_says_how_it_was_obtained(mcu_build: Path) -> None:
    target = load_target("nrf52840-dk")
    from_file = model_latency(target, mcu_build / "model_int8.tflite")
    from_build = model_latency(target, mcu_build)
    assert from_file.kind == "estimated" and "cost model" in from_file.method and from_file.budget_ms == 200
    assert from_file.ms == from_build.ms > 0 and from_file.passed


def test_a_tflite_on_a_microcontroller_gets_the_calibrated_estimate_of_its_student(mcu_build: Path) -> None:
    """A .tflite carries its kernel shapes, so its estimate uses the generated C's per-operator cycles too."""
    target = load_target("nrf52840-dk")
    _, layers = tflite_layers(mcu_build / "model_int8.tflite")
    model, _ = load_student(mcu_build)
    predicted = costmodel.analyze(model, model_input_shape(model), "int8", True)
    for got, want in zip(layers, predicted.layers, strict=True):
        assert (got.op, got.kernel, got.stride, got.in_channels, got.input_elems) == \
            (want.op, want.kernel, want.stride, want.in_channels, want.input_elems)
        assert got.output_shape == want.output_shape or np.prod(got.output_shape) == np.prod(want.output_shape)
    from_file = model_latency(target, mcu_build / "model_int8.tflite")
    from_student = costmodel.estimate_latency(predicted, target)
    assert "calibrated from counted runs" in from_file.method
    assert from_file.ms == pytest.approx(from_student.ms, rel=0.01)


def test_latency_cli_exit_codes(mcu_build: Path, tmp_path: Path) -> None:
    ok = CliRunner().invoke(main, ["latency", "--target", "nrf52840-dk", str(mcu_build / "model_int8.tflite")])
    assert ok.exit_code == 0 and "estimated" in ok.output
    over = CliRunner().invoke(main, ["latency", "--target", "nrf52840-dk", str(mcu_build), "--latency-budget",
                                     "0.5ms", "--json"])
    assert over.exit_code == 1 and json.loads(over.output)["passed"] is False
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model")
    bad = CliRunner().invoke(main, ["latency", "--target", "nrf52840-dk", str(junk)])
    assert bad.exit_code == 2 and "not a valid .tflite flatbuffer" in bad.output
    with pytest.raises(EdgekdError, match="no such file"):
        model_latency(load_target("nrf52840-dk"), tmp_path / "missing.tflite")


@pytest.mark.emulator
@pytest.mark.parametrize("target", ["nrf52840-dk", "alif-ensemble-e3"])  # unicorn counts the M4, QEMU the M55
def test_latency_counts_a_tflite_on_a_microcontroller(tmp_path: Path, target: str) -> None:
    from tflite_builder import wide_model

    model = tmp_path / "model.tflite"
    model.write_bytes(wide_model(2)[0])
    res = CliRunner().invoke(main, ["latency", "--target", target, str(model), "--emulator", "qemu", "--json"])
    assert res.exit_code in (0, 1), res.output  # 1: over the budget, still counted
    report = json.loads(res.output)
    profile = load_target(target)
    from edgekd.cores import CORES

    core = CORES[profile.cpu.core]
    assert report["kind"] == "counted" and report["emulator"] == f"qemu-system-arm/{profile.emulator.machine}"
    assert report["instructions"] > 0 and report["macs"] > 0
    if profile.cpu.core == "cortex-m4":  # edgekd's cycle model charges the executed instruction stream
        assert report["instructions"] > report["macs"]
        assert report["cycles"] > report["instructions"] and "cycles from edgekd.emulate.timing_m" in report["method"]
        assert report["ms"] == pytest.approx(report["cycles"] / (profile.cpu.clock_mhz * 1e3))
    else:  # the M55: QEMU's per-block counts charged by the beat-wise MVE model, not instructions x one CPI
        # Helium does 16 MACs an instruction; the dual-beat M55 peaks at 8 int8 MACs a cycle
        assert report["cycles"] > report["macs"] / 8 and "cycles from edgekd.emulate.timing_m55" in report["method"]
        assert report["ms"] == pytest.approx(report["cycles"] / (profile.cpu.clock_mhz * 1e3))
        assert report["cycles"] != round(report["instructions"] * core.cpi)
    assert "edgekd's C" in report["method"] and report["estimated_ms"] > 0


@pytest.mark.emulator
def test_latency_counts_a_build_folder_on_a_microcontroller(mcu_build: Path) -> None:
    """A build folder is counted through its exported int8 .tflite, the same figure as the file itself."""
    target = load_target("nrf52840-dk")
    from_build = model_latency(target, mcu_build, emulator="qemu")
    from_file = model_latency(target, mcu_build / "model_int8.tflite", emulator="qemu")
    assert from_build.kind == "counted" and from_build.instructions == from_file.instructions > from_build.macs
    assert from_build.emulator == "qemu-system-arm/mps2-an386"
