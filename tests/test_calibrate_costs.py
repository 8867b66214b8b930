"""scripts/calibrate_costs.py against fresh counts: layers outside its case list are estimated within the fit's
error, and a layer's counted cost does not depend on the quantization parameters training produces (issue 14:
a trained mbv2 counted 1.35x its untrained twin on the M4 because ReLU6 layers whose calibrated range passed 6
ran the C path; they now run the assembly kernels plus an upper clamp, bit-exact with TFLite Micro)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tflite_builder import tflm_outputs

from edgekd import costmodel
from edgekd.codegen import generate_c
from edgekd.codegen.board import build_board
from edgekd.emulate.cortex_m import run_board
from edgekd.targets import load_target

pytestmark = pytest.mark.emulator  # arm-none-eabi-gcc, unicorn and qemu-system-arm (scripts/install_emulators.sh)

ROOT = Path(__file__).resolve().parent.parent


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("calibrate_costs", ROOT / "scripts" / "calibrate_costs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _estimate(core: str, layer: costmodel.Layer) -> float:
    klass, feats = costmodel.mcu_layer_features(layer, core=core)
    coef = costmodel.mcu_calibration()["cores"][core]["classes"][klass]["coef"]
    return sum(a * f for a, f in zip(coef, feats, strict=True))


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7"])
@pytest.mark.parametrize("params", [dict(hw=(9, 9), cin=48, cout=48, k=7, s=1),
                                    dict(hw=(9, 9), cin=144, cout=144, k=7, s=2),
                                    dict(hw=(10, 10), cin=72, cout=72, k=5, s=1)])
def test_wide_depthwise_estimate_matches_a_fresh_count(core: str, params: dict[str, Any], tmp_path: Path) -> None:
    """7x7 and 5x5 depthwise shapes that are not calibration cases: the fit within 10% of the counted cycles (the
    kernel-7 mbv2 students were estimated 35-46% low when the fit had two 5x5 cases)."""
    script = _script()
    model, layer = script.build_case("DEPTHWISE_CONV_2D", params, 7)
    counted = script.count_case(core, model, tmp_path)["layer"]
    est = _estimate(core, layer)
    assert est == pytest.approx(counted, rel=0.10), (est, counted)


@pytest.mark.parametrize("op, params", [
    ("CONV_2D", dict(hw=(8, 8), cin=24, cout=24, k=3, s=1)),  # the assembly 2x2 matrix product
    ("CONV_2D", dict(hw=(7, 7), cin=16, cout=48, k=1, s=1)),  # pointwise, odd pixel count
    ("DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=48, cout=48, k=3, s=1)),  # the assembly 3x3 depthwise
    ("DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=30, cout=30, k=3, s=2)),  # C group path, channel tail
])
def test_relu6_clamp_below_127_costs_what_relu_costs(op: str, params: dict[str, Any], tmp_path: Path) -> None:
    """The same layer with ReLU (act_max 127: requantization mode 2, `_q8` kernels) and with a ReLU6 whose output
    scale puts 6.0 below 127 (mode 1, `_q` kernels, as trained mbv2s get): M4 cycles within 8% (the C path was
    1.4-2.6x), and the mode-1 layer bit-exact with TFLite Micro on the M4 and M7 boards."""
    script = _script()
    relu, _ = script.build_case(op, params, 5)
    relu6, _ = script.build_case(op, {**params, "act": 3}, 5)
    kernels = {}
    for name, model in (("relu", relu), ("relu6", relu6)):
        (tmp_path / f"{name}.tflite").write_bytes(model)
        generate_c(tmp_path / f"{name}.tflite", tmp_path / name)
        kernels[name] = (tmp_path / name / "model.c").read_text().split("(&op0")[0].rsplit(None, 1)[-1]
    assert kernels["relu"].endswith("_q8") and kernels["relu6"] == kernels["relu"][:-1], kernels
    if params["cin"] % 4:  # a mode-1 layer the assembly cannot take keeps the C leftovers in the build
        assert "EK_DW8_ASM 1" not in (tmp_path / "relu6" / "kernels.c").read_text()
    cycles = {}
    for name, model in (("relu", relu), ("relu6", relu6)):
        (tmp_path / f"n{name}").mkdir()
        cycles[name] = script.count_case("cortex-m4", model, tmp_path / f"n{name}")["layer"]
    assert cycles["relu6"] == pytest.approx(cycles["relu"], rel=0.08), cycles
    gen = generate_c(tmp_path / "relu6.tflite", tmp_path / "relu6")
    x = np.random.default_rng(4).integers(-128, 128, size=(4, *gen.input_shape[1:]), dtype=np.int8)
    want = tflm_outputs(relu6, x)
    assert len(np.unique(want)) > 3  # the clamp is exercised, not every output saturated
    for board in ("nrf52840-dk", "stm32f746g-disco"):
        target = load_target(board)
        run = run_board(build_board(tmp_path / "relu6", target), target, x, gen.output_size, timeout=60)
        assert run.ok, run.error
        np.testing.assert_array_equal(run.outputs, want, err_msg=board)
