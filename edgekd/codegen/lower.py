"""Lower TFLite operators to calls of the int8 kernels in ``c/kernels.c``, with every constant precomputed.

Each :class:`Step` says which kernel runs, its parameter block, the constant arrays it points to, which
buffers it reads and writes, and how far its output may overlap an input it reads for the last time
(``overlap``: the planner may place the output at ``input_offset - distance`` or lower). A kernel that writes
each output row only after reading what that row needs has a distance computed from its geometry here.
PAD feeding a convolution is folded into that convolution's padding (the kernels treat out-of-image pixels as
the input zero point, which is exactly PAD's fill value), so the padded copy never exists. How each kernel
wants its constants laid out (weights, requantization tables) is :mod:`edgekd.codegen.layout`'s job; the rest
(~420 lines) stays one module because every operator's lowering shares the tensor checks and the row geometry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgekd.codegen import fixedpoint as fp
from edgekd.codegen import layout
from edgekd.codegen.graph import Graph, Operator, Tensor
from edgekd.errors import EdgekdError

SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "ADD",
             "RESHAPE", "SOFTMAX", "PAD", "RELU", "RELU6")


@dataclass
class Step:
    op: str
    kernel: str
    ctype: str
    fields: dict[str, object]
    arrays: dict[str, tuple[str, np.ndarray]]
    inputs: list[int]
    output: int
    overlap: dict[int, int] = field(default_factory=dict)
    tmp_bytes: int = 0
    macs: int = 0
    takes_tmp: bool = True
    scratch_bytes: int = 0  # arena bytes the kernel needs during this step only (its ``scratch`` field)
    operands: list[int | str] = field(default_factory=list)  # kernel arguments: tensors, or constant array names

    def __post_init__(self) -> None:
        if not self.operands:
            self.operands = list(self.inputs)


@dataclass
class Lowered:
    steps: list[Step]
    alias: dict[int, int]  # RESHAPE outputs -> the buffer they share
    input: int
    output: int


def _padding(mode: int, stride: int, dilation: int, in_size: int, k: int, out_size: int) -> int:
    if mode == 1:  # VALID
        return 0
    effective = (k - 1) * dilation + 1
    total = (out_size - 1) * stride + effective - in_size
    return max(0, int(total / 2))


def _row_distance(out_rows: int, out_row: int, in_rows: int, in_row: int, first_needed: Callable[[int], int]) -> int:
    """Smallest ``input_offset - output_offset`` that keeps every input row unread so far intact.

    The kernel writes output row ``y`` (via its row buffer) after reading everything row ``y`` needs; input rows
    before ``first_needed(y)`` are then dead.
    """
    worst = -(1 << 40)
    for y in range(out_rows):
        needed = in_rows if y == out_rows - 1 else min(in_rows, max(0, first_needed(y)))
        worst = max(worst, (y + 1) * out_row - needed * in_row)
    return worst


def _nhwc(t: Tensor, what: str) -> tuple[int, int, int]:
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise EdgekdError(f"{what}: tensor {t.name!r} has shape {list(t.shape)}; edgekd-c needs NHWC with batch 1")
    return t.shape[1], t.shape[2], t.shape[3]


def _int8(t: Tensor, what: str) -> None:
    if t.dtype != "INT8":
        raise EdgekdError(f"{what}: tensor {t.name!r} is {t.dtype}; edgekd-c runs fully-integer int8 models only "
                          "(export with the int8 exporter, no float islands)")


def _const(g: Graph, index: int, what: str) -> np.ndarray:
    t = g.tensors[index]
    if t.data is None:
        raise EdgekdError(f"{what}: input {t.name!r} must be a constant (weights, axes, paddings)")
    return t.data


def _bias(g: Graph, op: Operator, channels: int) -> np.ndarray | None:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return None
    b = g.tensors[op.inputs[2]]
    if b.dtype != "INT32" or b.data is None or b.data.size != channels:
        raise EdgekdError(f"{op.kind} #{op.index}: bias {b.name!r} must be a constant int32 vector of {channels}")
    return b.data.astype(np.int32)


def _mm_step(name: str, fields: dict[str, int], filters: np.ndarray, bias: np.ndarray | None, mults: list[int],
             shifts: list[int], inputs: list[int], output: int, overlap: dict[int, int], tmp_bytes: int,
             macs: int) -> Step:
    """A layer as one matrix product (``ek_conv_mm*``, constants from :func:`layout.mm_layout`)."""
    kernel, k4, arrays = layout.mm_layout(filters, bias, mults, shifts, fields["in_offset"], fields["out_offset"],
                                          fields["act_max"])
    k16 = -(-k4 // 16) * 16  # the Helium path's two raw columns (kernels.c)
    return Step(name, kernel, "ek_mm_t", {**fields, "k4": k4}, arrays, inputs, output, overlap, tmp_bytes, macs,
                scratch_bytes=max(5 * k4 + 3, k4 + 2 * k16 + 3))


def _conv_like(g: Graph, op: Operator, x: Tensor, y: Tensor, pads: tuple[int, int, int, int] | None) -> Step:
    """CONV_2D / DEPTHWISE_CONV_2D; ``pads`` = (top, left, bottom, right) of a folded PAD whose input is ``x``."""
    what = f"{op.kind} #{op.index}"
    o = op.options
    in_h, in_w, in_c = _nhwc(x, what)
    out_h, out_w, out_c = _nhwc(y, what)
    w = g.tensors[op.inputs[1]]
    _int8(w, what)
    wdata = _const(g, op.inputs[1], what)
    if any(z != 0 for z in w.zero_points):
        raise EdgekdError(f"{what}: filter zero point must be 0 (symmetric int8 weights), got {w.zero_points[:3]}")
    sh, sw = o.get("strideH", 1), o.get("strideW", 1)
    dh, dw = o.get("dilationHFactor", 1) or 1, o.get("dilationWFactor", 1) or 1
    kh, kw = wdata.shape[1], wdata.shape[2]
    top0, left0, bottom0, right0 = pads or (0, 0, 0, 0)
    padded_h, padded_w = in_h + top0 + bottom0, in_w + left0 + right0
    pad_top = top0 + _padding(o.get("padding", 1), sh, dh, padded_h, kh, out_h)
    pad_left = left0 + _padding(o.get("padding", 1), sw, dw, padded_w, kw, out_w)
    depthwise = op.kind == "DEPTHWISE_CONV_2D"
    if depthwise:
        if wdata.shape[0] != 1 or wdata.shape[3] != out_c or out_c % in_c:
            raise EdgekdError(f"{what}: filter {list(wdata.shape)} does not match {in_c} input / {out_c} output "
                              "channels")
        filter_in_c = out_c // in_c
        flat = wdata.reshape(-1)
        macs = out_h * out_w * out_c * kh * kw
    else:
        if wdata.shape[0] != out_c or in_c % wdata.shape[3] or out_c % (in_c // wdata.shape[3]):
            raise EdgekdError(f"{what}: filter {list(wdata.shape)} does not match {in_c} input / {out_c} output "
                              "channels")
        filter_in_c = wdata.shape[3]
        flat = wdata.reshape(-1)
        macs = out_h * out_w * out_c * kh * kw * filter_in_c
    mults, shifts = fp.conv_multipliers(x.scale, w.scales, y.scale, out_c)
    act_min, act_max = fp.activation_range(o.get("fusedActivationFunction", 0), y.scale, y.zero_point)
    bias = _bias(g, op, out_c)
    fields = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c, k_h=kh, k_w=kw,
                  stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_top=pad_top, pad_left=pad_left,
                  filter_in_c=filter_in_c, in_offset=-x.zero_point, out_offset=y.zero_point, act_min=act_min,
                  act_max=act_max)
    arrays: dict[str, tuple[str, np.ndarray]] = {"filter": ("int8_t", flat.astype(np.int8)),
                                                 "mult": ("int32_t", np.array(mults, np.int64)),
                                                 "shift": ("int8_t", np.array(shifts, np.int64))}
    distance = _row_distance(out_h, out_w * out_c, in_h, in_w * in_c,
                             lambda r: (r + 1) * sh - pad_top)
    name = ("PAD+" if pads else "") + op.kind
    if (filter_in_c == in_c and not depthwise) or (depthwise and in_c == 1):  # a matrix product per pixel
        mm = {k: v for k, v in fields.items() if k != "filter_in_c"}
        filters = (wdata.reshape(kh * kw, out_c).T if depthwise else wdata.reshape(out_c, -1)).astype(np.int8)
        return _mm_step(name, mm, filters, bias, mults, shifts, [x.index], y.index, {x.index: distance},
                        2 * out_w * out_c, macs)
    if depthwise and filter_in_c == 1:
        span = (out_w - 1) * sw + (kw - 1) * dw + 1  # padded input columns an output row reads
        dw_fast = layout.dw_layout(wdata.reshape(kh, kw, out_c), bias, mults, shifts, -x.zero_point,
                                   y.zero_point, act_max, span, dw)
        if dw_fast:
            kernel, scratch, dw_arrays = dw_fast
            return Step(name, kernel, "ek_mm_t", {k: v for k, v in fields.items() if k != "filter_in_c"},
                        dw_arrays, [x.index], y.index, {x.index: distance}, out_w * out_c, macs,
                        scratch_bytes=scratch)
    pointwise = not depthwise and kh == kw == 1 and pad_top == pad_left == 0 and filter_in_c == in_c
    if pointwise:  # every input is in bounds: fold the input offset into the bias
        arrays["kbias"] = ("int32_t", layout.folded_bias(bias, -x.zero_point, wdata.reshape(out_c, -1)))
    elif bias is not None:
        arrays["bias"] = ("int32_t", bias)
    kernel = "ek_depthwise" if depthwise else "ek_conv2d"
    return Step(name, kernel, "ek_conv_t", fields, arrays, [x.index], y.index, {x.index: distance},
                out_w * out_c, macs)


def _pool(g: Graph, op: Operator) -> Step:
    what = f"{op.kind} #{op.index}"
    x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    o = op.options
    in_h, in_w, in_c = _nhwc(x, what)
    out_h, out_w, out_c = _nhwc(y, what)
    if x.scale != y.scale or x.zero_point != y.zero_point:
        raise EdgekdError(f"{what}: input and output quantization differ; TFLite's int8 pooling requires them equal")
    sh, sw, kh, kw = o["strideH"], o["strideW"], o["filterHeight"], o["filterWidth"]
    pad_top = _padding(o.get("padding", 1), sh, 1, in_h, kh, out_h)
    pad_left = _padding(o.get("padding", 1), sw, 1, in_w, kw, out_w)
    act_min, act_max = fp.activation_range(o.get("fusedActivationFunction", 0), y.scale, y.zero_point)
    fields = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c, k_h=kh, k_w=kw,
                  stride_h=sh, stride_w=sw, dil_h=1, dil_w=1, pad_top=pad_top, pad_left=pad_left, filter_in_c=1,
                  in_offset=0, out_offset=0, act_min=act_min, act_max=act_max)
    distance = _row_distance(out_h, out_w * out_c, in_h, in_w * in_c, lambda r: (r + 1) * sh - pad_top)
    kernel = "ek_avgpool" if op.kind == "AVERAGE_POOL_2D" else "ek_maxpool"
    return Step(op.kind, kernel, "ek_conv_t", fields, {}, [x.index], y.index, {x.index: distance}, out_w * out_c,
                out_h * out_w * out_c * kh * kw)


def _fully_connected(g: Graph, op: Operator) -> Step:
    what = f"FULLY_CONNECTED #{op.index}"
    x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    w = g.tensors[op.inputs[1]]
    _int8(w, what)
    wdata = _const(g, op.inputs[1], what)
    if op.options.get("weightsFormat", 0) != 0:
        raise EdgekdError(f"{what}: shuffled weight formats are not supported; use the default format")
    out_c, in_c = wdata.shape
    if x.size % in_c:
        raise EdgekdError(f"{what}: input of {x.size} values is not a multiple of the filter's {in_c} inputs")
    batches = x.size // in_c
    per_channel = len(w.scales) > 1
    if per_channel:
        mults, shifts = fp.conv_multipliers(x.scale, w.scales, y.scale, out_c)
    else:
        m, s = fp.quantize_multiplier(x.scale * w.scale / y.scale)
        mults, shifts = [m], [s]
    act_min, act_max = fp.activation_range(op.options.get("fusedActivationFunction", 0), y.scale, y.zero_point)
    if per_channel and any(z != 0 for z in w.zero_points):
        raise EdgekdError(f"{what}: per-channel filter zero points must be 0")
    bias = _bias(g, op, out_c)
    if batches == 1 and w.zero_point == 0 and not any(w.zero_points):  # a 1x1 conv on one pixel
        fields_mm = dict(in_h=1, in_w=1, in_c=in_c, out_h=1, out_w=1, out_c=out_c, k_h=1, k_w=1, stride_h=1,
                         stride_w=1, dil_h=1, dil_w=1, pad_top=0, pad_left=0, in_offset=-x.zero_point,
                         out_offset=y.zero_point, act_min=act_min, act_max=act_max)
        copies = 1 if per_channel else out_c  # per-tensor: the one multiplier for every channel
        return _mm_step("FULLY_CONNECTED", fields_mm, wdata.astype(np.int8), bias, list(mults) * copies,
                        list(shifts) * copies, [x.index], y.index, {x.index: y.size - x.size}, 2 * y.size,
                        in_c * out_c)
    fields = dict(batches=batches, in_c=in_c, out_c=out_c, in_offset=-x.zero_point,
                  filter_offset=-w.zero_point, out_offset=y.zero_point, act_min=act_min, act_max=act_max,
                  per_channel=int(per_channel))
    arrays: dict[str, tuple[str, np.ndarray]] = {"filter": ("int8_t", wdata.reshape(-1).astype(np.int8)),
                                                 "mult": ("int32_t", np.array(mults, np.int64)),
                                                 "shift": ("int8_t", np.array(shifts, np.int64))}
    if w.zero_point == 0:
        arrays["kbias"] = ("int32_t", layout.folded_bias(bias, -x.zero_point, wdata.astype(np.int64)))
    elif bias is not None:
        arrays["bias"] = ("int32_t", bias)
    return Step("FULLY_CONNECTED", "ek_fully_connected", "ek_fc_t", fields, arrays, [x.index], y.index,
                {x.index: y.size - x.size}, y.size, batches * in_c * out_c)


def _dims4(shape: tuple[int, ...], what: str) -> list[int]:
    if len(shape) > 4:
        raise EdgekdError(f"{what}: rank {len(shape)} tensors are not supported (at most 4-D)")
    return [1] * (4 - len(shape)) + list(shape)


def _mean(g: Graph, op: Operator) -> Step:
    what = f"MEAN #{op.index}"
    x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    axes = {int(a) % len(x.shape) for a in _const(g, op.inputs[1], what).reshape(-1)}
    dims = _dims4(x.shape, what)
    shift4 = 4 - len(x.shape)
    reduce = [1 if (k - shift4) in axes else 0 for k in range(4)]
    count = int(np.prod([d for d, r in zip(dims, reduce, strict=True) if r])) if axes else 1
    mult, shift = fp.mean_multiplier(x.scale, y.scale, count)
    fields = dict(dims=dims, reduce=reduce, count=count, in_zp=x.zero_point, out_zp=y.zero_point, mult=mult,
                  shift=shift)
    return Step("MEAN", "ek_mean", "ek_mean_t", fields, {}, [x.index], y.index, {x.index: y.size - x.size},
                y.size, x.size)


def _strides(shape: list[int], out: list[int]) -> list[int]:
    strides, step = [0] * 4, 1
    for k in range(3, -1, -1):
        strides[k] = 0 if shape[k] == 1 and out[k] != 1 else step
        step *= shape[k]
    return strides


def _add(g: Graph, op: Operator) -> Step:
    what = f"ADD #{op.index}"
    a, b, y = (g.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    out = _dims4(y.shape, what)
    da, db = _dims4(a.shape, what), _dims4(b.shape, what)
    for d in (da, db):
        if any(s not in (1, o) for s, o in zip(d, out, strict=True)):
            raise EdgekdError(f"{what}: shapes {list(a.shape)} and {list(b.shape)} do not broadcast to {list(y.shape)}")
    params = fp.add_params(a.scale, b.scale, y.scale)
    act_min, act_max = fp.activation_range(op.options.get("fusedActivationFunction", 0), y.scale, y.zero_point)
    fields = dict(out_dims=out, in1_strides=_strides(da, out), in2_strides=_strides(db, out),
                  in1_offset=-a.zero_point, in2_offset=-b.zero_point, out_offset=y.zero_point, act_min=act_min,
                  act_max=act_max, **params)
    arrays: dict[str, tuple[str, np.ndarray]] = {}
    operands: list[int | str] = []
    for name, t in (("in1_data", a), ("in2_data", b)):
        if t.data is not None:
            arrays[name] = ("int8_t", t.data.reshape(-1).astype(np.int8))
            operands.append(name)
        else:
            operands.append(t.index)
    inputs = [t for t in operands if isinstance(t, int)]
    if not inputs:
        raise EdgekdError(f"{what}: both inputs are constants; fold them before export")
    overlap = {t: 0 for t in inputs if g.tensors[t].size == y.size}
    flat = da == db == out and params["left_shift"] <= 22 and all(
        params[k] <= 0 for k in ("in1_shift", "in2_shift", "out_shift"))  # ek_add_flat's exactness conditions
    return Step("ADD", "ek_add_flat" if flat else "ek_add", "ek_add_t", fields, arrays, inputs, y.index, overlap,
                0, y.size, takes_tmp=False, operands=operands)


def _softmax(g: Graph, op: Operator) -> Step:
    what = f"SOFTMAX #{op.index}"
    x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    if y.zero_point != -128 or np.float32(y.scale) != np.float32(1.0 / 256):
        raise EdgekdError(f"{what}: int8 softmax output must have scale 1/256 and zero point -128 "
                          f"(got {y.scale}, {y.zero_point}), as TFLite Micro requires")
    mult, shift, diff_min = fp.softmax_params(float(np.float32(op.options.get("beta", 1.0))), x.scale)
    depth = x.shape[-1]
    rows = x.size // depth
    fields = dict(rows=rows, depth=depth, mult=mult, left_shift=shift, diff_min=diff_min)
    return Step("SOFTMAX", "ek_softmax", "ek_softmax_t", fields, {}, [x.index], y.index,
                {x.index: _row_distance(rows, depth, rows, depth, lambda r: r + 1)}, depth, x.size)


def _pad_amounts(g: Graph, op: Operator) -> list[list[int]]:
    what = f"PAD #{op.index}"
    pads = _const(g, op.inputs[1], what).reshape(-1, 2).astype(int).tolist()
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        raise EdgekdError(f"{what}: PAD with an explicit constant is not supported (PADV2); use PAD")
    return [[0, 0]] * (4 - len(pads)) + pads


def _pad(g: Graph, op: Operator) -> Step:
    what = f"PAD #{op.index}"
    x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    pads = _pad_amounts(g, op)
    din, dout = _dims4(x.shape, what), _dims4(y.shape, what)
    if dout[0] != 1:
        raise EdgekdError(f"{what}: batch padding/batch > 1 is not supported")
    before = [p[0] for p in pads]
    fields = dict(in_dims=din, out_dims=dout, before=before, value=y.zero_point)
    distance = _row_distance(dout[1], dout[2] * dout[3], din[1], din[2] * din[3], lambda r: r + 1 - before[1])
    return Step("PAD", "ek_pad", "ek_pad_t", fields, {}, [x.index], y.index, {x.index: distance},
                dout[2] * dout[3], 0)


def _activation(g: Graph, op: Operator) -> Step:
    x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    if op.kind == "RELU":
        mult, shift = fp.quantize_multiplier(x.scale / y.scale)
        act_min = max(fp.INT8_MIN, y.zero_point + fp.tflite_round(float(np.float32(0.0) / np.float32(y.scale))))
        fields = dict(size=x.size, in_offset=x.zero_point, out_offset=y.zero_point, mult=mult, shift=shift,
                      act_min=act_min, act_max=fp.INT8_MAX, rescale=1)
    else:
        six = fp.tflite_round(float(np.float32(6.0) / np.float32(x.scale))) + x.zero_point
        fields = dict(size=x.size, in_offset=0, out_offset=0, mult=0, shift=0, act_min=x.zero_point,
                      act_max=max(fp.INT8_MIN, min(fp.INT8_MAX, six)), rescale=0)
    return Step(op.kind, "ek_activation", "ek_act_t", fields, {}, [x.index], y.index, {x.index: 0}, 0, 0,
                takes_tmp=False)


def lower(g: Graph) -> Lowered:
    """Turn ``g`` into kernel steps; any operator outside :data:`SUPPORTED` is an EdgekdError naming it."""
    unknown = sorted({op.kind for op in g.operators if op.kind not in SUPPORTED})
    if unknown:
        raise EdgekdError(f"operator(s) {', '.join(unknown)} not supported by edgekd-c (supported: "
                          f"{', '.join(SUPPORTED)}); change the student or use the TFLite Micro runtime")
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise EdgekdError(f"the model has {len(g.inputs)} inputs and {len(g.outputs)} outputs; edgekd-c needs one each")
    for t in (g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]):
        _int8(t, "model I/O")
    consumers: dict[int, list[Operator]] = {}
    for op in g.operators:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    folded: dict[int, tuple[int, list[int]]] = {}  # conv op index -> (PAD input tensor, [top, left, bottom, right])
    skipped: set[int] = set()
    for op in g.operators:
        if op.kind != "PAD":
            continue
        out = op.outputs[0]
        users = consumers.get(out, [])
        pads = _pad_amounts(g, op)
        if (len(users) == 1 and users[0].kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and users[0].inputs[0] == out
                and out not in g.outputs and pads[0] == [0, 0] and pads[3] == [0, 0]
                and len(g.tensors[op.inputs[0]].shape) == 4):
            folded[users[0].index] = (op.inputs[0], [pads[1][0], pads[2][0], pads[1][1], pads[2][1]])
            skipped.add(op.index)
    steps: list[Step] = []
    alias: dict[int, int] = {}
    for op in g.operators:
        for t in [*op.inputs[:1], *op.outputs]:
            if t >= 0:
                _int8(g.tensors[t], f"{op.kind} #{op.index}")
        if op.index in skipped:
            continue
        if op.kind == "RESHAPE":
            alias[op.outputs[0]] = op.inputs[0]
        elif op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if op.index in folded:
                src, pads = folded[op.index]
                box = (pads[0], pads[1], pads[2], pads[3])
                steps.append(_conv_like(g, op, g.tensors[src], g.tensors[op.outputs[0]], box))
            else:
                steps.append(_conv_like(g, op, g.tensors[op.inputs[0]], g.tensors[op.outputs[0]], None))
        elif op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            steps.append(_pool(g, op))
        elif op.kind == "FULLY_CONNECTED":
            steps.append(_fully_connected(g, op))
        elif op.kind == "MEAN":
            steps.append(_mean(g, op))
        elif op.kind == "ADD":
            steps.append(_add(g, op))
        elif op.kind == "SOFTMAX":
            steps.append(_softmax(g, op))
        elif op.kind == "PAD":
            steps.append(_pad(g, op))
        else:
            steps.append(_activation(g, op))
    return Lowered(steps, alias, g.inputs[0], g.outputs[0])
