"""The int8 ``.tflite`` as plain Python objects: tensors (shape, quantization, constant data) and operators.

Parsed with LiteRT's flatbuffer object API, so no interpreter runs and nothing rewrites the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError

_DTYPES = {"INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FLOAT32": np.float32,
           "UINT8": np.uint8}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    data: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def scale(self) -> float:
        if not self.scales:
            raise EdgekdError(f"tensor {self.name!r} has no quantization scale: the model is not fully int8; "
                              "export it with edgekd's int8 exporter")
        return self.scales[0]

    @property
    def zero_point(self) -> int:
        return self.zero_points[0] if self.zero_points else 0


@dataclass
class Operator:
    index: int
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]


def _op_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _type_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema
    return {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def load_graph(path: str | Path) -> Graph:
    """Parse ``path`` (one subgraph) into a :class:`Graph`; a file that is not a .tflite is an EdgekdError."""
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    if not path.is_file():
        raise EdgekdError(f"{path}: no such .tflite file")
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise EdgekdError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier); pass the exported model_int8.tflite")
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise EdgekdError(f"{path}: {len(model.subgraphs or [])} subgraphs; edgekd-c handles single-subgraph models")
    sub = model.subgraphs[0]
    ops, types = _op_names(), _type_names()
    tensors = []
    for i, t in enumerate(sub.tensors or []):
        dtype = types.get(t.type, str(t.type))
        data = None
        buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        if buffer is not None and buffer.data is not None and len(buffer.data):
            raw = np.asarray(buffer.data, dtype=np.uint8).tobytes()
            if dtype not in _DTYPES:
                raise EdgekdError(f"{path}: constant tensor {i} has type {dtype}, which edgekd-c does not read")
            data = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(tuple(int(s) for s in t.shape))
        elif buffer is not None and getattr(buffer, "offset", 0) > 1:
            raise EdgekdError(f"{path}: tensor {i} keeps its data outside the flatbuffer (a >2 GB model layout); "
                              "edgekd-c needs an ordinary .tflite")
        q = t.quantization
        scales = tuple(float(np.float32(s)) for s in (q.scale if q is not None and q.scale is not None else []))
        zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else []))
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name or f"t{i}")
        tensors.append(Tensor(i, name, tuple(int(s) for s in (t.shape if t.shape is not None else [])), dtype,
                              scales, zps, data))
    operators = []
    for k, op in enumerate(sub.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        kind = ops.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"CODE_{code.builtinCode}")
        if kind == "CUSTOM":
            kind = f"CUSTOM({code.customCode.decode() if code.customCode else '?'})"
        options = {} if op.builtinOptions is None else dict(vars(op.builtinOptions))
        operators.append(Operator(k, kind, [int(i) for i in op.inputs], [int(i) for i in op.outputs], options))
    return Graph(tensors, operators, [int(i) for i in sub.inputs], [int(i) for i in sub.outputs])
