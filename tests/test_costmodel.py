"""Cost model: hand-computed figures on small modules, the PAD / TRANSPOSE / fusion rules, the arena planner,
the latency estimate, and (slow) the predictions against converted .tflite files run in TFLite Micro."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekd import costmodel
from edgekd.costmodel import (
    TFLITE_PER_CHANNEL_BYTES,
    TFLITE_PER_OP_BYTES,
    TFLITE_PER_TENSOR_BYTES,
    TFLM_EVAL_TENSOR_BYTES,
    TFLM_FIXED_BYTES,
    TFLM_IO_TENSOR_BYTES,
    TFLM_NODE_BYTES,
    TFLM_OP_DATA_BYTES,
    TFLM_PREPARE_TEMP_BYTES,
    _Buffer,
    analyze,
    estimate_latency,
    needs_pad_op,
    plan_arena,
    tflite_same_padding,
)
from edgekd.errors import EdgekdError
from edgekd.targets import load_target

ROOT = Path(__file__).resolve().parent.parent
MAX_FIT_ERR_PCT = 30.0  # per class, per core: the worst single-layer case of scripts/calibrate_costs.py


def ops(report: costmodel.CostReport) -> list[str]:
    return [layer.op for layer in report.layers]


def conv_bn_relu(cin: int = 3, cout: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class MeanHead(nn.Module):
    """Conv then ``x.mean((2, 3))``: the converter keeps NCHW order for the mean, so it transposes first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


class PoolHead(MeanHead):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.conv(x), 1).flatten(1))


