"""The int8 ``.tflite`` as plain Python objects: tensors (shape, quantization, constant data) and operators.

Parsed with LiteRT's flatbuffer object API, so no interpreter runs and nothing rewrites the graph.
"""

from __future__ import annotations

import struct
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


MAX_TFLITE_BYTES = 2**31  # flatbuffers address at most 2 GiB; larger models keep data outside (not for MCUs)
_CORRUPT = "not a valid .tflite flatbuffer (truncated or corrupt); pass the exported model_int8.tflite"


def read_tflite(path: str | Path) -> bytes:
    """The bytes of a ``.tflite`` after the cheap checks (a file, not empty, not over 2 GiB, TFL3 identifier at
    offset 4, root offset inside the file): anything else is one EdgekdError line naming the file."""
    path = Path(path)
    if path.is_dir():
        raise EdgekdError(f"{path}: is a folder; pass a .tflite file")
    if not path.is_file():
        raise EdgekdError(f"{path}: no such .tflite file")
    try:
        size = path.stat().st_size
        if size > MAX_TFLITE_BYTES:
            raise EdgekdError(f"{path}: {size:,} bytes is more than a .tflite flatbuffer can address (2 GiB); "
                              "pass the exported model_int8.tflite")
        buf = path.read_bytes()
    except OSError as exc:
        raise EdgekdError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not buf:
        raise EdgekdError(f"{path}: empty file, not a valid .tflite flatbuffer; pass the exported model_int8.tflite")
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise EdgekdError(f"{path}: not a valid .tflite flatbuffer (no TFL3 identifier at offset 4); pass the "
                          "exported model_int8.tflite")
    if int.from_bytes(buf[:4], "little") + 4 > len(buf):
        raise EdgekdError(f"{path}: {_CORRUPT}")
    return buf


def read_model(path: str | Path) -> Any:
    """The whole flatbuffer as LiteRT's object-API ``ModelT``; the generated reader trusts every offset, so a
    truncated or damaged file surfaces as struct.error / IndexError / ..., turned here into one line."""
    from ai_edge_litert import schema_py_generated as schema

    buf = read_tflite(path)
    try:
        return schema.ModelT.InitFromPackedBuf(buf, 0)
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError, MemoryError,
            RecursionError):
        raise EdgekdError(f"{path}: {_CORRUPT}") from None


def _check_indices(model: Any, path: Path) -> None:
    """Every tensor, buffer and operator-code index in range: a flatbuffer can parse and still point anywhere."""
    sub = model.subgraphs[0]
    n_tensors, n_buffers, n_codes = len(sub.tensors or []), len(model.buffers or []), len(model.operatorCodes or [])

    def bad(what: str) -> EdgekdError:
        return EdgekdError(f"{path}: {_CORRUPT.split(';', 1)[0]}: {what}; pass the exported model_int8.tflite")

    for i, t in enumerate(sub.tensors or []):
        if not 0 <= t.buffer < max(n_buffers, 1):
            raise bad(f"tensor {i} uses buffer {t.buffer} of {n_buffers}")
        if any(d < 0 for d in _ints(t.shape)):
            raise bad(f"tensor {i} has shape {tuple(_ints(t.shape))}")
    for k, op in enumerate(sub.operators or []):
        if not 0 <= op.opcodeIndex < n_codes:
            raise bad(f"operator {k} has opcode index {op.opcodeIndex} of {n_codes}")
        for i in _ints(op.inputs) + _ints(op.outputs):
            if not -1 <= i < n_tensors:
                raise bad(f"operator {k} uses tensor {i} of {n_tensors}")
    for i in _ints(sub.inputs) + _ints(sub.outputs):
        if not 0 <= i < n_tensors:
            raise bad(f"the subgraph's input/output is tensor {i} of {n_tensors}")


def load_graph(path: str | Path) -> Graph:
    """Parse ``path`` (one subgraph) into a :class:`Graph`; a file that is not a .tflite is an EdgekdError."""
    path = Path(path)
    model = read_model(path)
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise EdgekdError(f"{path}: {len(model.subgraphs or [])} subgraphs; edgekd-c handles single-subgraph models")
    _check_indices(model, path)
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
            try:
                data = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(tuple(int(s) for s in t.shape))
            except ValueError:
                raise EdgekdError(f"{path}: {_CORRUPT.split(';', 1)[0]}: constant tensor {i} holds {len(raw)} bytes, "
                                  f"which do not fit its shape {tuple(int(s) for s in t.shape)} {dtype}") from None
        elif buffer is not None and getattr(buffer, "offset", 0) > 1:
            raise EdgekdError(f"{path}: tensor {i} keeps its data outside the flatbuffer (a >2 GB model layout); "
                              "edgekd-c needs an ordinary .tflite")
        q = t.quantization
        scales = tuple(float(np.float32(s)) for s in (q.scale if q is not None and q.scale is not None else []))
        zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else []))
        name = t.name.decode(errors="replace") if isinstance(t.name, bytes) else str(t.name or f"t{i}")
        tensors.append(Tensor(i, name, tuple(int(s) for s in (t.shape if t.shape is not None else [])), dtype,
                              scales, zps, data))
    operators = []
    for k, op in enumerate(sub.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        kind = ops.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"CODE_{code.builtinCode}")
        if kind == "CUSTOM":
            kind = f"CUSTOM({code.customCode.decode(errors='replace') if code.customCode else '?'})"
        options = {} if op.builtinOptions is None else dict(vars(op.builtinOptions))
        operators.append(Operator(k, kind, _ints(op.inputs), _ints(op.outputs), options))
    return Graph(tensors, operators, _ints(sub.inputs), _ints(sub.outputs))


def _ints(values: Any) -> list[int]:
    """An optional flatbuffer int vector (None when absent) as a list."""
    return [] if values is None else [int(v) for v in values]
