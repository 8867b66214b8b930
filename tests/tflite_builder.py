"""Shared by tests/test_codegen.py and tests/test_cortex_m.py: int8 .tflite models written directly with the
flatbuffer object API (random weights, per-channel scales, zero points, activations, strides and paddings), so
each case builds in milliseconds, and TFLite Micro's reference outputs for them."""

from __future__ import annotations

import flatbuffers
import numpy as np


class ModelBuilder:
    """A tiny graph writer over LiteRT's schema object API (single subgraph, int8 activations)."""

    def __init__(self) -> None:
        from ai_edge_litert import schema_py_generated as schema
        self.s = schema
        self.tensors: list = []
        self.buffers: list = [schema.BufferT()]
        self.ops: list = []
        self.codes: list[int] = []

    def tensor(self, shape: tuple[int, ...], dtype: str = "INT8", scale: float | list[float] | None = None,
               zp: int | list[int] = 0, data: np.ndarray | None = None, qdim: int = 0) -> int:
        s = self.s
        t = s.TensorT()
        t.shape = np.array(shape, dtype=np.int32)
        t.type = getattr(s.TensorType, dtype)
        t.name = f"t{len(self.tensors)}"
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = s.QuantizationParametersT()
            scales = [scale] if isinstance(scale, float) else list(scale)
            zps = [zp] * len(scales) if isinstance(zp, int) else list(zp)
            q.scale = np.array(scales, dtype=np.float32)
            q.zeroPoint = np.array(zps, dtype=np.int64)
            q.quantizedDimension = qdim
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, kind: str, inputs: list[int], outputs: list[int], options: str | None = None,
           **fields: object) -> None:
        s = self.s
        code = getattr(s.BuiltinOperator, kind)
        if code not in self.codes:
            self.codes.append(code)
        o = s.OperatorT()
        o.opcodeIndex = self.codes.index(code)
        o.inputs = np.array(inputs, dtype=np.int32)
        o.outputs = np.array(outputs, dtype=np.int32)
        if options:
            opts = getattr(s, f"{options}T")()
            for k, v in fields.items():
                setattr(opts, k, v)
            o.builtinOptionsType = getattr(s.BuiltinOptions, options)
            o.builtinOptions = opts
        self.ops.append(o)

    def build(self, inputs: list[int], outputs: list[int]) -> bytes:
        s = self.s
        m = s.ModelT()
        m.version = 3
        m.operatorCodes = []
        for code in self.codes:
            c = s.OperatorCodeT()
            c.builtinCode = code
            c.deprecatedBuiltinCode = min(code, 127)
            c.version = 1
            m.operatorCodes.append(c)
        g = s.SubGraphT()
        g.tensors, g.operators = self.tensors, self.ops
        g.inputs, g.outputs = np.array(inputs, dtype=np.int32), np.array(outputs, dtype=np.int32)
        m.subgraphs = [g]
        m.buffers = self.buffers
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def tflm_outputs(model: bytes, x: np.ndarray) -> np.ndarray:
    """TFLite Micro's reference kernels, in process (a generous arena: nothing here is near the limit).

    Its depthwise kernel crashes the process on a missing bias, so every depthwise model here has one.
    """
    from tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(model, arena_size=1 << 21)
    out = []
    for row in x:
        it.set_input(row[None], 0)
        it.invoke()
        out.append(it.get_output(0).reshape(-1).copy())
    return np.stack(out)


def random_act(rng: np.random.Generator) -> int:
    return int(rng.choice([0, 1, 3]))  # NONE, RELU, RELU6


def random_scales(rng: np.random.Generator, n: int) -> list[float]:
    return [float(v) for v in rng.uniform(0.002, 0.02, size=n)]


def output_scale(in_scale: float, w_scales: list[float], fan_in: int) -> float:
    return float(in_scale * np.mean(w_scales) * 70 * 70 * np.sqrt(fan_in) / 50)


