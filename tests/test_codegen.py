"""edgekd-c against the TFLite Micro interpreter: every kernel on random single-op int8 models, bit for bit.

The models are written directly with the flatbuffer object API (random weights, per-channel scales, zero
points, activations, strides and paddings), so each case builds in milliseconds; the generated C is compiled
with the host gcc and every output byte is compared with tflite-micro's reference kernels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tflite_builder import (
    WIDE_CASES,
    ModelBuilder,
    conv_model,
    output_scale,
    random_act,
    random_scales,
    tflm_outputs,
    wide_model,
)

from edgekd.codegen import compile_host, generate_c, run_host
from edgekd.errors import EdgekdError

# ------------------------------------------------------------------ references and helpers

def edgekd_outputs(model: bytes, x: np.ndarray, tmp: Path) -> tuple[np.ndarray, object]:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "model.tflite"
    path.write_bytes(model)
    result = generate_c(path, tmp / "c")
    exe = compile_host(tmp / "c")
    return run_host(exe, x.reshape(len(x), *result.input_shape[1:]), result.output_size), result


def assert_bit_exact(model: bytes, in_shape: tuple[int, ...], tmp: Path, rng: np.random.Generator, n: int = 6):
    x = rng.integers(-128, 128, size=(n, *in_shape[1:]), dtype=np.int8)
    ours, result = edgekd_outputs(model, x, tmp)
    ref = tflm_outputs(model, x)
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(np.int32) - ref.astype(np.int32))
    assert diff.max() == 0, f"{int((diff > 0).sum())} of {diff.size} bytes differ (max {diff.max()} steps)"
    assert len(np.unique(ref)) > 1 or ref.size < 4  # a saturated/constant output would prove little
    return result


# ------------------------------------------------------------------ kernels, one by one

@pytest.mark.parametrize("seed", range(6))
def test_conv2d_bit_exact(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    model, shape = conv_model(rng, depthwise=False)
    assert_bit_exact(model, shape, tmp_path, rng)


@pytest.mark.parametrize("seed", range(6))
def test_depthwise_bit_exact(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    model, shape = conv_model(rng, depthwise=True)
    assert_bit_exact(model, shape, tmp_path, rng)


@pytest.mark.parametrize("case", range(len(WIDE_CASES)))
def test_blocked_conv_paths_bit_exact(tmp_path: Path, case: int) -> None:
    model, shape = wide_model(case)
    assert_bit_exact(model, shape, tmp_path, np.random.default_rng(case))


@pytest.mark.parametrize("per_channel", [True, False])
def test_fully_connected_bit_exact(tmp_path: Path, per_channel: bool) -> None:
    rng = np.random.default_rng(300 + per_channel)
    cin, cout = 37, 11
    in_scale = 0.03
    w_scales = random_scales(rng, cout if per_channel else 1)
    b = ModelBuilder()
    x = b.tensor((1, 37), scale=in_scale, zp=-7)
    wt = b.tensor((cout, cin), scale=w_scales, zp=0, data=rng.integers(-127, 128, size=(cout, cin), dtype=np.int8))
    bias = b.tensor((cout,), "INT32", scale=[in_scale * s for s in w_scales], zp=0,
                    data=rng.integers(-2000, 2000, size=cout).astype(np.int32))
    y = b.tensor((1, cout), scale=output_scale(in_scale, w_scales, cin), zp=5)
    b.op("FULLY_CONNECTED", [x, wt, bias], [y], "FullyConnectedOptions", fusedActivationFunction=random_act(rng),
         keepNumDims=False)
    assert_bit_exact(b.build([x], [y]), (1, 37), tmp_path, rng)


@pytest.mark.parametrize("kind,seed", [("AVERAGE_POOL_2D", 0), ("AVERAGE_POOL_2D", 1), ("AVERAGE_POOL_2D", 2),
                                       ("MAX_POOL_2D", 0), ("MAX_POOL_2D", 1)])
def test_pooling_bit_exact(tmp_path: Path, kind: str, seed: int) -> None:
    rng = np.random.default_rng(400 + seed + 10 * (kind == "MAX_POOL_2D"))
    h, w, c = 7, 6, 3
    k, stride, padding = int(rng.integers(2, 4)), int(rng.integers(1, 3)), seed % 2
    oh, ow = ((h + stride - 1) // stride, (w + stride - 1) // stride) if padding == 0 else \
        ((h - k) // stride + 1, (w - k) // stride + 1)
    b = ModelBuilder()
    x = b.tensor((1, h, w, c), scale=0.05, zp=3)
    y = b.tensor((1, oh, ow, c), scale=0.05, zp=3)
    b.op(kind, [x], [y], "Pool2DOptions", padding=padding, strideW=stride, strideH=stride, filterWidth=k,
         filterHeight=k, fusedActivationFunction=random_act(rng) if seed else 3)
    assert_bit_exact(b.build([x], [y]), (1, h, w, c), tmp_path, rng)


@pytest.mark.parametrize("axes,keep,same_q", [([1, 2], False, False), ([1, 2], True, False), ([1, 2], False, True),
                                              ([3], False, False), ([2], True, False)])
def test_mean_bit_exact(tmp_path: Path, axes: list[int], keep: bool, same_q: bool) -> None:
    rng = np.random.default_rng(500 + len(axes) + keep)
    shape = (1, 5, 4, 6)
    out = [1 if i in axes else d for i, d in enumerate(shape)] if keep else \
        [d for i, d in enumerate(shape) if i not in axes]
    b = ModelBuilder()
    x = b.tensor(shape, scale=0.04, zp=-9)
    ax = b.tensor((len(axes),), "INT32", data=np.array(axes, dtype=np.int32))
    y = b.tensor(tuple(out), scale=0.04 if same_q else 0.013, zp=-9 if same_q else 4)
    b.op("MEAN", [x, ax], [y], "ReducerOptions", keepDims=keep)
    assert_bit_exact(b.build([x], [y]), shape, tmp_path, rng)


@pytest.mark.parametrize("broadcast", [False, True])
def test_add_bit_exact(tmp_path: Path, broadcast: bool) -> None:
    rng = np.random.default_rng(600 + broadcast)
    shape = (1, 4, 5, 6)
    b = ModelBuilder()
    x = b.tensor(shape, scale=0.03, zp=-4)
    other_shape = (1, 1, 1, 6) if broadcast else shape
    other = b.tensor(other_shape, scale=0.05, zp=7, data=rng.integers(-128, 128, size=other_shape, dtype=np.int8))
    y = b.tensor(shape, scale=0.06, zp=-2)
    b.op("ADD", [x, other], [y], "AddOptions", fusedActivationFunction=1 if broadcast else 0)
    assert_bit_exact(b.build([x], [y]), shape, tmp_path, rng)


def test_residual_add_of_two_activations(tmp_path: Path) -> None:
    """A graph input read by two ops (conv and the residual ADD) must stay alive until the ADD."""
    rng = np.random.default_rng(650)
    shape = (1, 6, 6, 4)
    b = ModelBuilder()
    x = b.tensor(shape, scale=0.03, zp=2)
    w_scales = random_scales(rng, 4)
    wt = b.tensor((4, 3, 3, 4), scale=w_scales, data=rng.integers(-127, 128, size=(4, 3, 3, 4), dtype=np.int8))
    c = b.tensor(shape, scale=output_scale(0.03, w_scales, 36), zp=-3)
    y = b.tensor(shape, scale=0.08, zp=1)
    b.op("CONV_2D", [x, wt, -1], [c], "Conv2DOptions", padding=0, strideW=1, strideH=1)
    b.op("ADD", [c, x], [y], "AddOptions")
    assert_bit_exact(b.build([x], [y]), shape, tmp_path, rng)


@pytest.mark.parametrize("beta,scale", [(1.0, 0.1), (1.0, 0.02), (0.5, 0.25)])
def test_softmax_bit_exact(tmp_path: Path, beta: float, scale: float) -> None:
    rng = np.random.default_rng(700)
    b = ModelBuilder()
    x = b.tensor((1, 3, 10), scale=scale, zp=-5)
    flat = b.tensor((2,), "INT32", data=np.array([3, 10], dtype=np.int32))
    r = b.tensor((3, 10), scale=scale, zp=-5)
    y = b.tensor((3, 10), scale=1.0 / 256, zp=-128)
    b.op("RESHAPE", [x, flat], [r], "ReshapeOptions", newShape=[3, 10])
    b.op("SOFTMAX", [r], [y], "SoftmaxOptions", beta=beta)
    result = assert_bit_exact(b.build([x], [y]), (1, 3, 10), tmp_path, rng, n=12)
    assert result.ops == ["SOFTMAX"]  # RESHAPE became an alias, no copy


def test_pad_standalone_and_folded_into_conv(tmp_path: Path) -> None:
    rng = np.random.default_rng(800)
    shape = (1, 6, 6, 3)
    for fold in (False, True):
        b = ModelBuilder()
        x = b.tensor(shape, scale=0.02, zp=-11)
        pads = b.tensor((4, 2), "INT32", data=np.array([[0, 0], [1, 1], [0, 1], [0, 0]], dtype=np.int32))
        p = b.tensor((1, 8, 7, 3), scale=0.02, zp=-11)
        b.op("PAD", [x, pads], [p], "PadOptions")
        out = p
        if fold:
            w_scales = random_scales(rng, 5)
            wt = b.tensor((5, 3, 3, 3), scale=w_scales, data=rng.integers(-127, 128, size=(5, 3, 3, 3), dtype=np.int8))
            out = b.tensor((1, 3, 3, 5), scale=output_scale(0.02, w_scales, 27), zp=0)
            b.op("CONV_2D", [p, wt, -1], [out], "Conv2DOptions", padding=1, strideW=2, strideH=2)
        result = assert_bit_exact(b.build([x], [out]), shape, tmp_path / str(fold), rng)
        assert result.ops == (["PAD+CONV_2D"] if fold else ["PAD"])
        if fold:  # the padded copy (8*7*3 bytes) never exists: only the input, the output and the kernel's scratch
            sizes = sorted(b["bytes"] for b in result.plan.to_dict()["buffers"].values())
            assert 8 * 7 * 3 not in sizes and 6 * 6 * 3 in sizes and 5 * 28 + 3 in sizes  # 28: 3x3x3 taps to 4s


@pytest.mark.parametrize("kind", ["RELU", "RELU6"])
def test_standalone_activation_bit_exact(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(900)
    b = ModelBuilder()
    x = b.tensor((1, 4, 4, 8), scale=0.05, zp=10)
    y = b.tensor((1, 4, 4, 8), scale=0.05, zp=10)
    b.op(kind, [x], [y])
    assert_bit_exact(b.build([x], [y]), (1, 4, 4, 8), tmp_path, rng)


def test_small_network_chain(tmp_path: Path) -> None:
    """conv -> depthwise (stride 2) -> avg pool -> reshape -> fully connected -> softmax, planned in place."""
    rng = np.random.default_rng(1000)
    b = ModelBuilder()
    x = b.tensor((1, 12, 12, 2), scale=0.02, zp=-3)
    s1 = random_scales(rng, 8)
    w1 = b.tensor((8, 3, 3, 2), scale=s1, data=rng.integers(-127, 128, size=(8, 3, 3, 2), dtype=np.int8))
    c1 = b.tensor((1, 12, 12, 8), scale=output_scale(0.02, s1, 18), zp=-128)
    b.op("CONV_2D", [x, w1, -1], [c1], "Conv2DOptions", padding=0, strideW=1, strideH=1, fusedActivationFunction=1)
    s2 = random_scales(rng, 8)
    w2 = b.tensor((1, 3, 3, 8), scale=s2, data=rng.integers(-127, 128, size=(1, 3, 3, 8), dtype=np.int8), qdim=3)
    c1_scale = output_scale(0.02, s1, 18)
    b2 = b.tensor((8,), "INT32", scale=[c1_scale * s for s in s2], data=np.arange(-400, 400, 100, dtype=np.int32))
    c2 = b.tensor((1, 6, 6, 8), scale=output_scale(c1_scale, s2, 9), zp=-128)
    b.op("DEPTHWISE_CONV_2D", [c1, w2, b2], [c2], "DepthwiseConv2DOptions", padding=0, strideW=2, strideH=2,
         depthMultiplier=1, fusedActivationFunction=3)
    c2_scale = output_scale(c1_scale, s2, 9)
    p = b.tensor((1, 3, 3, 8), scale=c2_scale, zp=-128)
    b.op("AVERAGE_POOL_2D", [c2], [p], "Pool2DOptions", padding=1, strideW=2, strideH=2, filterWidth=2,
         filterHeight=2)
    shp = b.tensor((2,), "INT32", data=np.array([1, 72], dtype=np.int32))
    r = b.tensor((1, 72), scale=c2_scale, zp=-128)
    b.op("RESHAPE", [p, shp], [r], "ReshapeOptions", newShape=[1, 72])
    s3 = random_scales(rng, 10)
    w3 = b.tensor((10, 72), scale=s3, data=rng.integers(-127, 128, size=(10, 72), dtype=np.int8))
    logits = b.tensor((1, 10), scale=output_scale(c2_scale, s3, 72) / 4, zp=0)
    b.op("FULLY_CONNECTED", [r, w3, -1], [logits], "FullyConnectedOptions")
    y = b.tensor((1, 10), scale=1.0 / 256, zp=-128)
    b.op("SOFTMAX", [logits], [y], "SoftmaxOptions", beta=1.0)
    result = assert_bit_exact(b.build([x], [y]), (1, 12, 12, 2), tmp_path, rng, n=10)
    # in place: the two biggest tensors (input 288 B, conv 1152 B) do not need 1440 B side by side
    scratch = sum(b["bytes"] for k, b in result.plan.to_dict()["buffers"].items() if k.startswith("scratch"))
    assert result.arena_bytes < 288 + 1152 + scratch  # the conv's working columns come on top of in-place planning
    assert result.plan.in_place


# ------------------------------------------------------------------ errors

def test_unsupported_operator_is_named(tmp_path: Path) -> None:
    b = ModelBuilder()
    x = b.tensor((1, 8), scale=0.1, zp=0)
    y = b.tensor((1, 8), scale=1.0 / 256, zp=-128)
    b.op("LOGISTIC", [x], [y])
    path = tmp_path / "m.tflite"
    path.write_bytes(b.build([x], [y]))
    with pytest.raises(EdgekdError, match="LOGISTIC"):
        generate_c(path, tmp_path / "c")


def test_float_model_and_non_tflite_are_refused(tmp_path: Path) -> None:
    b = ModelBuilder()
    x = b.tensor((1, 4), "FLOAT32")
    y = b.tensor((1, 4), "FLOAT32")
    b.op("RELU", [x], [y])
    path = tmp_path / "f.tflite"
    path.write_bytes(b.build([x], [y]))
    with pytest.raises(EdgekdError, match="int8"):
        generate_c(path, tmp_path / "c")
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not a model at all")
    with pytest.raises(EdgekdError, match="TFL3"):
        generate_c(bogus, tmp_path / "c2")


# ------------------------------------------------------------------ whole students

def _student_bit_exact(tflite: Path, tmp: Path, n: int) -> object:
    from edgekd.verify.tflm import run_tflm
    result = generate_c(tflite, tmp / "c")
    exe = compile_host(tmp / "c")
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(n, *result.input_shape[1:]), dtype=np.int8)
    ours = run_host(exe, x, result.output_size)
    ref = run_tflm(tflite, x, 1 << 20).outputs.reshape(n, -1)
    assert np.array_equal(ours, ref), f"{int((ours != ref).sum())} output bytes differ"
    return result


@pytest.mark.slow
def test_mcu_student_bit_exact_and_smaller_than_tflm(mcu_build: Path, tmp_path: Path) -> None:
    from edgekd.verify.tflm import min_arena
    tflite = mcu_build / "model_int8.tflite"
    result = _student_bit_exact(tflite, tmp_path, 200)
    assert result.arena_bytes + 1024 <= 0.6 * min_arena(tflite).min_arena_bytes


# ------------------------------------------------------------------ damaged .tflite files (issue 12)

def _fc_model(weight_bytes: bytes | None = None, op_input: int | None = None) -> bytes:
    """A valid one-layer int8 model; optionally with a wrongly sized weight buffer or an out-of-range input."""
    rng = np.random.default_rng(12)
    b = ModelBuilder()
    x = b.tensor((1, 8), scale=0.1, zp=0)
    w = b.tensor((4, 8), scale=[0.01] * 4, data=rng.integers(-127, 128, size=(4, 8), dtype=np.int8))
    if weight_bytes is not None:
        b.buffers[-1].data = np.frombuffer(weight_bytes, dtype=np.uint8)
    y = b.tensor((1, 4), scale=0.05, zp=0)
    b.op("FULLY_CONNECTED", [x if op_input is None else op_input, w, -1], [y], "FullyConnectedOptions")
    return b.build([x], [y])


def _damaged(kind: str) -> bytes:
    model = _fc_model()
    if kind == "empty":
        return b""
    if kind == "garbage":
        return np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    if kind == "garbage-with-TFL3":
        junk = bytearray(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
        junk[4:8] = b"TFL3"
        return bytes(junk)
    if kind == "not-TFL3":  # the same flatbuffer under another file identifier
        return model[:4] + b"ABCD" + model[8:]
    return model[: int(kind.removeprefix("cut-"))]


DAMAGE = ["empty", "garbage", "garbage-with-TFL3", "not-TFL3", "cut-6", "cut-16", "cut-40", "cut-100", "cut-300",
          "cut-590"]
DAMAGE_MESSAGE = {"empty": "empty file, not a valid .tflite flatbuffer",
                  "garbage": "not a valid .tflite flatbuffer (no TFL3 identifier at offset 4)",
                  "not-TFL3": "not a valid .tflite flatbuffer (no TFL3 identifier at offset 4)",
                  "cut-6": "not a valid .tflite flatbuffer (no TFL3 identifier at offset 4)"}


def _cli_one_line(args: list[str]) -> str:
    from click.testing import CliRunner

    from edgekd.cli import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, lines
    return lines[0].removeprefix("edgekd: error: ")


def test_the_undamaged_model_is_accepted(tmp_path: Path) -> None:
    assert len(_fc_model()) == 600  # the cut points above are inside it
    path = tmp_path / "ok.tflite"
    path.write_bytes(_fc_model())
    assert generate_c(path, tmp_path / "c").ops == ["FULLY_CONNECTED"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_tflite_is_one_line_from_codegen(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(_damaged(kind))
    expected = DAMAGE_MESSAGE.get(kind, "not a valid .tflite flatbuffer (truncated or corrupt)")
    with pytest.raises(EdgekdError) as info:
        generate_c(path, tmp_path / "c")
    assert str(info.value) == f"{path}: {expected}; pass the exported model_int8.tflite"
    assert _cli_one_line(["codegen", str(path), "--out", str(tmp_path / "c2"), "--check", "0"]) == str(info.value)


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_tflite_is_one_line_from_latency(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(_damaged(kind))
    message = _cli_one_line(["latency", "--target", "nrf52840-dk", str(path)])
    assert message.startswith(f"{path}: ") and "not a valid .tflite flatbuffer" in message


def test_flatbuffer_that_parses_but_points_outside_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.tflite"
    path.write_bytes(_fc_model(op_input=99))
    with pytest.raises(EdgekdError) as info:
        generate_c(path, tmp_path / "c")
    assert str(info.value) == (f"{path}: not a valid .tflite flatbuffer (truncated or corrupt): operator 0 uses "
                               "tensor 99 of 3; pass the exported model_int8.tflite")
    path = tmp_path / "short-weights.tflite"
    path.write_bytes(_fc_model(weight_bytes=bytes(31)))
    with pytest.raises(EdgekdError, match=r"constant tensor 1 holds 31 bytes, which do not fit its shape \(4, 8\)"):
        generate_c(path, tmp_path / "c")


def test_tflite_path_that_is_a_folder(tmp_path: Path) -> None:
    from edgekd.codegen.graph import load_graph

    with pytest.raises(EdgekdError, match=r"is a folder; pass a \.tflite file$"):
        load_graph(tmp_path)


@pytest.mark.parametrize("model", [{"op_input": 99}, {"weight_bytes": bytes(31)}])
def test_latency_refuses_a_flatbuffer_that_parses_but_is_inconsistent(tmp_path: Path, model: dict) -> None:
    path = tmp_path / "bad.tflite"
    path.write_bytes(_fc_model(**model))
    message = _cli_one_line(["latency", "--target", "nrf52840-dk", str(path)])
    assert message.startswith(f"{path}: not a valid .tflite flatbuffer (truncated or corrupt: ")


@pytest.mark.parametrize(("act", "out_scale_factor", "kernel"), [
    (0, 1.0, "ek_conv_mm_q8"),    # no activation, shifts negative: SMMULR requantization, SSAT clamp
    (3, 1.0, "ek_conv_mm_q"),     # RELU6: act_max below 127
    (1, 1e-3, "ek_conv_mm"),      # output scale so small the multipliers exceed one (left shifts): TFLite's path
])
def test_requantization_modes_bit_exact(tmp_path: Path, act: int, out_scale_factor: float, kernel: str) -> None:
    """The requantization kernel is chosen when the C is generated; every choice equals TFLite Micro."""
    rng = np.random.default_rng(1400 + act)
    b = ModelBuilder()
    x = b.tensor((1, 5, 6, 12), scale=0.03, zp=-7)
    s = random_scales(rng, 9)
    w = b.tensor((9, 3, 3, 12), scale=s, data=rng.integers(-127, 128, size=(9, 3, 3, 12), dtype=np.int8))
    bias = b.tensor((9,), "INT32", scale=[0.03 * v for v in s], data=rng.integers(-2000, 2000, 9).astype(np.int32))
    y = b.tensor((1, 5, 6, 9), scale=output_scale(0.03, s, 108) * out_scale_factor, zp=5)
    b.op("CONV_2D", [x, w, bias], [y], "Conv2DOptions", padding=0, strideW=1, strideH=1, fusedActivationFunction=act)
    result = assert_bit_exact(b.build([x], [y]), (1, 5, 6, 12), tmp_path, rng)
    assert f"{kernel}(&op0" in (result.out_dir / "model.c").read_text()


def test_matrix_product_layout_and_scratch(tmp_path: Path) -> None:
    """Filters are laid out offline (taps to a multiple of 4, odd channel counts padded with a zero filter) and
    the kernel's working columns are planned in the arena for its step only."""
    rng = np.random.default_rng(1401)
    model, shape = conv_model(rng, depthwise=False, cin=5, cout=7, k=3, stride=1, padding=0)
    result = assert_bit_exact(model, shape, tmp_path, rng)
    src = (result.out_dir / "model.c").read_text()
    assert "static const int8_t op0_filter[384]" in src  # 8 filters (7 + a zero one) x 48 taps (45 to 4s)
    # and the Helium layout under #if (8 rows: 7 + a zero one, of 48 taps: 45 to 16s), only one compiled
    assert "#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)" in src
    assert src.count("static const int8_t op0_filter[384]") == 2
    buffers = result.plan.to_dict()["buffers"]
    assert buffers["scratch0"]["bytes"] == 5 * 48 + 3 and buffers["scratch0"]["live"] == [0, 0]