class FlattenHead(nn.Module):
    def __init__(self, cout: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, cout, 3, padding=1)
        self.fc = nn.Linear(cout * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


# ---------------------------------------------------------------- hand-computed figures

def test_conv_bn_relu_figures_by_hand():
    model = conv_bn_relu()
    r = analyze(model, (3, 8, 8))
    assert ops(r) == ["CONV_2D"]  # BN folded into the conv, ReLU fused: one operator
    conv = r.layers[0]
    weights = 8 * 3 * 3 * 3
    assert conv.params == weights + 8 == 224
    assert r.params == sum(p.numel() for p in model.parameters()) == 224 + 16  # the PyTorch count (BN's affine)
    assert conv.macs == r.macs == 8 * 8 * 8 * 3 * 9 == 13824
    assert r.int8_weight_bytes == weights + 4 * 8 == 248  # int8 weights + int32 bias per output channel
    assert r.fp32_weight_bytes == 4 * (weights + 8) == 896
    assert conv.output_shape == (1, 8, 8, 8) and conv.output_bytes == 512 and conv.channels == 8
    # input (192 B) and output (512 B) are alive together; both are multiples of 16
    assert r.activation_bytes == 192 + 512
    tensors = 2 + 2  # input and output activations, weights and bias
    assert r.tflite_bytes == (248 + TFLITE_PER_TENSOR_BYTES * tensors + TFLITE_PER_OP_BYTES * 1
                              + TFLITE_PER_CHANNEL_BYTES * 8) == 1501
    overhead = (TFLM_FIXED_BYTES + TFLM_IO_TENSOR_BYTES + TFLM_EVAL_TENSOR_BYTES * tensors + TFLM_NODE_BYTES
                + TFLM_OP_DATA_BYTES["CONV_2D"] + 2 * 32)  # int32 multiplier + shift per channel
    assert r.overhead_bytes == overhead
    assert r.arena_bytes == max(704, TFLM_PREPARE_TEMP_BYTES) + overhead == 1802
    assert r.model_bytes == r.tflite_bytes and r.dtype == "int8" and r.input_shape == (3, 8, 8)

    f = analyze(model, (3, 8, 8), dtype="fp32")
    assert f.activation_bytes == 4 * (192 + 512)
    assert (f.params, f.macs, f.fp32_weight_bytes) == (r.params, r.macs, 896)
    assert f.model_bytes == f.fp32_weight_bytes + f.tflite_bytes - f.int8_weight_bytes


def test_report_serialises_with_ops_and_model_bytes():
    d = analyze(conv_bn_relu(), (3, 8, 8)).to_dict()
    assert d["ops"] == ["CONV_2D"] and d["model_bytes"] == d["tflite_bytes"] == 1501
    assert d["layers"][0]["macs"] == 13824
    table = analyze(conv_bn_relu(), (3, 8, 8)).table().splitlines()
    assert len(table) == 2 and "CONV_2D" in table[1] and "13824" in table[1]


def test_linear_mlp_figures_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    r = analyze(model, (1, 8, 8), channels_last_input=False)
    assert ops(r) == ["RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED"]  # ReLU fused into the first FC
    assert r.params == 64 * 32 + 32 + 32 * 10 + 10 == 2410
    assert r.macs == 64 * 32 + 32 * 10 == 2368
    assert r.int8_weight_bytes == (64 * 32 + 4 * 32) + (32 * 10 + 4 * 10) == 2536
    assert r.fp32_weight_bytes == 4 * 2410
    assert [ly.output_shape for ly in r.layers] == [(1, 64), (1, 32), (1, 10)]
    # input 64 and its reshaped copy 64 alive at op 0; then 32 and 16 (10 aligned) reuse the first slot
    assert r.activation_bytes == 128


def test_bias_free_linear_converts_without_a_bias_tensor():
    r = analyze(nn.Linear(64, 32, bias=False), (64,), channels_last_input=False)
    assert ops(r) == ["FULLY_CONNECTED"] and r.int8_weight_bytes == 64 * 32 and r.params == 64 * 32
    # tensors: input, output and the weights (no int32 bias), as litert-torch writes a bias-free projection
    assert r.tflite_bytes == 64 * 32 + 3 * TFLITE_PER_TENSOR_BYTES + TFLITE_PER_OP_BYTES + 32 * TFLITE_PER_CHANNEL_BYTES


def test_depthwise_conv_is_depthwise():
    r = analyze(nn.Conv2d(8, 8, 3, padding=1, groups=8), (8, 8, 8))
    assert ops(r) == ["DEPTHWISE_CONV_2D"]
    assert (r.params, r.macs, r.int8_weight_bytes) == (8 * 9 + 8, 8 * 8 * 8 * 9, 8 * 9 + 4 * 8)
    mult = analyze(nn.Conv2d(4, 8, 3, padding=1, groups=4), (4, 8, 8))  # depth multiplier 2
    assert ops(mult) == ["DEPTHWISE_CONV_2D"] and mult.macs == 8 * 8 * 8 * 9


def test_single_input_channel_conv_becomes_depthwise():
    r = analyze(nn.Conv2d(1, 4, 3, padding=1), (1, 8, 8))
    assert ops(r) == ["DEPTHWISE_CONV_2D"]
    assert (r.params, r.macs) == (4 * 9 + 4, 8 * 8 * 4 * 9)


def test_unfusable_relu_and_standalone_batchnorm_are_their_own_ops():
    class TwoUsers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return torch.relu(y) + y  # the conv output has two readers: ReLU cannot fuse

    assert ops(analyze(TwoUsers(), (2, 4, 4))) == ["CONV_2D", "RELU", "ADD"]
    assert ops(analyze(nn.BatchNorm2d(2), (2, 4, 4))) == ["MUL", "ADD"]  # nothing to fold into


# ---------------------------------------------------------------- PAD rules

@pytest.mark.parametrize(("size", "kernel", "stride", "dilation", "same"), [
    (28, 3, 2, 1, (0, 1)),  # even size, stride 2: SAME pads only after
    (13, 3, 2, 1, (1, 1)),
    (28, 3, 1, 1, (1, 1)),
    (28, 5, 1, 1, (2, 2)),
    (10, 3, 1, 2, (2, 2)),  # dilation 2: effective kernel 5
    (8, 1, 1, 1, (0, 0)),
])
def test_tflite_same_padding(size, kernel, stride, dilation, same):
    assert tflite_same_padding(size, kernel, stride, dilation) == same


@pytest.mark.parametrize(("size", "kernel", "stride", "pad", "expected"), [
    (28, 3, 2, 1, True),  # PyTorch pads (1, 1), SAME would pad (0, 1)
    (13, 3, 2, 1, False),
    (28, 3, 1, 1, False),
    (28, 3, 2, 0, False),  # VALID
    (28, 5, 1, 1, True),  # SAME would pad 2
    (28, 3, 1, 2, True),
])
def test_needs_pad_op(size, kernel, stride, pad, expected):
    assert needs_pad_op(size, kernel, stride, pad) is expected


def test_stride2_padding1_on_even_input_gets_a_pad_layer():
    r = analyze(nn.Conv2d(4, 8, 3, stride=2, padding=1), (4, 28, 28))
    assert ops(r) == ["PAD", "CONV_2D"]
    pad, conv = r.layers
    assert pad.output_shape == (1, 4, 30, 30) and pad.output_bytes == 30 * 30 * 4  # a 30x30x4 padded copy
    assert conv.output_shape == (1, 8, 14, 14)
    assert r.activation_bytes == 28 * 28 * 4 + 30 * 30 * 4  # input and padded copy alive together

    odd = analyze(nn.Conv2d(4, 8, 3, stride=2, padding=1), (4, 13, 13))
    assert ops(odd) == ["CONV_2D"] and odd.layers[0].output_shape == (1, 8, 7, 7)
    valid = analyze(nn.Conv2d(4, 8, 3, stride=2, padding=0), (4, 28, 28))
    assert ops(valid) == ["CONV_2D"] and valid.layers[0].output_shape == (1, 8, 13, 13)


# ---------------------------------------------------------------- TRANSPOSE rules

def test_mean_over_hw_costs_a_transpose_adaptive_pool_does_not():
    mean = analyze(MeanHead(), (2, 8, 8))
    assert ops(mean) == ["CONV_2D", "TRANSPOSE", "MEAN", "FULLY_CONNECTED"]
    assert mean.layers[1].output_bytes == 8 * 8 * 8
    pool = analyze(PoolHead(), (2, 8, 8))
    assert ops(pool) == ["CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert mean.macs - pool.macs == 0  # the transpose moves bytes, it does no MACs
    assert mean.activation_bytes > pool.activation_bytes


def test_flatten_of_feature_map_costs_transpose_and_reshape():
    assert ops(analyze(FlattenHead(8), (2, 8, 8))) == ["CONV_2D", "TRANSPOSE", "RESHAPE", "FULLY_CONNECTED"]
    # one channel: NHWC and NCHW orders agree, no transpose
    assert ops(analyze(FlattenHead(1), (2, 8, 8))) == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]


def test_channels_first_input_fed_to_conv_costs_a_transpose():
    r = analyze(nn.Conv2d(2, 4, 3, padding=1), (2, 8, 8), channels_last_input=False)
    assert ops(r) == ["TRANSPOSE", "CONV_2D"]
    assert ops(analyze(nn.Conv2d(2, 4, 3, padding=1), (2, 8, 8))) == ["CONV_2D"]


# ---------------------------------------------------------------- arena planner

def test_plan_arena_chain_of_three():
    # in (100 B) -> op0 -> a (200 B) -> op1 -> out (50 B)
    bufs = [_Buffer(100, -1, 0), _Buffer(200, 0, 1), _Buffer(50, 1, 2)]
    # a at 0 (208 aligned), in next to it at 208 (112 aligned); out reuses in's slot at 208
    assert plan_arena(bufs) == 208 + 112 == 320
    assert [b.offset for b in bufs] == [208, 0, 208]


def test_plan_arena_aligns_to_16_bytes():
    assert plan_arena([_Buffer(1, -1, 0)]) == 16
    assert plan_arena([_Buffer(10, -1, 0), _Buffer(5, 0, 1)]) == 32
    assert plan_arena([_Buffer(33, -1, 0), _Buffer(33, 1, 2)]) == 48  # not alive together: one slot
    assert plan_arena([]) == 0


def test_plan_arena_residual_equal_sizes_descending_order_needs_four_slots():
    # two residual blocks, every activation 64 bytes:
    # op0 conv(x0)->x1, op1 conv(x1)->x2, op2 add(x2, x0)->x3, op3 conv(x3)->x4, op4 conv(x4)->x5,
    # op5 add(x5, x3)->x6, op6 reads x6. At most 3 are alive at once, but TFLite Micro places equal sizes in
    # descending tensor order (x6 first), which ends with x0 needing a fourth slot.
    spans = [(-1, 2), (0, 1), (1, 2), (2, 5), (3, 4), (4, 5), (5, 6)]
    bufs = [_Buffer(64, first, last) for first, last in spans]
    assert plan_arena(bufs) == 4 * 64
    assert [b.offset for b in bufs] == [192, 64, 0, 128, 0, 64, 0]
    # the same lifetimes in ascending order need only three slots: the order is what costs the fourth
    reversed_ids = [_Buffer(64, first, last) for first, last in reversed(spans)]
    assert plan_arena(reversed_ids) == 3 * 64


# ---------------------------------------------------------------- latency

def tflm_only(name: str):
    """The profile with TFLite Micro as its only runtime: the estimate uses the profile's MAC rate."""
    return dataclasses.replace(load_target(name), runtimes=("tflm",))


def test_latency_on_nrf52840_equals_the_hand_formula():
    target = tflm_only("nrf52840-dk")
    r = analyze(nn.Conv2d(4, 8, 3, stride=2, padding=1), (4, 28, 28))  # PAD (0 MACs) + CONV_2D
    hz = 64e6
    pad_s = 30 * 30 * 4 / hz  # one cycle per byte moved
    conv_s = 8 * 14 * 14 * 4 * 9 / (0.23 * hz * 1)
    expected = (pad_s + conv_s + 2 * 30e-6) * 1e3  # + 30 us per operator
    lat = estimate_latency(r, target)
    assert lat.ms == pytest.approx(expected, abs=1e-4)
    assert lat.floor_ms == pytest.approx(8 * 14 * 14 * 4 * 9 / (2.0 * hz) * 1e3, abs=1e-4)
    assert lat.kind == "estimated" and lat.to_dict()["kind"] == "estimated"
    assert "nrf52840-dk" in lat.method and "0.23" in lat.method
    assert r.latency(target) == lat


def test_latency_uses_fp32_rates_for_fp32_reports():
    target = load_target("nrf52840-dk")  # the generated C is int8: fp32 keeps the profile rate on any runtime
    r = analyze(nn.Linear(64, 32), (64,), dtype="fp32", channels_last_input=False)
    assert estimate_latency(r, target).ms == pytest.approx((64 * 32 / (0.1 * 64e6) + 30e-6) * 1e3, abs=1e-4)


def test_latency_never_below_the_peak_rate_floor():
    nrf = tflm_only("nrf52840-dk")
    r = analyze(conv_bn_relu(), (3, 8, 8))
    tp = nrf.throughput
    at_peak = dataclasses.replace(nrf, throughput=dataclasses.replace(
        tp, int8_macs_per_cycle=tp.peak_int8_macs_per_cycle, op_overhead_us=0.0))
    lat = estimate_latency(r, at_peak)
    floor = 13824 / (2.0 * 64e6) * 1e3
    assert lat.floor_ms == pytest.approx(floor, abs=1e-4)
    assert lat.ms >= lat.floor_ms and lat.ms == pytest.approx(floor, abs=1e-4)
    # a (bogus) sustained rate above peak cannot push the estimate under the physical floor
    bogus = dataclasses.replace(nrf, throughput=dataclasses.replace(
        tp, int8_macs_per_cycle=100 * tp.peak_int8_macs_per_cycle, op_overhead_us=0.0))
    assert estimate_latency(r, bogus).ms == pytest.approx(floor, abs=1e-4)
    # more threads divide both the estimate and the floor
    four = dataclasses.replace(at_peak, throughput=dataclasses.replace(at_peak.throughput, threads=4))
    assert estimate_latency(r, four).floor_ms == pytest.approx(floor / 4, abs=1e-4)


def fitted(core: str, klass: str, features: list[float]) -> float:
    coef = costmodel.mcu_calibration()["cores"][core]["classes"][klass]["coef"]
    return sum(a * f for a, f in zip(coef, features, strict=True))


def test_mcu_running_the_generated_c_sums_calibrated_per_operator_cycles():
    nrf = load_target("nrf52840-dk")
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
    r = analyze(model, (1, 8, 8))
    assert ops(r) == ["DEPTHWISE_CONV_2D", "CONV_2D"]
    assert [(ly.kernel, ly.stride, ly.in_channels, ly.input_elems) for ly in r.layers] == [(9, 1, 1, 64),
                                                                                         (9, 1, 8, 512)]
    # the stem: a matrix product of 9 taps padded to 12, 8 channels, 64 pixels
    stem = fitted("cortex-m4", "stem", [64 * 12 * 8, 64 * 8, 64 * 12, 64, 1])
    conv = fitted("cortex-m4", "conv", [64 * 72 * 16, 64 * 16, 64 * 72, 64, 1])
    a, b = costmodel.mcu_calibration()["cores"]["cortex-m4"]["invoke"]
    cycles = a + b * (64 + 16 * 64) + stem + conv
    lat = estimate_latency(r, nrf)
    assert lat.ms == pytest.approx(cycles / 64e3, abs=1e-3)
    assert "calibrated" in lat.method and "cortex-m4" in lat.method and "mcu_cycles.json" in lat.method
    assert lat.ms != pytest.approx(estimate_latency(r, tflm_only("nrf52840-dk")).ms, rel=0.01)
    assert lat.floor_ms == estimate_latency(r, tflm_only("nrf52840-dk")).floor_ms  # the peak floor stays


def test_targets_without_a_cycle_fit_keep_the_profile_rate():
    r = analyze(conv_bn_relu(), (3, 8, 8))
    for name in ("raspberry-pi-4b", "google-pixel-8", "esp32-s3-devkitc-1"):  # Linux targets; Xtensa: no fit
        lat = estimate_latency(r, load_target(name))
        assert "calibrated" not in lat.method and "MACs/cycle" in lat.method, name


def test_layers_without_shapes_keep_the_profile_rate():
    """Layers read from a .tflite by edgekd.latency carry MACs but no kernel shape: no per-operator fit applies."""
    bare = [dataclasses.replace(ly, kernel=0, in_channels=0) for ly in analyze(conv_bn_relu(), (3, 8, 8)).layers]
    r = costmodel.CostReport((), "int8", 0, sum(ly.macs for ly in bare), 0, 0, 0, 0, 0, 0, bare)
    nrf = load_target("nrf52840-dk")
    assert estimate_latency(r, nrf) == estimate_latency(r, tflm_only("nrf52840-dk"))


def test_folded_pad_and_reshape_cost_nothing_in_the_generated_c():
    r = analyze(nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(8, 10)), (4, 28, 28))
    assert ops(r) == ["PAD", "CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert costmodel.mcu_layer_features(r.layers[0], folded=True) == ("free", [])
    assert costmodel.mcu_layer_features(r.layers[0]) == ("pad", [30 * 30 * 4, 1.0])
    assert [costmodel.mcu_layer_features(ly)[0] for ly in r.layers[1:]] == ["conv_tail", "mean", "fc"]
    reshape = costmodel.Layer(0, "RESHAPE", "r", (1, 10), 10)
    assert costmodel.mcu_layer_features(reshape) == ("free", [])


def test_calibration_file_is_the_fit_of_the_counts_it_holds():
    """edgekd/costdata/mcu_cycles.json: per core, every counted case, and its fit reproduces from those counts."""
    import copy
    import importlib.util

    spec = importlib.util.spec_from_file_location("calibrate_costs", ROOT / "scripts" / "calibrate_costs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = costmodel.mcu_calibration()
    assert {"cortex-m4", "cortex-m7", "cortex-m0plus"} <= set(data["cores"])
    again = script.refit(copy.deepcopy(data))
    for core, entry in data["cores"].items():
        assert again["cores"][core]["classes"] == entry["classes"], core
        assert entry["cases"] == len(entry["counted"]) and entry["counter"]
        for klass, fit in entry["classes"].items():
            assert fit["max_abs_err_pct"] <= MAX_FIT_ERR_PCT, (core, klass, fit)


def test_wide_depthwise_and_wide_conv_cases_are_fitted_on_every_core():
    """Issue 14: 7x7 / 5x5 depthwise (the kernel-7 mbv2 students were estimated 35-46% low when the dw class had
    two 5x5 cases) and 128-channel convs on 3x3 / 4x4 maps (17.5% low on the M55) are counted on every core, and
    the fit charges each within 5% of its count (M55 7x7: 4%; one dw3x3s1 M4 case stays at 13.5%)."""
    for core, entry in costmodel.mcu_calibration()["cores"].items():
        rows = {r["case"]: r for r in entry["counted"]}
        wide = [r for name, r in rows.items() if name.startswith(("dw7x7", "dw5x5"))]
        assert len([r for r in wide if r["case"].startswith("dw7x7")]) >= 9 and len(wide) >= 15, core
        assert all(r["class"] == "dw" and abs(r["err_pct"]) <= 5.0 for r in wide), (core, wide)
        for name in ("conv3x3 128->128 3x3", "conv3x3 128->128 4x4", "conv3x3 s2 64->128 6x6"):
            assert abs(rows[name]["err_pct"]) <= 5.0, (core, rows[name])


# ---------------------------------------------------------------- what cannot be lowered or exported

def test_text_students_on_cortex_a_charge_the_counted_xnnpack_fit_and_image_models_keep_the_profile_rate():
    from edgekd.emulate.timing_a import threads_ms
    from edgekd.students import StudentConfig, build_student

    zero = load_target("raspberry-pi-zero-2-w")
    fit = costmodel.cortex_a_text_calibration()["cores"]["cortex-a53"]
    assert len(fit["coef"]) == len(costmodel.CORTEX_A_TEXT_FEATURES) and fit["max_abs_err_pct"] < 10
    torch.manual_seed(0)
    phone = build_student(StudentConfig("text_conv", {"embed": 128, "width": 256, "depth": 2, "kernel": 5,
                                                      "buckets": None}), (32,), 384)
    r = analyze(phone, (32,), "int8")
    feats = [costmodel.cortex_a_text_features(ly) for ly in r.layers]
    assert [ly.op for ly, f in zip(r.layers, feats, strict=True) if any(f)] == ["CONV_2D", "CONV_2D", "MEAN",
                                                                                "FULLY_CONNECTED"]
    total = [sum(col) for col in zip(*feats, strict=True)][:-1] + [1.0]
    one = sum(c * f for c, f in zip(fit["coef"], total, strict=True)) / 1e6  # cycles at 1,000 MHz -> ms
    lat = estimate_latency(r, zero)
    assert lat.ms == pytest.approx(threads_ms(one, 4, 4, 1000.0), abs=1e-3)
    assert "counted on the emulated cortex-a53" in lat.method and f"{one:.3f} ms on 1 thread" in lat.method
    # image models on the same core, and text operators the fit does not cover, keep the profile rate
    image = analyze(conv_bn_relu(), (3, 8, 8))
    tp = zero.throughput
    hand = (13824 / (tp.int8_macs_per_cycle * 1e9 * 4) + tp.op_overhead_us * 1e-6) * 1e3
    assert estimate_latency(image, zero).ms == pytest.approx(hand, abs=1e-4)
    tx = build_student(StudentConfig("text_transformer", {"width": 64, "layers": 1, "heads": 2, "ffn": 2,
                                                          "buckets": 4096}), (32,), 384)
    assert "MACs at" in estimate_latency(analyze(tx, (32,), "int8"), zero).method


def test_unsupported_ops_are_reported_not_dropped():
    class Sorter(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sort(x.flatten(1), dim=1)[0]

    sorted_ops = ops(analyze(Sorter(), (1, 8, 8), channels_last_input=False))
    assert sorted_ops[0] == "RESHAPE" and sorted_ops[1].startswith("UNSUPPORTED:") and "sort" in sorted_ops[1]
    grouped = analyze(nn.Conv2d(4, 8, 3, padding=1, groups=2), (4, 8, 8))
    assert ops(grouped) == ["UNSUPPORTED:grouped conv (groups=2)"]
    assert grouped.macs == 8 * 8 * 8 * 2 * 9  # still costed: cin/groups inputs per output
    assert grouped.ops == ["UNSUPPORTED:grouped conv (groups=2)"]
    assert analyze(nn.AdaptiveAvgPool2d(2), (4, 8, 8)).ops[0].startswith("UNSUPPORTED:")


def test_model_that_cannot_be_exported_is_one_clear_error():
    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow: torch.export cannot capture it
                return x * 2
            return x

    with pytest.raises(EdgekdError, match=r"cannot be exported with torch.export for input \(1, 4, 4\)") as info:
        analyze(DataDependent(), (1, 4, 4))
    assert "\n" not in str(info.value)
    with pytest.raises(EdgekdError, match="dtype must be 'int8' or 'fp32'"):
        analyze(conv_bn_relu(), (3, 8, 8), dtype="int4")


def test_analyze_leaves_the_training_mode_alone():
    """Costing a student mid-training must not switch its dropout/BatchNorm to eval mode behind the caller.

    Bug: export_graph() calls ``model.eval()`` in place (edgekd/costmodel.py, export_graph).
    """
    model = conv_bn_relu().train()
    analyze(model, (3, 8, 8))
    assert model.training, "analyze() switched the caller's model to eval mode"
    assert all(m.training for m in model.modules())


# ---------------------------------------------------------------- against reality (slow)

class ByHandNet(nn.Module):
    """Written the naive way: padding=1 stride 2 on 28x28 (PAD) and x.mean((2, 3)) (TRANSPOSE)."""

    def __init__(self, w: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                 nn.Conv2d(w, w, 3, 1, 1, groups=w, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                 nn.Conv2d(w, 2 * w, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU())
        self.fc = nn.Linear(2 * w, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x).mean((2, 3)))


REALITY = [
    ("dscnn", {"width": 16, "depth": 4, "resolution": None}, (1, 28, 28)),
    ("resnet", {"width": 8, "depth": 1, "stages": 2, "resolution": None}, (1, 8, 8)),
    ("cnn1d", {"width": 16, "depth": 2, "kernel": 5}, (6, 100)),
    ("mlp", {"width": 32, "depth": 1}, (1, 8, 8)),
    ("by-hand", {}, (1, 28, 28)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("family", "params", "task_shape"), REALITY, ids=[c[0] for c in REALITY])
def test_predictions_match_converted_tflite_and_tflite_micro(family, params, task_shape, tmp_path: Path):
    from edgekd.export.tflite import export_tflite_int8
    from edgekd.students import StudentConfig, build_student, model_input_shape
    from edgekd.verify.tflm import min_arena

    torch.manual_seed(0)
    if family == "by-hand":
        model, shape, channels_last = ByHandNet().eval(), task_shape, True
    else:
        model = build_student(StudentConfig(family, params), task_shape, 10).eval()
        shape, channels_last = model_input_shape(model), model.channels_last_input
    predicted = analyze(model, shape, "int8", channels_last_input=channels_last)
    calib = np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32)
    artifact = export_tflite_int8(model, shape, calib, tmp_path / f"{family}.tflite", channels_last=channels_last)

    assert ops(predicted) == artifact.graph.ops
    assert artifact.graph.float_islands == [] and artifact.graph.fully_integer
    if family == "by-hand":
        assert ops(predicted)[0] == "PAD" and "TRANSPOSE" in ops(predicted)  # the rules, confirmed by litert
    assert artifact.bytes == pytest.approx(predicted.tflite_bytes, rel=0.15)

    measured = min_arena(artifact.path, upper=1 << 16)
    assert measured.min_arena_bytes == pytest.approx(predicted.arena_bytes, rel=0.15)
    # the activation plan itself is TFLite Micro's greedy planner, byte for byte
    assert predicted.activation_bytes == measured.head_bytes
