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