def test_depthwise_layout_and_scratch(tmp_path: Path) -> None:
    """Depthwise, multiplier 1: channels padded to groups of 4 with zero weights (filter, per-channel tables) and
    the padded window of k_h input rows an output row reads planned in the arena for its step only."""
    import re

    rng = np.random.default_rng(1403)
    model, shape = conv_model(rng, depthwise=True, cin=6, mult=1, k=3, stride=1, padding=0)
    result = assert_bit_exact(model, shape, tmp_path, rng)
    src = (result.out_dir / "model.c").read_text()
    assert re.search(r"ek_dw_q8?\(&op0", src)
    assert "static const int8_t op0_filter[72]" in src and "static const int32_t op0_qp[16]" in src  # 8 lanes
    fields = dict(re.findall(r"\.(out_w|dil_w|stride_w) = (-?\d+)", src))
    span = (int(fields["out_w"]) - 1) * int(fields["stride_w"]) + 2 * int(fields["dil_w"]) + 1
    buffers = result.plan.to_dict()["buffers"]
    assert buffers["scratch0"]["bytes"] == 3 * span * 8 and buffers["scratch0"]["live"] == [0, 0]
    # the Helium filter (dilation 1 across, >= 16 window bytes a channel): one 9-tap row per channel, 8 rows,
    # under #if, same name
    assert src.count("static const int8_t op0_filter[72]") == 1 + (fields["dil_w"] == "1" and 3 * span >= 16)


