"""Cost model: what a PyTorch model will cost on a device, predicted from its exported graph.

The model is captured with ``torch.export`` and its aten graph is lowered, op by op, to the TFLite graph the
litert-torch converter really emits (checked against converted files in ``tests/test_costmodel.py``):

* BatchNorm folds into the preceding convolution, ReLU/ReLU6 fuse into it, dropout vanishes;
* PyTorch padding that is not TFLite ``SAME`` (or ``VALID``) becomes an explicit ``PAD`` op whose padded copy
  is alive together with its input (e.g. ``padding=1, stride=2`` on an even-sized input);
* the model runs channels-last inside the file, so a flatten of a feature map with both channels and
  spatial extent, ``x.mean((2, 3))`` and a channels-first tensor fed to a convolution each cost a
  ``TRANSPOSE`` (a full copy);
* a 1x1-input-channel convolution becomes ``DEPTHWISE_CONV_2D`` (depth multiplier), as the converter does.

From that graph it counts parameters, int8 / fp32 weight bytes, MACs per layer, and plans the activation
arena the way TFLite Micro's greedy planner does (sizes descending, first gap that fits among the buffers
alive at the same time, 16-byte alignment), plus TFLite Micro's own bookkeeping (tensor structs, node
structs, per-channel requantization buffers). Those overhead constants were read off the tflite-micro
interpreter's ``print_allocations`` on the host (64-bit pointers); ``docs/costmodel.md`` compares the
predictions with measured minimum arenas.

One module (over 400 lines) because the lowering rules, the arena planner and the latency estimate are one
model of the converter's output, calibrated together against the same converted files.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edgekd.errors import EdgekdError

if TYPE_CHECKING:
    from edgekd.targets import Target

ALIGN = 16  # TFLite Micro aligns every planned buffer to 16 bytes (kBufferAlignment).

# TFLite Micro bookkeeping on the host build (64-bit), read off RecordingMicroAllocator.
TFLM_EVAL_TENSOR_BYTES = 24  # per tensor in the model (activations and constants)
TFLM_NODE_BYTES = 64  # NodeAndRegistration per operator
TFLM_IO_TENSOR_BYTES = 128 + 64  # persistent TfLiteTensor + quantization data for one input and one output
TFLM_FIXED_BYTES = 620  # subgraph, context and allocator structs
# While kernels prepare, TFLite Micro holds temporary tensor structs (4 x 64 bytes) and per-channel
# quantization copies (8 bytes a channel) below the tail; for models whose planned activations are smaller
# than that, the transient decides the minimum arena. Floor seen on tiny models: 500-960 bytes.
TFLM_PREPARE_TEMP_BYTES = 700
TFLM_PREPARE_TEMP_PER_OP = 256
# Persistent op data per operator (struct sizes, 16-byte aligned) and per output channel (multiplier+shift).
# Fitted by non-negative least squares on 8 converted models (residual 7 bytes); see docs/costmodel.md.
TFLM_OP_DATA_BYTES = {"CONV_2D": 62, "DEPTHWISE_CONV_2D": 80, "FULLY_CONNECTED": 92, "MEAN": 60, "PAD": 76,
                      "ADD": 112, "AVERAGE_POOL_2D": 26, "MAX_POOL_2D": 26, "MUL": 64, "SOFTMAX": 48,
                      "CONCATENATION": 48}

# What the .tflite flatbuffer adds to the raw int8 weights: fitted by non-negative least squares on 15
# converted files (docs/costmodel.md); students within +-6%, tiny models overestimated (the safe side).
TFLITE_PER_TENSOR_BYTES = 181  # Tensor table, shape, buffer entry, quantization table, long exported name
TFLITE_PER_OP_BYTES = 345  # operator entry plus its signature/debug metadata
TFLITE_PER_CHANNEL_BYTES = 23  # float32 scales + int64 zero points of weight and bias, per output channel

_ALIAS = {"aten.dropout.default", "aten.clone.default", "aten.contiguous.default", "aten.alias.default",
          "aten.detach.default", "aten.identity.default", "aten.feature_dropout.default"}
_VIEWS = {"aten.view.default", "aten.reshape.default", "aten.flatten.using_ints", "aten.unsqueeze.default",
          "aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default", "aten._unsafe_view.default"}
_ACTIVATIONS = {"aten.relu.default": "RELU", "aten.relu_.default": "RELU", "aten.relu6.default": "RELU6",
                "aten.hardtanh.default": "RELU6", "aten.hardtanh_.default": "RELU6"}
#: Layers a text student's app runs itself (a copy of int8 table rows, edgekd.text.model): flash, not operators.
APP_OPS = {"TOKEN_LOOKUP"}
_SEQUENCE_OPS = {"aten.embedding.default", "aten.permute.default", "aten.transpose.int", "aten.matmul.default",
                 "aten.bmm.default", "aten.layer_norm.default", "aten.chunk.default", "aten.split.Tensor"}
_BATCHNORMS = {"aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default"}
_ELEMENTWISE = {"aten.add.Tensor": "ADD", "aten.add_.Tensor": "ADD", "aten.mul.Tensor": "MUL",
                "aten.sub.Tensor": "SUB", "aten.sigmoid.default": "LOGISTIC", "aten.tanh.default": "TANH",
                "aten.hardswish.default": "HARD_SWISH", "aten.leaky_relu.default": "LEAKY_RELU",
                "aten.softmax.int": "SOFTMAX", "aten._softmax.default": "SOFTMAX"}


@dataclass
class Layer:
    """One operator of the predicted TFLite graph."""

    index: int
    op: str
    name: str
    output_shape: tuple[int, ...]
    output_bytes: int
    params: int = 0
    macs: int = 0
    int8_weight_bytes: int = 0
    fp32_weight_bytes: int = 0
    channels: int = 0
    note: str = ""
    # What the per-operator cycle fits (mcu_cycles.json) need beyond MACs: kernel taps (k_h x k_w), stride,
    # input channels, and the elements of the layer's input.
    kernel: int = 0
    stride: int = 1
    in_channels: int = 0
    input_elems: int = 0


@dataclass
class _Buffer:
    size: int
    first: int  # index of the op that writes it (-1: graph input)
    last: int  # index of the last op that reads it
    offset: int = -1


@dataclass
class LatencyEstimate:
    ms: float
    floor_ms: float
    kind: str = "estimated"
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CostReport:
    """Predicted costs of one model at one input shape, for int8 (MCU) or fp32 tensors."""

    input_shape: tuple[int, ...]
    dtype: str
    params: int
    macs: int
    int8_weight_bytes: int
    fp32_weight_bytes: int
    tflite_bytes: int
    activation_bytes: int
    overhead_bytes: int
    arena_bytes: int
    layers: list[Layer] = field(default_factory=list)

    @property
    def ops(self) -> list[str]:
        """Operators the interpreter must provide (not the app-side token lookup of text students)."""
        return sorted({layer.op for layer in self.layers} - APP_OPS)

    @property
    def model_bytes(self) -> int:
        """Bytes the model occupies in flash/storage: the .tflite file for int8, fp32 weights otherwise."""
        return self.tflite_bytes if self.dtype == "int8" else self.fp32_weight_bytes + self.tflite_bytes \
            - self.int8_weight_bytes

    def latency(self, target: Target) -> LatencyEstimate:
        return estimate_latency(self, target)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ops"] = self.ops
        out["model_bytes"] = self.model_bytes
        return out

    def table(self) -> str:
        """Per-layer table for people."""
        rows = [f"{'#':>3} {'op':<18} {'layer':<24} {'output':<16} {'params':>8} {'MACs':>10} {'act B':>8}"]
        for ly in self.layers:
            shape = "x".join(str(s) for s in ly.output_shape)
            rows.append(f"{ly.index:>3} {ly.op:<18} {ly.name[:24]:<24} {shape:<16} {ly.params:>8} "
                        f"{ly.macs:>10} {ly.output_bytes:>8}" + (f"  {ly.note}" if ly.note else ""))
        return "\n".join(rows)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def tflite_same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """The (before, after) padding TFLite's SAME mode applies along one axis."""
    eff = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def needs_pad_op(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> bool:
    """True when PyTorch's symmetric ``pad`` is neither VALID nor TFLite SAME, so the converter emits PAD."""
    return pad != 0 and tflite_same_padding(size, kernel, stride, dilation) != (pad, pad)


def _shape(node: Any) -> tuple[int, ...]:
    val = node.meta.get("val") if hasattr(node, "meta") else None
    if val is None or not hasattr(val, "shape"):
        return ()
    return tuple(int(s) for s in val.shape)


def _layer_name(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        return str(path).replace("L['self'].", "").replace("L__self___", "") or node.name
    return node.name


def _as_pair(value: Any, rank: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * rank
    value = tuple(int(v) for v in value)
    return value * rank if len(value) == 1 else value


class _GraphLowering:
    """Walks an exported aten graph and emits the TFLite ops the converter will produce."""

    def __init__(self, dtype: str, channels_last_input: bool) -> None:
        self.elem = 1 if dtype == "int8" else 4
        self.layers: list[Layer] = []
        self.buffers: list[_Buffer] = []
        self.buffer_of: dict[Any, int] = {}  # fx node -> buffer index
        self.nhwc: dict[int, bool] = {}  # buffer index -> stored channels-last
        self.constants = 0
        self.channels_last_input = channels_last_input
        self.pieces: dict[Any, list[int]] = {}  # split/chunk node -> one buffer per output
        self.app_rows: set[int] = set()  # buffers of a text student's token rows, laid out by its app

    # -- buffers and ops
    def new_buffer(self, shape: tuple[int, ...], nhwc: bool) -> int:
        self.buffers.append(_Buffer(math.prod(shape) * self.elem, len(self.layers), len(self.layers)))
        self.nhwc[len(self.buffers) - 1] = nhwc
        return len(self.buffers) - 1

    def read(self, buf: int) -> None:
        self.buffers[buf].last = max(self.buffers[buf].last, len(self.layers))

    def emit(self, op: str, name: str, inputs: list[int], shape: tuple[int, ...], nhwc: bool,
             constants: int = 0, **costs: Any) -> int:
        for b in inputs:
            self.read(b)
        out = self.new_buffer(shape, nhwc)
        self.layers.append(Layer(len(self.layers), op, name, shape, self.buffers[out].size, **costs))
        self.constants += constants
        return out

    def as_channels_last(self, node: Any, name: str) -> int:
        """Buffer of ``node`` stored channels-last; inserts the TRANSPOSE the converter would."""
        buf = self.buffer_of[node]
        shape = _shape(node)
        if len(shape) == 3 and self.nhwc[buf]:
            return buf  # output of a 1-D conv: already stored as (N, 1, L, C)
        if len(shape) == 3:  # (N, C, L) -> the converter reshapes to (N, C, 1, L) first
            buf = self.emit("RESHAPE", name, [buf], (shape[0], shape[1], 1, shape[2]), False, constants=1)
            shape = (shape[0], shape[1], 1, shape[2])
        if not self.nhwc[buf] and shape[1] > 1 and math.prod(shape[2:]) > 1:
            return self.emit("TRANSPOSE", name, [buf], shape, True, constants=1,
                             note="channels-first tensor fed to a channels-last op")
        self.nhwc[buf] = True
        return buf

    # -- lowering
    def lower(self, ep: torch.export.ExportedProgram) -> None:
        graph = ep.graph
        user_inputs = set(ep.graph_signature.user_inputs)
        for node in graph.nodes:
            if node.op == "placeholder":
                if node.name in user_inputs:
                    shape = _shape(node)
                    buf = self.new_buffer(shape, self.channels_last_input and len(shape) == 4)
                    self.buffers[buf].first = -1
                    self.buffer_of[node] = buf
                continue
            if node.op == "output":
                for out in node.args[0] if isinstance(node.args[0], list | tuple) else [node.args[0]]:
                    if out in self.buffer_of:
                        self.buffers[self.buffer_of[out]].last = len(self.layers)
                continue
            if node.op != "call_function":
                continue
            self.lower_node(node)

    def lower_node(self, node: Any) -> None:
        target = str(node.target)
        name = _layer_name(node)
        shape = _shape(node)
        src = node.args[0] if node.args else None
        if target == "<built-in function getitem>":
            if src in self.pieces:  # one output of a split/chunk (text transformer's q, k, v)
                self.buffer_of[node] = self.pieces[src][node.args[1]]
            elif src in self.buffer_of and node.args[1] == 0:
                self.buffer_of[node] = self.buffer_of[src]
            return
        if target in _SEQUENCE_OPS:
            self.lower_sequence(node, name, shape, target)
            return
        if target in _ALIAS or target in _BATCHNORMS and self._fusable(src):
            self.buffer_of[node] = self.buffer_of[src]
            return
        if target in _ACTIVATIONS:
            if self._fusable(src):
                self.buffer_of[node] = self.buffer_of[src]
            else:
                buf = self.buffer_of[src]
                self.buffer_of[node] = self.emit(_ACTIVATIONS[target], name, [buf], shape, self.nhwc[buf])
            return
        if target in ("aten.conv2d.default", "aten.conv1d.default"):
            self.buffer_of[node] = self.lower_conv(node, name, shape)
            return
        if target in ("aten.linear.default", "aten.addmm.default"):
            self.buffer_of[node] = self.lower_linear(node, name, shape)
            return
        if target in ("aten.max_pool2d.default", "aten.avg_pool2d.default"):
            self.buffer_of[node] = self.lower_pool(node, name, shape)
            return
        if target in ("aten.adaptive_avg_pool2d.default", "aten.mean.dim", "aten.adaptive_avg_pool1d.default"):
            self.buffer_of[node] = self.lower_mean(node, name, shape, target)
            return
        if target in _VIEWS:
            self.buffer_of[node] = self.lower_view(node, name, shape)
            return
        if target in _ELEMENTWISE:
            inputs = [self.buffer_of[a] for a in node.args if a in self.buffer_of]
            nhwc = any(self.nhwc[b] for b in inputs)
            self.buffer_of[node] = self.emit(_ELEMENTWISE[target], name, inputs, shape, nhwc,
                                             constants=2 - len(inputs))
            return
        if target == "aten.cat.default":
            inputs = [self.buffer_of[a] for a in node.args[0]]
            self.buffer_of[node] = self.emit("CONCATENATION", name, inputs, shape, self.nhwc[inputs[0]])
            return
        if target in _BATCHNORMS:  # standalone BatchNorm: the converter emits MUL + ADD
            buf = self.emit("MUL", name, [self.buffer_of[src]], shape, self.nhwc[self.buffer_of[src]], 1)
            self.buffer_of[node] = self.emit("ADD", name, [buf], shape, self.nhwc[buf], 1)
            return
        inputs = [self.buffer_of[a] for a in node.args if a in self.buffer_of]
        self.buffer_of[node] = self.emit(f"UNSUPPORTED:{target}", name, inputs, shape, False,
                                         note="no TFLite lowering known for this op")

    def lower_sequence(self, node: Any, name: str, shape: tuple[int, ...], target: str) -> None:
        """Ops of the text students (issue 16): the app's token-table lookup, channels-last relabel, TRANSPOSE,
        LayerNorm as the converter decomposes it (float in litert-torch 0.10), BATCH_MATMUL, SLICE for chunk."""
        src = node.args[0]
        if target == "aten.embedding.default":  # (table, ids): the table is looked up by the app beside the body
            table = _shape(src)
            self.buffer_of[node] = self.emit("TOKEN_LOOKUP", name, [self.buffer_of[node.args[1]]], shape, False,
                                             params=math.prod(table), int8_weight_bytes=math.prod(table),
                                             fp32_weight_bytes=4 * math.prod(table), note="token embedding table")
            self.app_rows.add(self.buffer_of[node])
            return
        buf = self.buffer_of[src]
        if target == "aten.permute.default":
            if list(node.args[1]) == [0, 3, 1, 2] and len(shape) == 4 and not self.nhwc[buf]:
                self.buffer_of[node] = buf  # (N, 1, L, E) rows seen as NCHW (N, E, 1, L): channels-last as stored
                self.nhwc[buf] = True
                return
            self.buffer_of[node] = self.emit("TRANSPOSE", name, [buf], shape, False, constants=1)
        elif target == "aten.transpose.int":
            self.buffer_of[node] = self.emit("TRANSPOSE", name, [buf], shape, False, constants=1)
        elif target in ("aten.matmul.default", "aten.bmm.default"):
            other = self.buffer_of[node.args[1]]
            depth = _shape(src)[-1]
            self.buffer_of[node] = self.emit("BATCH_MATMUL", name, [buf, other], shape, False,
                                             macs=math.prod(shape) * depth)
        elif target == "aten.layer_norm.default":
            width = shape[-1]
            for op in ("MEAN", "SQUARED_DIFFERENCE", "MEAN", "ADD", "RSQRT", "MUL", "SUB", "MUL"):
                buf = self.emit(op, name, [buf], shape, False, constants=1)
            self.buffer_of[node] = self.emit("ADD", name, [buf], shape, False, constants=1, params=2 * width,
                                             fp32_weight_bytes=8 * width, int8_weight_bytes=8 * width,
                                             note="LayerNorm: stays float in litert-torch 0.10")
        else:  # aten.chunk / aten.split: one SLICE per output
            outs = node.meta.get("val") or []
            self.pieces[node] = [self.emit("SLICE", name, [buf], tuple(int(d) for d in o.shape), False, constants=2)
                                 for o in outs]

    def _fusable(self, src: Any) -> bool:
        """An activation/BN fuses into a conv, linear or add whose only consumer it is."""
        if src is None or not hasattr(src, "target") or len(src.users) != 1:
            return False
        producer = str(src.target)
        return producer in ("aten.conv2d.default", "aten.conv1d.default", "aten.linear.default",
                            "aten.add.Tensor", "aten.add_.Tensor") or (
            producer in _BATCHNORMS and self._fusable(src.args[0]))

    def lower_conv(self, node: Any, name: str, shape: tuple[int, ...]) -> int:
        x, w = node.args[0], node.args[1]
        kwargs = list(node.args[3:]) + [None] * 4
        wshape = _shape(w)
        rank = len(wshape) - 2
        stride = _as_pair(kwargs[0] if kwargs[0] is not None else 1, rank)
        padding = kwargs[1] if kwargs[1] is not None else 0
        dilation = _as_pair(kwargs[2] if kwargs[2] is not None else 1, rank)
        groups = int(kwargs[3]) if kwargs[3] is not None else 1
        in_shape = _shape(x)
        cin, cout, kernel = in_shape[1], wshape[0], wshape[2:]
        buf = self.as_channels_last(x, name)
        if isinstance(padding, str):
            padding = (0,) * rank if padding == "valid" else tuple((k - 1) * d // 2 for k, d in zip(
                kernel, dilation, strict=True))
        padding = _as_pair(padding, rank)
        spatial = in_shape[2:]
        if any(needs_pad_op(s, k, st, p, d) for s, k, st, p, d in zip(
                spatial, kernel, stride, padding, dilation, strict=True)):
            padded = tuple(s + 2 * p for s, p in zip(spatial, padding, strict=True))
            pshape = (in_shape[0], cin, *(padded if rank == 2 else (1, padded[0])))
            buf = self.emit("PAD", name, [buf], pshape, True, constants=1,
                            note=f"padding={padding[0]} is not TFLite SAME here: explicit padded copy")
        depthwise = groups == cin and groups > 1 or (cin == 1 and groups == 1)
        op = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        if groups not in (1, cin):
            op = f"UNSUPPORTED:grouped conv (groups={groups})"
        kernel_numel = math.prod(kernel)
        weights = cout * (cin // groups) * kernel_numel
        out_spatial = math.prod(shape[2:])
        macs = out_spatial * cout * (cin // groups) * kernel_numel
        out_shape = shape if rank == 2 else (shape[0], shape[1], 1, shape[2])
        return self.emit(op, name, [buf], out_shape, True, constants=2, params=weights + cout, macs=macs,
                         int8_weight_bytes=weights + 4 * cout, fp32_weight_bytes=4 * (weights + cout),
                         channels=cout, kernel=kernel_numel, stride=max(stride), in_channels=cin,
                         input_elems=self.buffers[buf].size // self.elem)

    def lower_linear(self, node: Any, name: str, shape: tuple[int, ...]) -> int:
        x, w = (node.args[1], node.args[2]) if str(node.target) == "aten.addmm.default" else node.args[:2]
        wshape = _shape(w)
        out_f, in_f = (wshape[0], wshape[1]) if str(node.target) != "aten.addmm.default" else (wshape[1], wshape[0])
        rows = math.prod(shape[:-1])
        # A bias-free Linear (the text students' projection) converts to a FULLY_CONNECTED without a bias tensor.
        bias = int(str(node.target) == "aten.addmm.default" or len(node.args) > 2 and node.args[2] is not None)
        return self.emit("FULLY_CONNECTED", name, [self.buffer_of[x]], shape, False, constants=1 + bias,
                         params=in_f * out_f + bias * out_f, macs=rows * in_f * out_f,
                         int8_weight_bytes=in_f * out_f + bias * 4 * out_f,
                         fp32_weight_bytes=4 * (in_f * out_f + bias * out_f),
                         channels=out_f, kernel=1, in_channels=in_f, input_elems=rows * in_f)

    def lower_pool(self, node: Any, name: str, shape: tuple[int, ...]) -> int:
        x = node.args[0]
        kernel = _as_pair(node.args[1], 2)
        stride = _as_pair(node.args[2] if len(node.args) > 2 and node.args[2] else kernel, 2)
        padding = _as_pair(node.args[3] if len(node.args) > 3 else 0, 2)
        in_shape = _shape(x)
        buf = self.as_channels_last(x, name)
        if any(needs_pad_op(s, k, st, p) for s, k, st, p in zip(in_shape[2:], kernel, stride, padding, strict=True)):
            pshape = (in_shape[0], in_shape[1], in_shape[2] + 2 * padding[0], in_shape[3] + 2 * padding[1])
            buf = self.emit("PAD", name, [buf], pshape, True, constants=1, note="pool padding is not SAME")
        op = "MAX_POOL_2D" if "max" in str(node.target) else "AVERAGE_POOL_2D"
        return self.emit(op, name, [buf], shape, True, macs=math.prod(shape) * math.prod(kernel),
                         kernel=math.prod(kernel), stride=max(stride), in_channels=in_shape[1],
                         input_elems=self.buffers[buf].size // self.elem)

    def lower_mean(self, node: Any, name: str, shape: tuple[int, ...], target: str) -> int:
        x = node.args[0]
        in_shape = _shape(x)
        buf = self.buffer_of[x]
        if target == "aten.adaptive_avg_pool1d.default":
            buf = self.as_channels_last(x, name)
            buf = self.emit("TRANSPOSE", name, [buf], (*in_shape[:2], 1, in_shape[2]), False, constants=1,
                            note="1-D pooling goes through a channels-first view")
        elif target == "aten.mean.dim" and len(in_shape) == 4 and self.nhwc[buf] and in_shape[1] > 1 \
                and math.prod(in_shape[2:]) > 1:
            buf = self.emit("TRANSPOSE", name, [buf], in_shape, False, constants=1,
                            note="x.mean(dims) keeps NCHW order; adaptive_avg_pool2d avoids this copy")
        elif target == "aten.adaptive_avg_pool2d.default" and tuple(node.args[1]) != (1, 1):
            return self.emit("UNSUPPORTED:adaptive_avg_pool2d to non-1x1", name, [buf], shape, True)
        return self.emit("MEAN", name, [buf], shape, self.nhwc[buf] and len(shape) == 4, constants=1,
                         macs=math.prod(in_shape), input_elems=math.prod(in_shape))

    def lower_view(self, node: Any, name: str, shape: tuple[int, ...]) -> int:
        x = node.args[0]
        buf = self.buffer_of[x]
        in_shape = _shape(x)
        if buf in self.app_rows:
            return buf  # the app writes the looked-up rows as the body's (N, 1, L, E) input: no RESHAPE in the file
        if math.prod(in_shape) == max(in_shape, default=1) and self.layers and self.layers[-1].op == "MEAN" \
                and self.buffers[buf].first == len(self.layers) - 1:
            return buf  # squeezing unit dims off a MEAN output: the converter folds it into MEAN
        if len(in_shape) == 4 and self.nhwc[buf] and in_shape[1] > 1 and math.prod(in_shape[2:]) > 1:
            buf = self.emit("TRANSPOSE", name, [buf], in_shape, False, constants=1,
                            note="flatten of a feature map needs NCHW order")
        return self.emit("RESHAPE", name, [buf], shape, False, constants=1)


def plan_arena(buffers: list[_Buffer]) -> int:
    """Greedy first-fit placement by descending size, as TFLite Micro's GreedyMemoryPlanner; returns bytes.

    TFLite Micro fills its sort array from the tail and bubble-sorts it stably, so buffers of equal size are
    placed in *descending* tensor order; with residual blocks that order decides how many slots are needed.
    """
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].size, -i))
    placed: list[_Buffer] = []
    high = 0
    for i in order:
        buf = buffers[i]
        size = _align(buf.size)
        live = sorted((p for p in placed if p.first <= buf.last and buf.first <= p.last), key=lambda p: p.offset)
        offset = 0
        for other in live:
            if other.offset - offset >= size:
                break
            offset = max(offset, other.offset + _align(other.size))
        buf.offset = offset
        placed.append(buf)
        high = max(high, offset + size)
    return high


def export_graph(model: torch.nn.Module, input_shape: tuple[int, ...]) -> torch.export.ExportedProgram:
    """Capture ``model`` for batch size 1 with torch.export; one clear error when it cannot be captured."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            dtype = getattr(model, "input_dtype", torch.float32)  # text students take int64 token ids
            return torch.export.export(model, (torch.zeros(1, *input_shape, dtype=dtype),))
    except Exception as exc:  # torch.export raises many types; all mean "not exportable"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgekdError(f"model cannot be exported with torch.export for input {input_shape}: {first}") from None
    finally:
        model.train(was_training)


def analyze(model: torch.nn.Module, input_shape: tuple[int, ...], dtype: str = "int8",
            channels_last_input: bool = True) -> CostReport:
    """Predict params, weight bytes, MACs, flatbuffer size and peak arena of ``model`` for one input.

    ``input_shape`` has no batch dimension. ``dtype`` is the tensor type on the device ("int8" for
    full-integer models, "fp32" otherwise). ``channels_last_input`` says the exported model takes NHWC
    input (what edgekd's TFLite exporter gives 4-D image inputs), so no input TRANSPOSE is counted.
    """
    if dtype not in ("int8", "fp32"):
        raise EdgekdError(f"dtype must be 'int8' or 'fp32', got {dtype!r}")
    ep = export_graph(model, tuple(input_shape))
    low = _GraphLowering(dtype, channels_last_input)
    low.lower(ep)
    layers = low.layers
    params = sum(p.numel() for p in model.parameters())
    int8_w = sum(ly.int8_weight_bytes for ly in layers)
    fp32_w = sum(ly.fp32_weight_bytes for ly in layers)
    activation_tensors = len(low.buffers)
    n_tensors = activation_tensors + low.constants
    weighted = [ly for ly in layers if ly.channels]
    channels = sum(ly.channels for ly in weighted)
    # A text student's table lookup runs in its app: its table is charged (the int8 rows the app holds) but not
    # an operator entry or the token-id input tensor, which the .tflite does not have.
    app_layers = sum(ly.op in APP_OPS for ly in layers)
    tflite_bytes = (int8_w + TFLITE_PER_TENSOR_BYTES * (n_tensors - app_layers)
                    + TFLITE_PER_OP_BYTES * (len(layers) - app_layers) + TFLITE_PER_CHANNEL_BYTES * channels)
    head = plan_arena(low.buffers)
    prepare_temp = max([TFLM_PREPARE_TEMP_BYTES] + [TFLM_PREPARE_TEMP_PER_OP + 8 * ly.channels for ly in weighted])
    overhead = (TFLM_FIXED_BYTES + TFLM_IO_TENSOR_BYTES + TFLM_EVAL_TENSOR_BYTES * n_tensors
                + TFLM_NODE_BYTES * len(layers)
                + sum(TFLM_OP_DATA_BYTES.get(ly.op, 0) for ly in layers)
                + sum(2 * _align(4 * ly.channels) for ly in weighted))  # int32 multiplier + shift per channel
    return CostReport(tuple(input_shape), dtype, params, sum(ly.macs for ly in layers), int8_w, fp32_w,
                      tflite_bytes, head, overhead, max(head, prepare_temp) + overhead, layers)


#: Per-operator cycle fits of edgekd's generated C per Cortex-M core (scripts/calibrate_costs.py writes it).
MCU_CYCLES = Path(__file__).parent / "costdata" / "mcu_cycles.json"


@cache
def _read_fit(path: Path) -> dict[str, Any]:
    """A calibration data file, read once (``{}`` when it is missing or unreadable: profile rates are used)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def mcu_calibration() -> dict[str, Any]:
    """The calibrated per-operator cycle costs of edgekd's generated C per Cortex-M core."""
    return _read_fit(MCU_CYCLES)


def _ceil(n: int, m: int) -> int:
    return -(-n // m) * m


#: Cores whose generated C runs the Helium (MVE) matrix product: taps padded to 16s, channels to 4s, no assembly.
_MVE_CORES = ("cortex-m55", "cortex-m85")


def mcu_layer_features(layer: Layer, folded: bool = False, core: str = "") -> tuple[str, list[float]] | None:
    """The cycle-fit class of one layer as edgekd's generated C runs it, and its feature vector (the order of
    each class's ``features`` in mcu_cycles.json); None for operators without a fit.

    Why these features: the matrix-product kernel (CONV_2D, a depthwise conv from one input channel, FULLY_
    CONNECTED) pads taps to 4s and output channels to 2s, expands each pixel's receptive field once and
    requantizes each output; the depthwise kernel copies the input rows it reads into a window; the
    elementwise and pooling kernels touch every input and output once; the M4/M7 assembly kernels take 3x3
    stride-1 depthwise layers two pixels at a time and matrix products whose padded taps are a multiple of 8 with
    an even channel count (other shapes run C paths: their own classes). ``folded``: a PAD the C folds into the
    convolution after it (no copy). ``core``: on Helium cores the matrix product pads taps to 16 and channels to
    4 (one VMLADAVA per 16 taps, 4 channels a pass); its tail classes (conv_tail, fc_tail) are a channel count
    not a multiple of 4 (the C group path).
    """
    op, outs = layer.op, math.prod(layer.output_shape) if layer.output_shape else 0
    chans = layer.channels or (layer.output_shape[1] if len(layer.output_shape) > 1 else 1)
    if op == "RESHAPE" or op == "PAD" and folded:
        return "free", []
    matrix = op in ("CONV_2D", "FULLY_CONNECTED") or op == "DEPTHWISE_CONV_2D" and layer.in_channels == 1
    if matrix and layer.kernel:
        taps = layer.kernel * (1 if op == "DEPTHWISE_CONV_2D" else layer.in_channels)
        mve = core in _MVE_CORES
        k4, c2 = (_ceil(taps, 16), _ceil(chans, 4)) if mve else (_ceil(taps, 4), _ceil(chans, 2))
        pix = max(outs // max(chans, 1), 1)
        if op == "FULLY_CONNECTED":
            klass = "fc_tail" if mve and chans % 4 else "fc"  # Helium: the C path (channel tails) vs the assembly
        elif op == "DEPTHWISE_CONV_2D":
            klass = "stem"  # a depthwise conv from the one input channel: the students' first layer
        elif chans % 4 if mve else k4 % 8 or chans % 2:
            klass = "conv_tail"  # outside the M4/M7 assembly kernel's shapes (its C path); Helium: channel tails
        else:
            klass = "pointwise" if layer.kernel == 1 else "conv"
        return klass, [pix * k4 * c2, pix * c2, pix * k4, pix, 1.0]
    if op == "DEPTHWISE_CONV_2D" and layer.kernel:
        klass = ("dw3x3s1" if layer.stride == 1 else "dw3x3") if layer.kernel == 9 else "dw"
        rows = layer.output_shape[2] if len(layer.output_shape) == 4 else 1
        return klass, [layer.macs, outs, layer.input_elems, rows * chans, outs // max(chans, 1), 1.0]
    if op in ("ADD", "PAD", "RELU", "RELU6", "SOFTMAX"):
        return op.lower(), [outs, 1.0]
    if op == "MEAN":
        return "mean", [layer.input_elems, outs, 1.0]
    if op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return "avgpool" if op == "AVERAGE_POOL_2D" else "maxpool", [layer.macs, outs, 1.0]
    return None


def _calibrated(report: CostReport, target: Target) -> LatencyEstimate | None:
    """The generated C's latency from per-operator cycle fits on the target's core, when it has them."""
    if not target.is_mcu or "edgekd-c" not in target.runtimes or report.dtype != "int8":
        return None
    core = mcu_calibration().get("cores", {}).get(target.cpu.core)
    if not core or any(ly.macs and not ly.kernel and ly.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
                       for ly in report.layers):  # no kernel shapes (an unreadable graph): profile rate
        return None
    fits, tp = core["classes"], target.throughput
    hz = target.cpu.clock_mhz * 1e6
    io_bytes = math.prod(report.input_shape) + (math.prod(report.layers[-1].output_shape) if report.layers else 0)
    cycles = float(core["invoke"][0]) + core["invoke"][1] * io_bytes  # edgekd_invoke's glue, input/output copies
    fallback = []
    for i, layer in enumerate(report.layers):
        after = report.layers[i + 1].op if i + 1 < len(report.layers) else ""
        feat = mcu_layer_features(layer, after in ("CONV_2D", "DEPTHWISE_CONV_2D"), target.cpu.core)
        if feat is not None and feat[0] == "free":
            continue
        if feat is None or feat[0] not in fits:  # no fit for this operator: the profile's rate, as before
            fallback.append(layer.op)
            cycles += layer.macs / tp.int8_macs_per_cycle if layer.macs else layer.output_bytes
            cycles += tp.op_overhead_us * 1e-6 * hz
            continue
        cycles += max(sum(a * f for a, f in zip(fits[feat[0]]["coef"], feat[1], strict=True)), 0.0)
    floor = report.macs / (tp.peak_int8_macs_per_cycle * hz * tp.threads)
    ms = max(cycles / hz, floor) * 1e3
    err = max(c["max_abs_err_pct"] for c in fits.values())
    method = (f"edgekd-c (generated C) on the {target.cpu.core}: {len(report.layers)} layers charged per-operator "
              f"cycles calibrated from counted runs ({core['counter']}; {core['cases']} single-layer models, fit "
              f"error up to {err:.0f}% per layer; scripts/calibrate_costs.py -> edgekd/costdata/mcu_cycles.json) "
              f"at {target.cpu.clock_mhz:g} MHz ({target.name} profile)")
    if fallback:
        method += f"; no fit for {', '.join(sorted(set(fallback)))}: profile rate used"
    return LatencyEstimate(round(ms, 4), round(floor * 1e3, 4), "estimated", method)


#: Per-operator cycles of text students' int8 bodies on LiteRT + XNNPACK per emulated Cortex-A core
#: (scripts/calibrate_text_cortex_a.py writes it).
CORTEX_A_TEXT_CYCLES = Path(__file__).parent / "text" / "cortex_a_cycles.json"
#: The fit's features, in order: what XNNPACK's int8 kernels spend time on for these operators.
CORTEX_A_TEXT_FEATURES = ("conv_macs", "conv_outputs", "fc_macs", "fc_outputs", "mean_inputs", "operators", "invoke")


def cortex_a_text_calibration() -> dict[str, Any]:
    """The calibrated Cortex-A cycles of text students' operators per emulated core."""
    return _read_fit(CORTEX_A_TEXT_CYCLES)


def cortex_a_text_features(layer: Layer) -> list[float] | None:
    """One layer's contribution to :data:`CORTEX_A_TEXT_FEATURES` (``invoke`` is added once per model); all zeros
    for what the body's file does not run (the app's table lookup, the rows' RESHAPE); None for an operator the
    fit does not cover (the text transformer's attention, LayerNorm, ...)."""
    outs = math.prod(layer.output_shape) if layer.output_shape else 0
    if layer.op in APP_OPS or layer.op == "RESHAPE":
        return [0.0] * len(CORTEX_A_TEXT_FEATURES)
    if layer.op == "CONV_2D":
        return [float(layer.macs), float(outs), 0, 0, 0, 1, 0]
    if layer.op == "FULLY_CONNECTED":
        return [0, 0, float(layer.macs), float(outs), 0, 1, 0]
    if layer.op == "MEAN":
        return [0, 0, 0, 0, float(layer.input_elems), 1, 0]
    return None


def _cortex_a_text(report: CostReport, target: Target) -> LatencyEstimate | None:
    """A text student's int8 body on XNNPACK from per-operator cycles counted on the target's emulated Cortex-A
    core, when the calibration covers every operator; the profile's threads by the counter's own thread model."""
    cpu = target.emulator.cpu if target.emulator else None
    fit = cortex_a_text_calibration().get("cores", {}).get(cpu or "")
    if target.is_mcu or report.dtype != "int8" or not fit or not any(ly.op in APP_OPS for ly in report.layers):
        return None
    total = [0.0] * (len(CORTEX_A_TEXT_FEATURES) - 1) + [1.0]
    ops = 0
    for layer in report.layers:
        feat = cortex_a_text_features(layer)
        if feat is None:
            return None
        ops += any(feat)
        total = [a + b for a, b in zip(total, feat, strict=True)]
    from edgekd.emulate.timing_a import threads_ms

    mhz = target.cpu.clock_mhz
    one = sum(c * f for c, f in zip(fit["coef"], total, strict=True)) / (mhz * 1e3)
    threads = target.throughput.threads
    ms = threads_ms(one, threads, ops, mhz)
    tp = target.throughput
    floor = report.macs / (tp.peak_int8_macs_per_cycle * mhz * 1e6 * threads) * 1e3
    method = (f"text student on LiteRT + XNNPACK: {ops} operators charged per-operator cycles counted on the "
              f"emulated {cpu} (qemu-aarch64 + edgekd.emulate.timing_a; {fit['cases']} bodies, fit error up to "
              f"{fit['max_abs_err_pct']:.0f}%; scripts/calibrate_text_cortex_a.py -> edgekd/text/cortex_a_cycles.json)"
              f": {one:.3f} ms on 1 thread at {mhz:g} MHz, {threads} threads by the counter's (t1 - S) / N + S "
              f"({target.name} profile)")
    return LatencyEstimate(round(max(ms, floor), 4), round(floor, 4), "estimated", method)


def estimate_latency(report: CostReport, target: Target) -> LatencyEstimate:
    """Latency from MACs and the profile's sustained rate, never below the physical peak-rate floor.

    Per layer: MACs / (sustained MACs per cycle x clock x threads) plus the profile's fixed per-operator
    dispatch cost; operators without MACs (PAD, TRANSPOSE, RESHAPE, ADD ...) cost one cycle per output byte.
    Microcontrollers that run edgekd's generated C use its calibrated per-operator cycles instead
    (:func:`mcu_layer_features`), so the estimate predicts the counted figure the latency gate checks; so do text
    students on Cortex-A cores (:func:`cortex_a_text_features`; image models keep the profile rate there).
    """
    calibrated = _calibrated(report, target) or _cortex_a_text(report, target)
    if calibrated is not None:
        return calibrated
    tp = target.throughput
    int8 = report.dtype == "int8"
    rate = tp.int8_macs_per_cycle if int8 else tp.fp32_macs_per_cycle
    peak = tp.peak_int8_macs_per_cycle if int8 else tp.peak_fp32_macs_per_cycle
    hz = target.cpu.clock_mhz * 1e6
    threads = tp.threads
    seconds = 0.0
    for layer in report.layers:
        if layer.macs:
            seconds += layer.macs / (rate * hz * threads)
        else:
            seconds += layer.output_bytes / hz
        seconds += tp.op_overhead_us * 1e-6
    floor = report.macs / (peak * hz * threads)
    ms = max(seconds, floor) * 1e3
    method = (f"{report.macs:,} MACs at {rate} {report.dtype} MACs/cycle x {target.cpu.clock_mhz:g} MHz x "
              f"{threads} thread(s) + {tp.op_overhead_us:g} us/op ({target.name} profile)")
    return LatencyEstimate(round(ms, 4), round(floor * 1e3, 4), "estimated", method)
