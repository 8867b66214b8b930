"""The DSP (Cortex-M4/M7) and Helium (M55) kernel paths on the QEMU boards against TFLite Micro, for the shapes
the host tests reach only through the portable C: the depthwise scratch window with dilation, strides, SAME
padding and channel counts that are not a multiple of 4 (zero-weight lanes), and the matrix product's odd
channel and odd pixel tails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tflite_builder import conv_model, tflm_outputs

from edgekd.codegen import generate_c
from edgekd.codegen.board import build_board
from edgekd.emulate.cortex_m import run_board
from edgekd.targets import load_target

pytestmark = pytest.mark.emulator  # arm-none-eabi-gcc and qemu-system-arm (scripts/install_emulators.sh)

CASES = [  # (depthwise, cin, cout, k, stride, padding): seeds pick H, W, dilation, zero points, activation
    (True, 5, None, 3, 1, 0),
    (True, 7, None, 3, 2, 0),
    (True, 9, None, 2, 1, 1),
    (True, 13, None, 3, 1, 1),
    (False, 6, 5, 1, 1, 1),
    (False, 3, 9, 3, 2, 0),
    (True, 20, None, 3, 1, 1),  # Helium: two full 8-channel window scatters and a predicated tail
    (False, 5, 8, 3, 1, 1),  # Helium: out_c % 4 == 0, the assembly two-pixel loop, 45 taps (k16 48)
]


@pytest.mark.parametrize("name", ["nrf52840-dk", "alif-ensemble-e3"])
def test_kernel_tails_bit_exact_on_the_boards(name: str, tmp_path: Path) -> None:
    target = load_target(name)
    kernels = set()
    for i, (dw, cin, cout, k, stride, padding) in enumerate(CASES):
        for seed in range(3):
            rng = np.random.default_rng(1500 + 10 * i + seed)
            model, shape = conv_model(rng, depthwise=dw, cin=cin, mult=1 if dw else None, cout=cout, k=k,
                                      stride=stride, padding=padding)
            work = tmp_path / f"m{i}_{seed}"
            work.mkdir()
            (work / "m.tflite").write_bytes(model)
            gen = generate_c(work / "m.tflite", work / "c")
            kernels.add((work / "c" / "model.c").read_text().split("(&op0")[0].rsplit(None, 1)[-1])
            x = rng.integers(-128, 128, size=(3, *shape[1:]), dtype=np.int8)
            board = run_board(build_board(work / "c", target), target, x, gen.output_size, timeout=60)
            assert board.ok, board.error
            np.testing.assert_array_equal(board.outputs, tflm_outputs(model, x), err_msg=f"case {i} seed {seed}")
    assert {"ek_dw_q", "ek_dw_q8"} & kernels and any(k.startswith("ek_conv_mm") for k in kernels)


def test_small_build_is_bit_exact_and_smaller(tmp_path: Path) -> None:
    """EK_SMALL (generate_c(small=True): the C DSP paths, no assembly) against the default build on the M4 board:
    both bit-exact with TFLite Micro on a depthwise + pointwise-shaped layer pair, the small one in less flash."""
    target = load_target("nrf52840-dk")
    flash = {}
    for i, (dw, cin, cout, k) in enumerate(((True, 16, None, 3), (False, 16, 16, 1))):
        rng = np.random.default_rng(1600 + i)
        model, shape = conv_model(rng, depthwise=dw, cin=cin, mult=1 if dw else None, cout=cout, k=k, stride=1,
                                  padding=1)
        x = rng.integers(-128, 128, size=(3, *shape[1:]), dtype=np.int8)
        for small in (False, True):
            work = tmp_path / f"m{i}_{int(small)}"
            work.mkdir()
            (work / "m.tflite").write_bytes(model)
            gen = generate_c(work / "m.tflite", work / "c", small=small)
            build = build_board(work / "c", target)
            board = run_board(build, target, x, gen.output_size, timeout=60)
            assert board.ok, board.error
            np.testing.assert_array_equal(board.outputs, tflm_outputs(model, x), err_msg=f"{i} small={small}")
            flash[i, small] = build.flash_bytes
        assert flash[i, True] < flash[i, False]


R0_CHANNELS = [5, 46]  # the shift-0 channels of _shift0_model


def _shift0_model(r0_scale: float, k: int = 3, stride: int = 1, seed: int = 14) -> bytes:
    """A k x k depthwise layer (48 channels, 13x13, SAME, no activation, so negative outputs are not clamped away)
    whose channels 5 and 46 (2 of 48: the trained students have 1 of 48 to 2 of 96) have the effective scale
    r0_scale (0.7: TFLite shift 0) and small weights (their outputs spread over int8 instead of saturating); the
    other channels get ordinary scales (shift <= -1)."""
    from tflite_builder import ModelBuilder

    rng = np.random.default_rng(seed)
    c, in_scale, out_scale = 48, 0.04, 0.5
    wdata = rng.integers(-127, 128, size=(1, k, k, c), dtype=np.int8)
    scales = [float(v) for v in rng.uniform(0.002, 0.02, size=c)]
    bias = rng.integers(-3000, 3000, size=c).astype(np.int32)
    for ch in R0_CHANNELS:
        wdata[..., ch] = rng.integers(-1, 2, size=(1, k, k))
        scales[ch] = r0_scale * out_scale / in_scale
        bias[ch] = int(rng.integers(-40, 40))
    b = ModelBuilder()
    x = b.tensor((1, 13, 13, c), scale=in_scale, zp=3)
    wt = b.tensor((1, k, k, c), scale=scales, data=wdata, qdim=3)
    bt = b.tensor((c,), "INT32", scale=[in_scale * s for s in scales], data=bias)
    o = -(-13 // stride)
    y = b.tensor((1, o, o, c), scale=out_scale, zp=-7)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], "DepthwiseConv2DOptions", padding=0, strideW=stride, strideH=stride,
         depthMultiplier=1, fusedActivationFunction=0)
    return b.build([x], [y])


def test_depthwise_shift0_channels_take_the_fast_path(tmp_path: Path) -> None:
    """Channels with TFLite shift 0 (effective scale >= 0.5: 5 of 26 trained students have one such depthwise
    layer) no longer send the layer to the general ek_depthwise (x2.4 cycles on the M4, x6.4 on the M55): the
    layer is ek_dw_q8 with EK_DW_R0, bit-exact with TFLite Micro on the M4, M7, M55 (Helium) and M0+ (portable C)
    boards and in the EK_SMALL build, a 5x5 and a stride-2 one on the M4 and M55, and the 3x3
    layer's counted M4 cycles are within 10% of its twin's whose channels have shift -1 (effective scale 0.35),
    which builds without EK_DW_R0 (the r = 0 channels' outputs are recomputed after each row, about 60 cycles each
    on the M4: +7.3% here)."""
    import importlib.util

    model, twin = _shift0_model(0.7), _shift0_model(0.35)
    for name, m in (("r0", model), ("twin", twin)):
        (tmp_path / f"{name}.tflite").write_bytes(m)
        generate_c(tmp_path / f"{name}.tflite", tmp_path / name)
        assert "ek_dw_q8(&op0" in (tmp_path / name / "model.c").read_text()
    assert "#define EK_DW_R0 1" in (tmp_path / "r0" / "kernels.c").read_text()
    assert "#define EK_DW_R0 1" not in (tmp_path / "twin" / "kernels.c").read_text()
    gen = generate_c(tmp_path / "r0.tflite", tmp_path / "r0")
    generate_c(tmp_path / "r0.tflite", tmp_path / "r0s", small=True)
    x = np.random.default_rng(2).integers(-128, 128, size=(4, *gen.input_shape[1:]), dtype=np.int8)
    want = tflm_outputs(model, x)
    r0 = want.reshape(4, -1, 48)[..., R0_CHANNELS]
    assert (r0 < 0).mean() > 0.2 and (np.abs(r0) < 120).mean() > 0.8  # negative outputs, mostly not saturated
    for board, c_dir in (("nrf52840-dk", "r0"), ("stm32f746g-disco", "r0"), ("alif-ensemble-e3", "r0"),
                         ("raspberry-pi-pico", "r0"), ("nrf52840-dk", "r0s")):
        target = load_target(board)
        run = run_board(build_board(tmp_path / c_dir, target), target, x, gen.output_size, timeout=60)
        assert run.ok, run.error
        np.testing.assert_array_equal(run.outputs, want, err_msg=f"{board} {c_dir}")
    # 5x5: the C group path on the M4, ek_rq4_mve's on the M55 (> 16 taps); stride 2: the one-pixel assembly
    for name, other in (("five", _shift0_model(0.7, k=5)), ("two", _shift0_model(0.7, stride=2))):
        (tmp_path / f"{name}.tflite").write_bytes(other)
        gen2 = generate_c(tmp_path / f"{name}.tflite", tmp_path / name)
        assert "ek_dw_q8(&op0" in (tmp_path / name / "model.c").read_text()
        for board in ("nrf52840-dk", "alif-ensemble-e3"):
            target = load_target(board)
            run = run_board(build_board(tmp_path / name, target), target, x, gen2.output_size, timeout=60)
            assert run.ok, run.error
            np.testing.assert_array_equal(run.outputs, tflm_outputs(other, x), err_msg=f"{board} {name}")
    spec = importlib.util.spec_from_file_location("calibrate_costs", Path(__file__).resolve().parent.parent
                                                  / "scripts" / "calibrate_costs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cycles = {}
    for name, m in (("r0", model), ("twin", twin)):
        (tmp_path / f"n{name}").mkdir()
        cycles[name] = script.count_case("cortex-m4", m, tmp_path / f"n{name}")["layer"]
    assert cycles["r0"] == pytest.approx(cycles["twin"], rel=0.10), cycles