def test_helium_filter_layouts() -> None:
    """layout.py's Helium layouts, value by value: the matrix product's [out_c / 4][k16 / 16][4][16] (zero taps
    past the filter, zero rows past out_c) and the depthwise [c4][k_h * k_w] rows with the taps in [k_w][k_h] order
    (the kernel window's), only for dilation 1 across and at most 16 taps."""
    from edgekd.codegen.layout import MVE_SUFFIX, dw_layout, mve_dw_filter, mve_filter

    rng = np.random.default_rng(1404)
    f = rng.integers(-127, 128, size=(5, 20), dtype=np.int8)
    laid = mve_filter(f).reshape(2, 2, 4, 16)
    assert np.array_equal(laid[0, 1, 2, :4], f[2, 16:]) and not laid[0, 1, 2, 4:].any()
    assert np.array_equal(laid[1, 0, 0], f[4, :16]) and not laid[1, :, 1:].any()
    d = rng.integers(-127, 128, size=(3, 2, 6), dtype=np.int8)  # [k_h][k_w][c]
    rows = mve_dw_filter(d).reshape(8, 6)
    assert list(rows[4]) == [d[0, 0, 4], d[1, 0, 4], d[2, 0, 4], d[0, 1, 4], d[1, 1, 4], d[2, 1, 4]]
    assert not rows[6:].any()
    args = (None, [1 << 30] * 6, [-5] * 6, 3, -128, 127)
    assert "filter" + MVE_SUFFIX in dw_layout(d, *args, 6)[2]  # span 6 x 3 rows: 18 window bytes a channel
    assert "filter" + MVE_SUFFIX not in dw_layout(d, *args, 6, dil_w=2)[2]
    assert "filter" + MVE_SUFFIX not in dw_layout(d, *args, 5)[2]  # 15 bytes: a load could leave the window