def conv_model(rng: np.random.Generator, depthwise: bool, cin: int | None = None, mult: int | None = None,
               cout: int | None = None, k: int | None = None, stride: int | None = None,
               padding: int | None = None) -> tuple[bytes, tuple[int, ...]]:
    """A random CONV_2D / DEPTHWISE_CONV_2D model; the keyword arguments pin a dimension (k: square kernel)."""
    h, w = (int(v) for v in rng.integers(3, 10, size=2))
    cin = cin if cin is not None else int(rng.integers(1, 6))
    mult = mult if mult is not None else (int(rng.integers(1, 3)) if depthwise else 1)
    cout = cin * mult if depthwise else (cout if cout is not None else int(rng.integers(1, 9)))
    kh, kw = (k, k) if k is not None else (int(v) for v in rng.integers(1, 4, size=2))
    stride = stride if stride is not None else int(rng.integers(1, 3))
    dilation = int(rng.choice([1, 1, 2]))
    padding = padding if padding is not None else int(rng.integers(0, 2))  # 0 SAME, 1 VALID
    eff_h, eff_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    if padding == 1:
        h, w = max(h, eff_h), max(w, eff_w)
        oh, ow = (h - eff_h) // stride + 1, (w - eff_w) // stride + 1
    else:
        oh, ow = (h + stride - 1) // stride, (w + stride - 1) // stride
    in_scale, in_zp = float(rng.uniform(0.01, 0.05)), int(rng.integers(-30, 30))
    w_scales = random_scales(rng, cout)
    out_scale = output_scale(in_scale, w_scales, kh * kw * (1 if depthwise else cin))
    b = ModelBuilder()
    x = b.tensor((1, h, w, cin), scale=in_scale, zp=in_zp)
    wshape = (1, kh, kw, cout) if depthwise else (cout, kh, kw, cin)
    wt = b.tensor(wshape, scale=w_scales, zp=0, data=rng.integers(-127, 128, size=wshape, dtype=np.int8),
                  qdim=3 if depthwise else 0)
    bias = b.tensor((cout,), "INT32", scale=[in_scale * s for s in w_scales], zp=0,
                    data=rng.integers(-3000, 3000, size=cout).astype(np.int32))
    y = b.tensor((1, oh, ow, cout), scale=out_scale, zp=int(rng.integers(-20, 20)))
    if depthwise:
        b.op("DEPTHWISE_CONV_2D", [x, wt, bias], [y], "DepthwiseConv2DOptions", padding=padding, strideW=stride,
             strideH=stride, depthMultiplier=mult, fusedActivationFunction=random_act(rng), dilationWFactor=dilation,
             dilationHFactor=dilation)
    else:
        b.op("CONV_2D", [x, wt, bias], [y], "Conv2DOptions", padding=padding, strideW=stride, strideH=stride,
             fusedActivationFunction=random_act(rng), dilationWFactor=dilation, dilationHFactor=dilation)
    return b.build([x], [y]), (1, h, w, cin)


# Shapes that reach the kernels' blocked paths (pairs of pixels and filters for 1x1 convs, groups of four
# channels for depthwise convs, and their tails); tests/test_cortex_m.py runs the same models on the boards,
# where the DSP-extension paths take them.
WIDE_CASES = [
    dict(depthwise=False, cin=12, cout=7, k=1, stride=1, padding=1),
    dict(depthwise=False, cin=10, cout=8, k=1, stride=2, padding=0),
    dict(depthwise=False, cin=16, cout=6, k=3, stride=1, padding=0),
    dict(depthwise=True, cin=8, mult=1, k=3, stride=1, padding=0),
    dict(depthwise=True, cin=6, mult=1, k=3, stride=2, padding=0),
    dict(depthwise=True, cin=12, mult=1, k=2, stride=1, padding=1),
    dict(depthwise=True, cin=1, mult=8, k=3, stride=2, padding=0),
    dict(depthwise=True, cin=2, mult=6, k=3, stride=1, padding=0),
]


def wide_model(case: int) -> tuple[bytes, tuple[int, ...]]:
    return conv_model(np.random.default_rng(500 + case), **WIDE_CASES[case])  # type: ignore[arg-type]


