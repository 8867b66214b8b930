"""Per-operator cycle costs of edgekd's generated C on each Cortex-M core, for the planner's cost model.

    .venv/bin/python scripts/calibrate_costs.py                 # M4, M7, M0+ (unicorn): ~3 min on one core
    .venv/bin/python scripts/calibrate_costs.py --m55           # also the M55 (QEMU plugin, 3 runs a model)
    .venv/bin/python scripts/calibrate_costs.py --refit         # refit the committed counts only
    .venv/bin/python scripts/calibrate_costs.py --missing --m55 # count only cases the file lacks (same kernels.c)
    .venv/bin/python scripts/calibrate_costs.py --check         # planned students: estimate vs counted (~2 min)
    .venv/bin/python scripts/calibrate_costs.py --check-trained RUN_DIR...  # trained students (distill.json +
                                                                 # student_int8.tflite): trained vs untrained count

Single-layer int8 models (tests/tflite_builder.py, random weights) with the layer shapes the student families
produce (stems, 3x3 and pointwise convs, strided convs, depthwise 3x3, ADD, MEAN, FC, pools, PAD) are turned into
C by edgekd, linked into each profile's budgets and counted:

* Cortex-M4 (nrf52840-dk) and M7 (stm32f746g-disco): one invoke under unicorn, charged per kernel call by
  edgekd's cycle model (edgekd/emulate/timing_m.py), the figure ``edgekd build``'s latency gate counts;
* Cortex-M0+ (raspberry-pi-pico): instructions per kernel call under unicorn x the core's CPI (edgekd.cores);
* Cortex-M55 (alif-ensemble-e3, ``--m55``, ~4 min): QEMU's mps3-an547, per translated block counts (edgekd's
  TCG plugin tb_profile) charged by edgekd's beat-wise M55 model (edgekd/emulate/timing_m55.py), the figure the
  latency gate counts; per kernel call (the plugin's phases at edgekd_invoke's blocks), the invoke's glue and
  copies from the whole-invoke count less the call, as on the other cores. Built without the model-wide
  EK_MM4_MVE define (but for the FC cases): a 10-class student's fc has 10 channels, so its builds never have it
  and a conv's lone last pixel takes the C group path (a single-layer model with out_c % 4 == 0 would pair it).

Per core and class (edgekd.costmodel.mcu_layer_features: conv, pointwise, conv_tail, stem, fc, fc_tail, dw3x3s1,
dw3x3, dw, add, mean, avgpool, maxpool, pad) cycles = coef . features is fitted by non-negative least squares on
relative error; the invoke's own glue (the ``edgekd_invoke`` segment) plus the copies of the model input and
output (``ek_copy``) as a + b x (input + output bytes). Written to edgekd/costdata/mcu_cycles.json with every
counted case, its fitted value and the error per class.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from benchdocs import replace_section  # noqa: E402
from tflite_builder import ModelBuilder, _layer  # noqa: E402

from edgekd.costmodel import MCU_CYCLES, Layer, mcu_layer_features  # noqa: E402
from edgekd.io import write_json  # noqa: E402

BOARDS = {"cortex-m4": "nrf52840-dk", "cortex-m7": "stm32f746g-disco", "cortex-m0plus": "raspberry-pi-pico",
          "cortex-m55": "alif-ensemble-e3"}
COUNTERS = {
    "cortex-m4": "unicorn + edgekd's Cortex-M4 cycle model (timing_m), per kernel call",
    "cortex-m7": "unicorn + edgekd's Cortex-M7 dual-issue cycle model (timing_m), per kernel call",
    "cortex-m0plus": "unicorn instructions per kernel call x CPI 1.4 (edgekd.cores)",
    "cortex-m55": "QEMU TCG plugin tb_profile + edgekd's Cortex-M55 beat-wise MVE model (timing_m55), "
                  "per kernel call",
}

# (name, op, dict): conv/dw/fc/add/mean/pool/pad shapes of the resnet, dscnn and mbv2 students (7-28 px inputs,
# 8-192 channels) plus a few off-grid ones. conv: (h, w, cin, cout, k, stride, padding 0 SAME / 1 VALID).
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("conv3x3 24->24 8x8", "CONV_2D", dict(hw=(8, 8), cin=24, cout=24, k=3, s=1)),
    ("conv3x3 32->32 7x7", "CONV_2D", dict(hw=(7, 7), cin=32, cout=32, k=3, s=1)),
    ("conv3x3 64->64 4x4", "CONV_2D", dict(hw=(4, 4), cin=64, cout=64, k=3, s=1)),
    ("conv3x3 8->16 13x13", "CONV_2D", dict(hw=(13, 13), cin=8, cout=16, k=3, s=1)),
    ("conv3x3 48->48 3x3", "CONV_2D", dict(hw=(3, 3), cin=48, cout=48, k=3, s=1)),
    ("conv3x3 s2 24->48 8x8", "CONV_2D", dict(hw=(8, 8), cin=24, cout=48, k=3, s=2)),
    ("conv3x3 s2 32->64 7x7", "CONV_2D", dict(hw=(7, 7), cin=32, cout=64, k=3, s=2)),
    ("conv3x3 s2 16->32 13x13", "CONV_2D", dict(hw=(13, 13), cin=16, cout=32, k=3, s=2)),
    ("conv3x3 6->10 9x9 (tail)", "CONV_2D", dict(hw=(9, 9), cin=6, cout=10, k=3, s=1)),
    ("conv3x3 3->7 10x10 (tail)", "CONV_2D", dict(hw=(10, 10), cin=3, cout=7, k=3, s=1)),
    ("stem dw 1->24 3x3 8x8", "DEPTHWISE_CONV_2D", dict(hw=(8, 8), cin=1, cout=24, k=3, s=1)),
    ("stem dw 1->32 3x3 s2 14x14", "DEPTHWISE_CONV_2D", dict(hw=(14, 14), cin=1, cout=32, k=3, s=2)),
    ("stem dw 1->48 3x3 s2 28x28 valid", "DEPTHWISE_CONV_2D", dict(hw=(28, 28), cin=1, cout=48, k=3, s=2, pad=1)),
    ("stem dw 1->8 3x3 s2 28x28 valid", "DEPTHWISE_CONV_2D", dict(hw=(28, 28), cin=1, cout=8, k=3, s=2, pad=1)),
    ("conv3x3 12->12 8x8 (tail)", "CONV_2D", dict(hw=(8, 8), cin=12, cout=12, k=3, s=1)),
    ("conv3x3 s2 12->24 8x8 (tail)", "CONV_2D", dict(hw=(8, 8), cin=12, cout=24, k=3, s=2)),
    ("pw 12->12 13x13 (tail)", "CONV_2D", dict(hw=(13, 13), cin=12, cout=12, k=1, s=1)),
    ("pw 12->24 7x7 (tail)", "CONV_2D", dict(hw=(7, 7), cin=12, cout=24, k=1, s=1)),
    ("stem dw 1->12 3x3 s2 16x16", "DEPTHWISE_CONV_2D", dict(hw=(16, 16), cin=1, cout=12, k=3, s=2)),
    ("stem dw 1->16 3x3 28x28", "DEPTHWISE_CONV_2D", dict(hw=(28, 28), cin=1, cout=16, k=3, s=1)),
    ("pw 8->24 13x13", "CONV_2D", dict(hw=(13, 13), cin=8, cout=24, k=1, s=1)),
    ("pw 24->8 13x13", "CONV_2D", dict(hw=(13, 13), cin=24, cout=8, k=1, s=1)),
    ("pw 16->48 7x7", "CONV_2D", dict(hw=(7, 7), cin=16, cout=48, k=1, s=1)),
    ("pw 48->96 7x7", "CONV_2D", dict(hw=(7, 7), cin=48, cout=96, k=1, s=1)),
    ("pw 64->64 25x5", "CONV_2D", dict(hw=(25, 5), cin=64, cout=64, k=1, s=1)),
    ("pw 192->192 4x4", "CONV_2D", dict(hw=(4, 4), cin=192, cout=192, k=1, s=1)),
    ("pw 48->32 4x4", "CONV_2D", dict(hw=(4, 4), cin=48, cout=32, k=1, s=1)),
    ("fc 32->10", "FULLY_CONNECTED", dict(cin=32, cout=10)),
    ("fc 192->10", "FULLY_CONNECTED", dict(cin=192, cout=10)),
    ("fc 128->12", "FULLY_CONNECTED", dict(cin=128, cout=12)),
    ("fc 64->10", "FULLY_CONNECTED", dict(cin=64, cout=10)),
    ("fc 256->10", "FULLY_CONNECTED", dict(cin=256, cout=10)),
    ("fc 48->7", "FULLY_CONNECTED", dict(cin=48, cout=7)),
    ("dw3x3 24 13x13", "DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=24, cout=24, k=3, s=1)),
    ("dw3x3 48 13x13", "DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=48, cout=48, k=3, s=1)),
    ("dw3x3 96 7x7", "DEPTHWISE_CONV_2D", dict(hw=(7, 7), cin=96, cout=96, k=3, s=1)),
    ("dw3x3 192 4x4", "DEPTHWISE_CONV_2D", dict(hw=(4, 4), cin=192, cout=192, k=3, s=1)),
    ("dw3x3 64 25x5", "DEPTHWISE_CONV_2D", dict(hw=(25, 5), cin=64, cout=64, k=3, s=1)),
    ("dw3x3 16 28x28", "DEPTHWISE_CONV_2D", dict(hw=(28, 28), cin=16, cout=16, k=3, s=1)),
    ("dw3x3 12 8x8", "DEPTHWISE_CONV_2D", dict(hw=(8, 8), cin=12, cout=12, k=3, s=1)),
    ("dw3x3 32 7x7", "DEPTHWISE_CONV_2D", dict(hw=(7, 7), cin=32, cout=32, k=3, s=1)),
    ("dw5x5 24 13x13", "DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=24, cout=24, k=5, s=1)),
    ("dw5x5 s2 48 13x13", "DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=48, cout=48, k=5, s=2)),
    ("dw3x3 s2 24 13x13", "DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=24, cout=24, k=3, s=2)),
    ("dw3x3 s2 48 13x13", "DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=48, cout=48, k=3, s=2)),
    ("dw3x3 s2 96 7x7", "DEPTHWISE_CONV_2D", dict(hw=(7, 7), cin=96, cout=96, k=3, s=2)),
    ("dw3x3 s2 192 7x7", "DEPTHWISE_CONV_2D", dict(hw=(7, 7), cin=192, cout=192, k=3, s=2)),
    ("add 8x8x24", "ADD", dict(hw=(8, 8), c=24)),
    ("add 13x13x8", "ADD", dict(hw=(13, 13), c=8)),
    ("add 4x4x64", "ADD", dict(hw=(4, 4), c=64)),
    ("add 7x7x32", "ADD", dict(hw=(7, 7), c=32)),
    ("mean 4x4x192", "MEAN", dict(hw=(4, 4), c=192)),
    ("mean 7x7x32", "MEAN", dict(hw=(7, 7), c=32)),
    ("mean 13x13x48", "MEAN", dict(hw=(13, 13), c=48)),
    ("mean 1x1x128", "MEAN", dict(hw=(1, 1), c=128)),
    ("avgpool 25x5x64", "AVERAGE_POOL_2D", dict(hw=(25, 5), c=64, k=(25, 5), s=1)),
    ("maxpool 2x2 s2 16x16x16", "MAX_POOL_2D", dict(hw=(16, 16), c=16, k=(2, 2), s=2)),
    ("avgpool 2x2 s2 8x8x32", "AVERAGE_POOL_2D", dict(hw=(8, 8), c=32, k=(2, 2), s=2)),
    ("maxpool 2x2 s2 8x8x32", "MAX_POOL_2D", dict(hw=(8, 8), c=32, k=(2, 2), s=2)),
    ("maxpool 3x3 s2 13x13x16", "MAX_POOL_2D", dict(hw=(13, 13), c=16, k=(3, 3), s=2)),
    ("pad 8x8x16 +1", "PAD", dict(hw=(8, 8), c=16)),
    ("pad 13x13x24 +1", "PAD", dict(hw=(13, 13), c=24)),
    # issue 14 (14cal): the mbv2 search space's 5x5 / 7x7 depthwise layers (kernel-7 students were estimated
    # 35-46% low with two 5x5 cases), its wide pointwise layers on tiny maps, and 128-channel convs on 3x3 / 4x4
    # maps (the resnet's last stage, under-estimated up to 17.5% on the M55)
    ("dw7x7 96 13x13", "DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=96, cout=96, k=7, s=1)),
    ("dw7x7 s2 96 13x13", "DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=96, cout=96, k=7, s=2)),
    ("dw7x7 s2 192 7x7", "DEPTHWISE_CONV_2D", dict(hw=(7, 7), cin=192, cout=192, k=7, s=2)),
    ("dw7x7 384 4x4", "DEPTHWISE_CONV_2D", dict(hw=(4, 4), cin=384, cout=384, k=7, s=1)),
    ("dw7x7 32 12x12", "DEPTHWISE_CONV_2D", dict(hw=(12, 12), cin=32, cout=32, k=7, s=1)),
    ("dw7x7 s2 64 5x5", "DEPTHWISE_CONV_2D", dict(hw=(5, 5), cin=64, cout=64, k=7, s=2)),
    ("dw7x7 128 3x3", "DEPTHWISE_CONV_2D", dict(hw=(3, 3), cin=128, cout=128, k=7, s=1)),
    ("dw7x7 192 11x11", "DEPTHWISE_CONV_2D", dict(hw=(11, 11), cin=192, cout=192, k=7, s=1)),
    ("dw7x7 768 2x2", "DEPTHWISE_CONV_2D", dict(hw=(2, 2), cin=768, cout=768, k=7, s=1)),
    ("dw5x5 96 7x7", "DEPTHWISE_CONV_2D", dict(hw=(7, 7), cin=96, cout=96, k=5, s=1)),
    ("dw5x5 s2 96 7x7", "DEPTHWISE_CONV_2D", dict(hw=(7, 7), cin=96, cout=96, k=5, s=2)),
    ("dw5x5 192 4x4", "DEPTHWISE_CONV_2D", dict(hw=(4, 4), cin=192, cout=192, k=5, s=1)),
    ("dw5x5 32 12x12", "DEPTHWISE_CONV_2D", dict(hw=(12, 12), cin=32, cout=32, k=5, s=1)),
    ("dw5x5 s2 32 13x13", "DEPTHWISE_CONV_2D", dict(hw=(13, 13), cin=32, cout=32, k=5, s=2)),
    ("conv3x3 128->128 3x3", "CONV_2D", dict(hw=(3, 3), cin=128, cout=128, k=3, s=1)),
    ("conv3x3 s2 64->128 6x6", "CONV_2D", dict(hw=(6, 6), cin=64, cout=128, k=3, s=2)),
    ("conv3x3 128->128 4x4", "CONV_2D", dict(hw=(4, 4), cin=128, cout=128, k=3, s=1)),
    ("pw 64->384 4x4", "CONV_2D", dict(hw=(4, 4), cin=64, cout=384, k=1, s=1)),
    ("pw 384->64 4x4", "CONV_2D", dict(hw=(4, 4), cin=384, cout=64, k=1, s=1)),
    ("pw 128->768 2x2", "CONV_2D", dict(hw=(2, 2), cin=128, cout=768, k=1, s=1)),
    ("fc 64->16", "FULLY_CONNECTED", dict(cin=64, cout=16)),
    ("fc 192->12", "FULLY_CONNECTED", dict(cin=192, cout=12)),
    # width-12 / -20 mbv2 expansions: taps not a multiple of 8, the M4/M7 C path (conv_tail)
    ("pw 12->72 12x12 (tail)", "CONV_2D", dict(hw=(12, 12), cin=12, cout=72, k=1, s=1)),
    ("pw 12->36 9x9 (tail)", "CONV_2D", dict(hw=(9, 9), cin=12, cout=36, k=1, s=1)),
    ("pw 20->120 7x7 (tail)", "CONV_2D", dict(hw=(7, 7), cin=20, cout=120, k=1, s=1)),
    ("pw 12->144 3x3 (tail)", "CONV_2D", dict(hw=(3, 3), cin=12, cout=144, k=1, s=1)),
]

DEFAULT_CHECKS = ("nrf52840-dk:digits", "nrf52840-dk:fashion-mnist", "stm32f746g-disco:digits",
                  "raspberry-pi-pico:digits", "nrf52840-dk:fashion-mnist:dscnn", "stm32f746g-disco:fashion-mnist:dscnn",
                  "alif-ensemble-e3:digits")


def _out_hw(hw: tuple[int, int], k: int, s: int, pad: int) -> tuple[int, int]:
    if pad == 1:  # VALID
        return (hw[0] - k) // s + 1, (hw[1] - k) // s + 1
    return -(-hw[0] // s), -(-hw[1] // s)


def build_case(op: str, p: dict[str, Any], seed: int) -> tuple[bytes, Layer]:
    """The single-layer model and the :class:`Layer` edgekd.costmodel would give the same layer (NCHW shape)."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        hw, cin, cout, k, s, pad = p["hw"], p["cin"], p["cout"], p["k"], p["s"], p.get("pad", 0)
        x = b.tensor((1, *hw, cin), scale=0.04, zp=-128)
        out = _out_hw(hw, k, s, pad)
        y, _ = _layer(b, rng, x, 0.04, op, out, cin, cout, (k, k), s, pad, p.get("act", 1))  # act 3: ReLU6
        taps = k * k * (1 if op == "DEPTHWISE_CONV_2D" else cin)
        layer = Layer(0, op, "case", (1, cout, *out), cout * out[0] * out[1], macs=out[0] * out[1] * cout * taps,
                      channels=cout, kernel=k * k, stride=s, in_channels=cin, input_elems=hw[0] * hw[1] * cin)
        return b.build([x], [y]), layer
    if op == "FULLY_CONNECTED":
        cin, cout = p["cin"], p["cout"]
        x = b.tensor((1, cin), scale=0.04, zp=-128)
        scales = [float(v) for v in rng.uniform(0.002, 0.02, cout)]
        wt = b.tensor((cout, cin), scale=scales, data=rng.integers(-127, 128, size=(cout, cin), dtype=np.int8))
        bias = b.tensor((cout,), "INT32", scale=[0.04 * v for v in scales],
                        data=rng.integers(-3000, 3000, cout).astype(np.int32))
        y = b.tensor((1, cout), scale=0.3, zp=3)
        b.op("FULLY_CONNECTED", [x, wt, bias], [y], "FullyConnectedOptions")
        return b.build([x], [y]), Layer(0, op, "case", (1, cout), cout, macs=cin * cout, channels=cout, kernel=1,
                                        in_channels=cin, input_elems=cin)
    hw, c = p["hw"], p["c"]
    x = b.tensor((1, *hw, c), scale=0.04, zp=-128)
    n_in = hw[0] * hw[1] * c
    if op == "ADD":  # x + x: edgekd-c takes one model input; the same kernel as a residual ADD
        y = b.tensor((1, *hw, c), scale=0.07, zp=-128)
        b.op("ADD", [x, x], [y], "AddOptions", fusedActivationFunction=1)
        return b.build([x], [y]), Layer(0, op, "case", (1, c, *hw), n_in, input_elems=n_in)
    if op == "MEAN":
        axes = b.tensor((2,), "INT32", data=np.array([1, 2], dtype=np.int32))
        y = b.tensor((1, 1, 1, c), scale=0.04, zp=-128)
        b.op("MEAN", [x, axes], [y], "ReducerOptions", keepDims=True)
        return b.build([x], [y]), Layer(0, op, "case", (1, c, 1, 1), c, macs=n_in, input_elems=n_in)
    if op == "PAD":
        pads = b.tensor((4, 2), "INT32", data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]], dtype=np.int32))
        out = (hw[0] + 2, hw[1] + 2)
        y = b.tensor((1, *out, c), scale=0.04, zp=-128)
        b.op("PAD", [x, pads], [y])
        return b.build([x], [y]), Layer(0, op, "case", (1, c, *out), out[0] * out[1] * c, input_elems=n_in)
    k, s = p["k"], p["s"]
    out = ((hw[0] - k[0]) // s + 1, (hw[1] - k[1]) // s + 1)
    y = b.tensor((1, *out, c), scale=0.04, zp=-128)
    b.op(op, [x], [y], "Pool2DOptions", padding=1, strideW=s, strideH=s, filterWidth=k[1], filterHeight=k[0])
    n_out = out[0] * out[1] * c
    return b.build([x], [y]), Layer(0, op, "case", (1, c, *out), n_out, macs=n_out * k[0] * k[1],
                                    kernel=k[0] * k[1], stride=s, in_channels=c, input_elems=n_in)


def count_case(core: str, model: bytes, work: Path) -> dict[str, Any]:
    """Count one single-layer model on ``core``'s board: the layer's cycles and the invoke glue."""
    from edgekd.codegen import generate_c
    from edgekd.codegen.board import build_board
    from edgekd.emulate.timing_m import count_segments, time_invoke
    from edgekd.targets import load_target

    target = load_target(BOARDS[core])
    path = work / "m.tflite"
    path.write_bytes(model)
    gen = generate_c(path, work / f"c-{core}")
    if core == "cortex-m55" and gen.ops != ["FULLY_CONNECTED"]:  # as in a 10-class student, whose fc has out_c 10:
        kernels = work / f"c-{core}" / "kernels.c"  # no EK_MM4_MVE, so a lone last pixel takes the C group path
        kernels.write_text("".join(line for line in kernels.read_text().splitlines(keepends=True)
                                   if not line.startswith("#define EK_MM4_MVE 1")))
    build = build_board(work / f"c-{core}", target)
    x = np.random.default_rng(0).integers(-128, 128, size=gen.input_shape[1:], dtype=np.int8)
    if core == "cortex-m55":  # per call: tb_profile's phases at edgekd_invoke's blocks (input copy, layer, output
        from edgekd.emulate.timing_m55 import time_calls_on_qemu, time_on_qemu  # copy), glue = the rest of the invoke

        whole = time_on_qemu(build, target, x, gen.output_size, 120)
        between = time_calls_on_qemu(build, target, x, gen.output_size, 120).phases[1:-1]
        assert len(between) == 3, f"expected input copy, layer, output copy; got {len(between)} phases"
        copy = between[0].cycles + between[2].cycles
        return {"layer": between[1].cycles, "glue": whole.cycles - between[1].cycles - copy, "copy": copy,
                "instructions": whole.instructions, "io_bytes": int(np.prod(gen.input_shape)) + gen.output_size,
                "functions": sorted({s.function for s in between[1].segments if s.cycles})}
    timed = time_invoke(build, target, x) if core in ("cortex-m4", "cortex-m7") else count_segments(build, target, x)
    glue = sum(s.cycles for s in timed.segments if s.function == "edgekd_invoke")
    copy = sum(s.cycles for s in timed.segments if s.function == "ek_copy")  # model input in, output out
    kernels = [s for s in timed.segments if s.function not in ("edgekd_invoke", "ek_copy")]
    return {"layer": sum(s.cycles for s in kernels), "glue": glue, "copy": copy, "instructions": timed.instructions,
            "io_bytes": int(np.prod(gen.input_shape)) + gen.output_size,
            "functions": sorted({s.function for s in kernels})}


def fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per class: non-negative least squares on relative error (each row divided by its counted cycles)."""
    from scipy.optimize import nnls

    classes: dict[str, Any] = {}
    for klass in sorted({r["class"] for r in rows}):
        sub = [r for r in rows if r["class"] == klass]
        a = np.array([r["features"] for r in sub], dtype=np.float64)
        y = np.array([r["cycles"] for r in sub], dtype=np.float64)
        scale = np.maximum(np.abs(a).max(0), 1.0)  # conditioning only
        coef, _ = nnls(a / scale / y[:, None], np.ones(len(y)))
        coef = coef / scale
        pred = a @ coef
        err = (pred - y) / y * 100
        for r, p, e in zip(sub, pred, err, strict=True):
            r["fitted"], r["err_pct"] = round(float(p)), round(float(e), 2)
        classes[klass] = {"coef": [float(f"{c:.6g}") for c in coef], "cases": len(sub),
                          "max_abs_err_pct": round(float(np.abs(err).max()), 2),
                          "rms_err_pct": round(float(np.sqrt((err ** 2).mean())), 2)}
    return classes


def refit(data: dict[str, Any]) -> dict[str, Any]:
    """Fit every core's counted rows again; class and features come from the cost model's current rules."""
    layers = {name: build_case(op, p, 0)[1] for name, op, p in CASES}
    for core, entry in data["cores"].items():
        rows = entry["counted"]
        for r in rows:
            if r["case"] in layers:
                klass, feats = mcu_layer_features(layers[r["case"]], core=core) or ("", [])
                r["class"], r["features"] = klass, feats
        entry["classes"] = fit(rows)
        glue = [r for r in rows if r.get("glue")]
        if glue:  # edgekd_invoke's own instructions (a constant) + ek_copy of the model input and output
            a = float(np.median([r["glue"] for r in glue]))
            b = float(np.median([r["copy"] / max(r["io_bytes"], 1) for r in glue]))
            entry["invoke"] = [round(a, 1), round(b, 4)]
        else:  # counts without a separate glue figure (none today): the glue is inside each layer's figure
            entry["invoke"] = [0.0, 0.0]
        entry["cases"] = len(rows)
        entry["counter"] = COUNTERS[core]
    return data


def features_doc() -> dict[str, list[str]]:
    mm = ["padded MACs", "padded outputs", "columns", "pixels", "1"]  # taps padded to 4 (M55: 16), channels to 2
    dw = ["MACs", "outputs", "inputs", "rows x channels", "pixels", "1"]  # (M55: 4), pixels to pairs (M55)
    pool = ["window elements", "outputs", "1"]
    return {"conv": mm, "conv_tail": mm, "pointwise": mm, "stem": mm, "fc": mm, "fc_tail": mm, "dw3x3s1": dw,
            "dw3x3": dw, "dw": dw,
            "add": ["outputs", "1"], "pad": ["outputs", "1"], "mean": ["inputs", "outputs", "1"],
            "avgpool": pool, "maxpool": pool}


def _untrained(config: Any, spec: Any, target: Any, tflite: Path) -> tuple[Any, Any, Path]:
    """``config`` built with seed 0: its cost-model report, the planner's latency estimate for ``target`` and its
    int8 export to ``tflite`` (32 random calibration inputs): the planned side of every check."""
    import torch

    from edgekd import costmodel
    from edgekd.export.tflite import export_tflite_int8
    from edgekd.students import build_student, model_input_shape

    torch.manual_seed(0)
    model = build_student(config, spec.input_shape, spec.num_classes)
    shape = model_input_shape(model)
    report = costmodel.analyze(model, shape, "int8", channels_last_input=model.channels_last_input)
    calib = np.random.default_rng(0).normal(0, 1, size=(32, *shape)).astype(np.float32)
    return report, costmodel.estimate_latency(report, target), export_tflite_int8(model, shape, calib, tflite).path


def _gate_count(tflite: Path, target: Any, c_dir: Path) -> tuple[Any, Any, Any, np.ndarray]:
    """``tflite``'s generated C in ``c_dir`` linked for ``target`` and one invoke counted by the latency gate's
    own counter: (the generated C, the firmware, the input, the count)."""
    from edgekd.codegen import generate_c
    from edgekd.codegen.board import build_board
    from edgekd.emulate.cortex_m import count_invoke

    gen = generate_c(tflite, c_dir)
    build = build_board(c_dir, target)
    x = np.random.default_rng(0).integers(-128, 128, size=gen.input_shape[1:], dtype=np.int8)
    return gen, build, x, count_invoke(build, target, x, gen.output_size, 300)


def check(pair: str, work: Path) -> dict[str, Any]:
    """Plan ``target:task``, export the planned student (untrained, seed 0) to int8, generate its C and count one
    invoke with the latency gate's own counter (``count_invoke``); per layer estimate vs counted cycles."""
    from edgekd import costmodel
    from edgekd.data import get_spec
    from edgekd.emulate.timing_m import Segment, count_segments, time_invoke
    from edgekd.emulate.timing_m55 import time_calls_on_qemu
    from edgekd.planner import plan
    from edgekd.targets import load_target

    target_name, task, *family = pair.split(":")  # TARGET:TASK[:FAMILY]: the planner's pick among one family
    target = load_target(target_name)
    spec = get_spec(task, "/usr/share/datasets/fashion-mnist")
    picked = plan(target, spec, family or None)
    assert picked.student is not None, f"nothing fits {pair}"
    report, est, tfl = _untrained(picked.student.student, spec, target, work / "student.tflite")
    gen, build, x, gate = _gate_count(tfl, target, work / "c")
    core = target.cpu.core
    if core in ("cortex-m4", "cortex-m7"):
        segments = time_invoke(build, target, x).segments
    elif core == "cortex-m55":  # per kernel call: tb_profile's block counts between edgekd_invoke's blocks
        calls = time_calls_on_qemu(build, target, x, gen.output_size, 300).calls(len(gen.ops)) or []
        segments = [Segment(c.segments[0].function if c.segments else "?", c.instructions, c.cycles) for c in calls]
    else:  # the M0+ per kernel call under unicorn
        segments = count_segments(build, target, x).segments
    fits = costmodel.mcu_calibration()["cores"][core]["classes"]
    kernels = [s for s in segments if s.function not in ("edgekd_invoke", "ek_copy")]
    layers = []
    for i, layer in enumerate(report.layers):
        after = report.layers[i + 1].op if i + 1 < len(report.layers) else ""
        feat = costmodel.mcu_layer_features(layer, after in ("CONV_2D", "DEPTHWISE_CONV_2D"), core)
        if feat is None or feat[0] == "free":
            continue
        coef = fits[feat[0]]["coef"]
        layers.append({"layer": layer.name, "op": layer.op, "class": feat[0], "macs": layer.macs,
                       "estimated_cycles": round(sum(a * f for a, f in zip(coef, feat[1], strict=True)))})
    if len(layers) == len(kernels):
        for row, seg in zip(layers, kernels, strict=True):
            row["counted_cycles"], row["function"] = seg.cycles, seg.function
            row["err_pct"] = round((row["estimated_cycles"] - seg.cycles) / seg.cycles * 100, 1)
    counted_ms = gate.ms or 0.0
    return {"target": target_name, "task": task, "family": family[0] if family else "any", "core": core,
            "student": picked.student.label(),
            "macs": report.macs, "estimated_ms": est.ms, "counted_ms": round(counted_ms, 3),
            "err_pct": round((est.ms - counted_ms) / counted_ms * 100, 1), "budget_ms": target.budgets.latency_ms,
            "passes_counted_gate": counted_ms <= target.budgets.latency_ms, "counter": gate.cycle_model or
            f"{gate.counter} x CPI {gate.cpi}", "method": est.method, "layers_matched": len(layers) == len(kernels),
            "layers": layers}


def check_trained(run_dir: Path, work: Path) -> dict[str, Any]:
    """A trained student (``run_dir``: distill.json + student_int8.tflite, e.g. an ``edgekd search`` final):
    the planner's estimate of its architecture against the latency gate's count of the trained int8 file and of
    the same architecture untrained (seed 0, exported like :func:`check`). Why: the fits are counted on random
    weights; this shows whether trained quantization parameters move the counted cost."""
    from edgekd.data import get_spec
    from edgekd.students import StudentConfig
    from edgekd.targets import load_target

    meta = json.loads((run_dir / "distill.json").read_text())
    target = load_target(meta["target"])
    spec = get_spec(meta["task"], "/usr/share/datasets/fashion-mnist")
    config = StudentConfig(meta["student"]["family"], meta["student"]["config"])
    report, est, untrained = _untrained(config, spec, target, work / "u.tflite")
    counted = {}
    for kind, tfl in (("trained", run_dir / "student_int8.tflite"), ("untrained", untrained)):
        gate = _gate_count(tfl, target, work / kind)[3]
        counted[kind] = round(gate.ms or 0.0, 3)
        calls = re.findall(r"\b(ek_\w+)\(&op\d+", (work / kind / "model.c").read_text())
        counted[f"{kind}_mode0"] = sum(k in ("ek_depthwise", "ek_conv2d", "ek_conv_mm") for k in calls)
        counted[f"{kind}_mode1"] = sum(k in ("ek_dw_q", "ek_conv_mm_q") for k in calls)
    return {"run": str(run_dir), "target": target.name, "core": target.cpu.core, "student": config.to_dict(),
            "macs": report.macs, "estimated_ms": est.ms, "counted_trained_ms": counted["trained"],
            "counted_untrained_ms": counted["untrained"],
            "trained_general_layers": counted["trained_mode0"], "trained_mode1_layers": counted["trained_mode1"],
            "err_trained_pct": round((est.ms - counted["trained"]) / counted["trained"] * 100, 1),
            "err_untrained_pct": round((est.ms - counted["untrained"]) / counted["untrained"] * 100, 1),
            "budget_ms": target.budgets.latency_ms}


CORE_NAMES = {"cortex-m4": "M4", "cortex-m7": "M7", "cortex-m0plus": "M0+", "cortex-m55": "M55"}


def fit_table(data: dict[str, Any]) -> str:
    """Per class and core: counted cases, worst and RMS relative error of the fit."""
    cores = [c for c in CORE_NAMES if c in data["cores"]]
    classes = sorted({k for c in cores for k in data["cores"][c]["classes"]})
    head = "| class (features) | " + " | ".join(f"{CORE_NAMES[c]}: cases, max / RMS error" for c in cores) + " |"
    lines = [head, "|---" * (len(cores) + 1) + "|"]
    for k in classes:
        cells = []
        for c in cores:
            f = data["cores"][c]["classes"].get(k)
            cells.append(f"{f['cases']}, {f['max_abs_err_pct']:.1f}% / {f['rms_err_pct']:.1f}%" if f else "-")
        lines.append(f"| {k} ({', '.join(data['features'].get(k, []))}) | " + " | ".join(cells) + " |")
    glue = [f"{a:g} + {b:g} x bytes" if a or b else "inside each layer (whole-invoke counts)"
            for a, b in (data["cores"][c]["invoke"] for c in cores)]
    lines.append("| invoke glue + input/output copy (cycles) | " + " | ".join(glue) + " |")
    return "\n".join(lines)


def check_table(results: list[dict[str, Any]]) -> str:
    lines = ["| target (core) | task: planned student | MACs | estimated ms | counted ms | error | budget ms | "
             "passes the counted gate | worst layer error |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        worst = max((abs(x.get("err_pct", 0)) for x in r["layers"]), default=0) if r["layers_matched"] else None
        fam = "" if r.get("family", "any") == "any" else f" (best {r['family']})"
        lines.append(f"| {r['target']} ({CORE_NAMES.get(r['core'], r['core'])}) | {r['task']}{fam}: {r['student']} | "
                     f"{r['macs']:,} | {r['estimated_ms']:.2f} | {r['counted_ms']:.2f} | {r['err_pct']:+.1f}% | "
                     f"{r['budget_ms']:g} | {'yes' if r['passes_counted_gate'] else 'NO'} | "
                     + (f"{worst:.1f}% |" if worst is not None else "whole model only |"))
    return "\n".join(lines)


def trained_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| target (core) | trained student | MACs | estimated ms | counted trained ms | error | "
             "counted untrained ms | error | general-path / mode-1 layers (trained) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cfg = ", ".join(f"{k}={v}" for k, v in sorted(r["student"]["config"].items()))
        lines.append(f"| {r['target']} ({CORE_NAMES.get(r['core'], r['core'])}) | {r['student']['family']}({cfg}) | "
                     f"{r['macs']:,} | {r['estimated_ms']:.2f} | {r['counted_trained_ms']:.2f} | "
                     f"{r['err_trained_pct']:+.1f}% | {r['counted_untrained_ms']:.2f} | "
                     f"{r['err_untrained_pct']:+.1f}% | "
                     f"{r['trained_general_layers']} / {r['trained_mode1_layers']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="cortex-m4,cortex-m7,cortex-m0plus")
    ap.add_argument("--m55", action="store_true", help="also count the M55 cases on QEMU")
    ap.add_argument("--refit", action="store_true", help="refit the counted data already in the file")
    ap.add_argument("--missing", action="store_true",
                    help="count only the cases the file lacks for each core (same kernels.c), then refit")
    ap.add_argument("--kernels-state", default="", help="which kernels.c the counts are from (recorded)")
    ap.add_argument("--out", default=str(MCU_CYCLES))
    ap.add_argument("--check", nargs="*", metavar="TARGET:TASK[:FAMILY]",
                    help="plan, export and count these students; estimate vs counted -> docs/cost_check.json")
    ap.add_argument("--check-trained", nargs="+", metavar="RUN_DIR",
                    help="trained students (distill.json + student_int8.tflite): estimate vs counted trained and "
                         "untrained -> docs/cost_check.json 'trained'")
    ap.add_argument("--tables", action="store_true", help="only re-render the docs tables from the JSON files")
    args = ap.parse_args()
    checks_path = ROOT / "docs" / "cost_check.json"
    if args.tables:
        replace_section("costfit", fit_table(json.loads(Path(args.out).read_text())))
        checks = json.loads(checks_path.read_text())
        replace_section("costcheck", check_table(checks["checks"]))
        if checks.get("trained"):
            replace_section("costtrained", trained_table(checks["trained"]))
        return
    if args.check_trained:
        rows = []
        for run in args.check_trained:
            with tempfile.TemporaryDirectory(prefix="edgekd-check-") as tmp:
                r = check_trained(Path(run), Path(tmp))
            rows.append(r)
            print(f"{run}: estimated {r['estimated_ms']:.2f} ms, counted trained {r['counted_trained_ms']:.2f} "
                  f"({r['err_trained_pct']:+.1f}%), untrained {r['counted_untrained_ms']:.2f} ms", flush=True)
        checks = json.loads(checks_path.read_text()) if checks_path.is_file() else {"checks": []}
        done = {r["run"] for r in rows}
        checks["trained"] = [*(r for r in checks.get("trained", []) if r["run"] not in done), *rows]
        checks["trained_how"] = check_trained.__doc__
        write_json(checks_path, checks)
        replace_section("costtrained", trained_table(checks["trained"]))
        return
    if args.check is not None:
        results = []
        for pair in args.check or DEFAULT_CHECKS:
            with tempfile.TemporaryDirectory(prefix="edgekd-check-") as tmp:
                r = check(pair, Path(tmp))
            results.append(r)
            print(f"{pair}: {r['student']} estimated {r['estimated_ms']:.2f} ms, counted {r['counted_ms']:.2f} ms "
                  f"({r['err_pct']:+.1f}%), budget {r['budget_ms']:g} ms", flush=True)
        path = ROOT / "docs" / "cost_check.json"
        if args.check and path.is_file():  # named pairs replace their own rows; the other checks stay
            key = ("target", "task", "family")
            done = {tuple(r[k] for k in key) for r in results}
            old = [r for r in json.loads(path.read_text())["checks"] if tuple(r[k] for k in key) not in done]
            results = [*old, *results]
        previous = json.loads(path.read_text()) if path.is_file() else {}
        write_json(path, {**previous, "how": check.__doc__, "checks": results})
        replace_section("costcheck", check_table(results))
        return
    out = Path(args.out)
    data: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    data.setdefault("cores", {})
    if not args.refit:
        cores = [c for c in args.cores.split(",") if c] + (["cortex-m55"] if args.m55 else [])
        kernels = hashlib.sha256((ROOT / "edgekd" / "codegen" / "c" / "kernels.c").read_bytes()).hexdigest()
        for core in cores:
            t0 = time.perf_counter()
            old = data["cores"].get(core, {}) if args.missing else {}
            if old and not old.get("kernels_state", "").startswith(f"kernels.c sha256 {kernels[:12]}"):
                sys.exit(f"--missing: {core}'s counts are of another kernels.c ({old.get('kernels_state')}); "
                         "count every case again (without --missing)")
            done = {r["case"]: r for r in old.get("counted", [])}
            rows = []
            for i, (name, op, p) in enumerate(CASES):
                if name in done:
                    rows.append(done[name])
                    continue
                model, layer = build_case(op, p, 100 + i)
                feat = mcu_layer_features(layer, core=core)
                assert feat is not None, name
                with tempfile.TemporaryDirectory(prefix="edgekd-calib-") as tmp:
                    got = count_case(core, model, Path(tmp))
                rows.append({"case": name, "op": op, "class": feat[0], "features": feat[1], "cycles": got["layer"],
                             "glue": got["glue"], "copy": got.get("copy", 0), "io_bytes": got.get("io_bytes", 0),
                             "instructions": got["instructions"], "functions": got.get("functions", [])})
                print(f"{core} {name}: {got['layer']:,} cycles (glue {got['glue']})", flush=True)
            state = old.get("kernels_state") or (f"kernels.c sha256 {kernels[:12]}"
                                                 + (f": {args.kernels_state}" if args.kernels_state else ""))
            data["cores"][core] = {"board": BOARDS[core], "counted": rows, "kernels_state": state,
                                   "wall_s": round(old.get("wall_s", 0) + time.perf_counter() - t0, 1)}
    data["schema"] = 1
    data["features"] = features_doc()
    data["how"] = ("scripts/calibrate_costs.py: single-layer int8 models (tests/tflite_builder.py) as edgekd's "
                   "generated C, counted per core (see each core's counter); per class cycles = coef . features "
                   "by non-negative least squares on relative error; invoke = edgekd_invoke's own glue cycles")
    refit(data)
    write_json(out, data)
    replace_section("costfit", fit_table(data))
    for core, entry in data["cores"].items():
        worst = ", ".join(f"{k} {v['max_abs_err_pct']:.1f}%" for k, v in entry["classes"].items())
        print(f"{core}: {entry['cases']} cases; max |error| per class: {worst}")


if __name__ == "__main__":
    main()