def test_kws_dscnn_bit_exact_on_the_host(tmp_path: Path) -> None:
    """Issue 14's keyword-spotting DS-CNN through the portable C (the DSP paths run on the boards:
    tests/test_cortex_m.py)."""
    from tflite_builder import kws_dscnn_model

    rng = np.random.default_rng(1402)
    result = assert_bit_exact(kws_dscnn_model(), (1, 49, 10, 1), tmp_path, rng, n=4)
    assert result.ops.count("CONV_2D") == 4 and "PAD" not in result.ops


def test_asm_coverage_defines_follow_the_layer_shapes(tmp_path: Path) -> None:
    """kernels.c starts with the mode-2 kernels the assembly covers in every layer, whether none clamps below
    -128, and the Helium coverage (out_c % 4, no dilation across, no 4-byte kernel rows, every depthwise on the
    Helium path), so a build drops the C leftovers its layers never run: all but EK_MM_NO_RUN4 for the KWS model
    (its first layer's kernel rows are 4 bytes), not EK_DW8_ASM for a 6-channel depthwise, not EK_MM4_MVE for a
    conv with 5 output channels."""
    from tflite_builder import kws_dscnn_model

    (tmp_path / "kws.tflite").write_bytes(kws_dscnn_model())
    generate_c(tmp_path / "kws.tflite", tmp_path / "kws")
    head = (tmp_path / "kws" / "kernels.c").read_text().splitlines()[:7]
    assert [line.split()[1] for line in head[:6]] == [
        "EK_MM8_ASM", "EK_DW8_ASM", "EK_Q8_NO_LO", "EK_MM4_MVE", "EK_MM_DIL1", "EK_DW_MVE_ALL"]
    assert all(line.startswith("#define") and line.split()[2] == "1" for line in head[:6])
    assert not head[6].startswith("#define")
    model, _ = conv_model(np.random.default_rng(1405), depthwise=True, cin=6, mult=1, k=3, stride=1, padding=1)
    (tmp_path / "dw6.tflite").write_bytes(model)
    generate_c(tmp_path / "dw6.tflite", tmp_path / "dw6")
    assert "ek_dw_q8(&op0" in (tmp_path / "dw6" / "model.c").read_text()
    assert "EK_DW8_ASM 1" not in (tmp_path / "dw6" / "kernels.c").read_text()
    model, _ = conv_model(np.random.default_rng(1406), depthwise=False, cin=3, cout=5, k=3, stride=1, padding=1)
    (tmp_path / "c5.tflite").write_bytes(model)
    generate_c(tmp_path / "c5.tflite", tmp_path / "c5")
    text = (tmp_path / "c5" / "kernels.c").read_text()
    assert "ek_conv_mm_q" in (tmp_path / "c5" / "model.c").read_text()
    assert "EK_MM4_MVE 1" not in text and "EK_MM_NO_RUN4 1" in text and "EK_MM_DIL1 1" in text