def _layer(b: ModelBuilder, rng: np.random.Generator, x: int, in_scale: float, kind: str, out_hw: tuple[int, int],
           cin: int, cout: int, k: tuple[int, int], stride: int, padding: int, act: int = 1) -> tuple[int, float]:
    """One CONV_2D / DEPTHWISE_CONV_2D with random int8 weights, per-channel scales and an int32 bias."""
    depthwise = kind == "DEPTHWISE_CONV_2D"
    w_scales = random_scales(rng, cout)
    fan_in = k[0] * k[1] * (1 if depthwise else cin)
    out_scale = output_scale(in_scale, w_scales, fan_in) / 2  # keeps the ReLU outputs spread over int8
    wshape = (1, *k, cout) if depthwise else (cout, *k, cin)
    wt = b.tensor(wshape, scale=w_scales, data=rng.integers(-127, 128, size=wshape, dtype=np.int8),
                  qdim=3 if depthwise else 0)
    bias = b.tensor((cout,), "INT32", scale=[in_scale * s for s in w_scales],
                    data=rng.integers(-3000, 3000, size=cout).astype(np.int32))
    y = b.tensor((1, *out_hw, cout), scale=out_scale, zp=-128 if act else int(rng.integers(-20, 20)))
    if depthwise:
        b.op(kind, [x, wt, bias], [y], "DepthwiseConv2DOptions", padding=padding, strideW=stride, strideH=stride,
             depthMultiplier=cout // cin, fusedActivationFunction=act)
    else:
        b.op(kind, [x, wt, bias], [y], "Conv2DOptions", padding=padding, strideW=stride, strideH=stride,
             fusedActivationFunction=act)
    return y, out_scale


def kws_dscnn_model(seed: int = 14, blocks: int = 4) -> bytes:
    """A keyword-spotting DS-CNN shaped like MLPerf Tiny's (49x10x1 MFCCs; PAD + 10x4 stride-2 depthwise to 64
    channels, as the TFLite converter writes the first conv; 4 x (3x3 depthwise + 1x1 conv, 64 channels);
    average pool over 25x5; fully connected to 12): 2,656,768 MACs, random int8 weights."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.tensor((1, 49, 10, 1), scale=0.05, zp=10)
    paddings = b.tensor((4, 2), "INT32", data=np.array([[0, 0], [4, 5], [1, 1], [0, 0]], dtype=np.int32))
    padded = b.tensor((1, 58, 12, 1), scale=0.05, zp=10)
    b.op("PAD", [x, paddings], [padded])
    h, s = _layer(b, rng, padded, 0.05, "DEPTHWISE_CONV_2D", (25, 5), 1, 64, (10, 4), 2, 1)
    for _ in range(blocks):
        h, s = _layer(b, rng, h, s, "DEPTHWISE_CONV_2D", (25, 5), 64, 64, (3, 3), 1, 0)
        h, s = _layer(b, rng, h, s, "CONV_2D", (25, 5), 64, 64, (1, 1), 1, 0)
    pooled = b.tensor((1, 1, 1, 64), scale=s, zp=-128)
    b.op("AVERAGE_POOL_2D", [h], [pooled], "Pool2DOptions", padding=1, strideW=1, strideH=1, filterWidth=5,
         filterHeight=25)
    flat = b.tensor((1, 64), scale=s, zp=-128)
    shape = b.tensor((2,), "INT32", data=np.array([1, 64], dtype=np.int32))
    b.op("RESHAPE", [pooled, shape], [flat])
    w_scales = random_scales(rng, 12)
    wt = b.tensor((12, 64), scale=w_scales, data=rng.integers(-127, 128, size=(12, 64), dtype=np.int8))
    bias = b.tensor((12,), "INT32", scale=[s * v for v in w_scales],
                    data=rng.integers(-3000, 3000, 12).astype(np.int32))
    y = b.tensor((1, 12), scale=output_scale(s, w_scales, 64), zp=3)
    b.op("FULLY_CONNECTED", [flat, wt, bias], [y], "FullyConnectedOptions")
    return b.build([x], [y])


ISSUE14_LAYERS = {  # (input H x W, in channels, out channels, stride, output H x W): issue 14's ResNet rows
    "conv 3x3 24->24 on 8x8": ((8, 8), 24, 24, 1, (8, 8)),
    "conv 3x3 stride 2, 24->48, out 3x3": ((6, 6), 24, 48, 2, (3, 3)),
    "conv 3x3 48->48 on 3x3": ((3, 3), 48, 48, 1, (3, 3)),
}


def issue14_layer_model(kind: str) -> bytes:
    """One layer shape of issue 14's table as a model: a SAME 3x3 CONV_2D, or (ADD 8x8x24) a 1x1 conv whose
    output is added to its input (edgekd-c takes one model input), random int8 weights."""
    rng = np.random.default_rng(24 if kind == "ADD 8x8x24" else len(kind))
    b = ModelBuilder()
    if kind == "ADD 8x8x24":
        x = b.tensor((1, 8, 8, 24), scale=0.04, zp=-128)
        h, _ = _layer(b, rng, x, 0.04, "CONV_2D", (8, 8), 24, 24, (1, 1), 1, 0)
        y = b.tensor((1, 8, 8, 24), scale=0.06, zp=-128)
        b.op("ADD", [x, h], [y], "AddOptions", fusedActivationFunction=1)
        return b.build([x], [y])
    hw, cin, cout, stride, out = ISSUE14_LAYERS[kind]
    x = b.tensor((1, *hw, cin), scale=0.04, zp=-128)
    y, _ = _layer(b, rng, x, 0.04, "CONV_2D", out, cin, cout, (3, 3), stride, 0)
    return b.build([x], [y])
