"""TFLite's quantization parameter arithmetic, done in Python exactly as TFLite Micro's Prepare does it.

Multipliers and shifts are computed here once and emitted as constants (flash), so the device never runs
``frexp`` and the integer results match the interpreter bit for bit. Python floats are IEEE doubles, like the
``double`` math in TFLite; where TFLite computes in ``float`` we round through ``np.float32``.
"""

from __future__ import annotations

import math

import numpy as np

from edgekd.errors import EdgekdError

INT8_MIN, INT8_MAX = -128, 127


def tflite_round(x: float) -> int:
    """``std::round``: halves away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: ``m ~= q * 2**(shift - 31)`` with ``q`` a Q31 int32."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multiplier_smaller_than_one(m: float) -> tuple[int, int]:
    if not 0.0 < m < 1.0:
        raise EdgekdError(f"rescale factor {m} is outside (0, 1): the op's input and output scales are inconsistent; "
                          "re-export the model")
    return quantize_multiplier(m)


def f32(x: float) -> np.float32:
    return np.float32(x)


def quantize_float(value: float, scale: float, zero_point: int) -> int:
    """``zero_point + round(value / scale)`` in float32, as TFLite's activation-range helper does."""
    return zero_point + tflite_round(float(f32(value) / f32(scale)))


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized`` for an int8 output (fused NONE / RELU / RELU_N1_TO_1 / RELU6)."""
    if activation == 0:
        return INT8_MIN, INT8_MAX
    if activation == 1:
        return max(INT8_MIN, quantize_float(0.0, scale, zero_point)), INT8_MAX
    if activation == 2:
        return (max(INT8_MIN, quantize_float(-1.0, scale, zero_point)),
                min(INT8_MAX, quantize_float(1.0, scale, zero_point)))
    if activation == 3:
        return (max(INT8_MIN, quantize_float(0.0, scale, zero_point)),
                min(INT8_MAX, quantize_float(6.0, scale, zero_point)))
    names = {4: "TANH", 5: "SIGN_BIT"}
    raise EdgekdError(f"fused activation {names.get(activation, activation)} is not supported by edgekd-c "
                      "(NONE, RELU, RELU_N1_TO_1, RELU6 are)")


def conv_multipliers(input_scale: float, filter_scales: tuple[float, ...], output_scale: float,
                     channels: int) -> tuple[list[int], list[int]]:
    """Per-channel (or broadcast per-tensor) multipliers as ``PopulateConvolutionQuantizationParams`` makes them."""
    if len(filter_scales) not in (1, channels):
        raise EdgekdError(f"filter has {len(filter_scales)} scales for {channels} output channels; "
                          "expected per-tensor or per-output-channel quantization")
    mults, shifts = [], []
    for c in range(channels):
        fs = filter_scales[c if len(filter_scales) > 1 else 0]
        m, s = quantize_multiplier(input_scale * fs / output_scale)
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def mean_multiplier(input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """``QuantizedMeanOrSum``: the input/output rescale with 1/count folded in (integer math)."""
    mult, shift = quantize_multiplier(input_scale / output_scale)
    extra = min(count.bit_length() - 1, 32, 31 + shift)
    mult = _trunc_div(mult << extra, count)
    return mult, shift - extra


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """``PreprocessSoftmaxScaling`` (5 integer bits) and ``CalculateInputRadius`` -> (mult, left_shift, diff_min)."""
    real = min(beta * input_scale * (1 << 26), float((1 << 31) - 1))
    if real <= 1.0:
        raise EdgekdError(f"softmax beta*scale {beta * input_scale} is too small for TFLite's int8 softmax")
    mult, shift = quantize_multiplier(real)
    radius = math.floor(1.0 * ((1 << 5) - 1) * (1 << 26) / (1 << shift))
    return mult, shift, -radius


def add_params(s1: float, s2: float, s_out: float, left_shift: int = 20) -> dict[str, int]:
    """int8 ADD rescaling (``left_shift`` 20), as TFLite Micro's add Prepare computes it."""
    twice_max = 2 * max(s1, s2)
    m1, sh1 = quantize_multiplier_smaller_than_one(s1 / twice_max)
    m2, sh2 = quantize_multiplier_smaller_than_one(s2 / twice_max)
    mo, sho = quantize_multiplier_smaller_than_one(twice_max / ((1 << left_shift) * s_out))
    return {"in1_mult": m1, "in1_shift": sh1, "in2_mult": m2, "in2_shift": sh2, "out_mult": mo, "out_shift": sho,
            "left_shift": left_shift}