def test_small_kernels_option_is_recorded_and_deterministic(tmp_path: Path) -> None:
    """``generate_c(small=True)`` (flash over speed) marks kernels.c with EK_SMALL, records it in codegen.json,
    gives the same bytes twice and the same outputs as the default (host build: the portable C either way)."""
    import json

    rng = np.random.default_rng(1404)
    model, shape = conv_model(rng, depthwise=True, cin=6, mult=1, k=3, stride=1, padding=1)
    (tmp_path / "m.tflite").write_bytes(model)
    x = rng.integers(-128, 128, size=(3, *shape[1:]), dtype=np.int8)
    outs = []
    for name, small in (("a", True), ("b", True), ("fast", False)):
        result = generate_c(tmp_path / "m.tflite", tmp_path / name, small=small)
        outs.append(run_host(compile_host(tmp_path / name), x, result.output_size))
        assert json.loads((tmp_path / name / "codegen.json").read_text())["small"] is small
    assert (tmp_path / "a" / "kernels.c").read_text().startswith("#define EK_SMALL 1")
    assert "EK_SMALL 1" not in (tmp_path / "fast" / "kernels.c").read_text().splitlines()[0]
    for f in ("kernels.c", "model.c", "codegen.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    np.testing.assert_array_equal(outs[0], tflm_outputs(model, x))
    np.testing.assert_array_equal(outs[2], outs[0])
