"""LiteRT (ai-edge-litert) on the host: run a .tflite on task inputs, quantizing and dequantizing as the file says."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekd.logs import native_quiet


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def run_litert(path: str | Path, x: np.ndarray, channels_last: bool, reference: bool = False,
               threads: int = 1, invoke_ms: list[float] | None = None) -> np.ndarray:
    """Dequantized outputs of ``path`` on float inputs ``x`` (N, *model input, channels-first).

    ``reference`` selects LiteRT's built-in reference kernels (TFLite Micro's arithmetic to within one output
    step: tests/test_verify.py) instead of the default XNNPACK-delegated ones. ``invoke_ms``, when given,
    receives the wall time of every invoke.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    with native_quiet():
        it = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
        it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if channels_last and x.ndim == 4:
        x = np.transpose(x, (0, 2, 3, 1))
    in_scale, in_zp = inp["quantization"]
    out_scale, out_zp = out["quantization"]
    results = []
    for row in x:
        data = row[None].astype(np.float32)
        if inp["dtype"] != np.float32:
            data = quantize(data, in_scale, in_zp, inp["dtype"])
        it.set_tensor(inp["index"], data.reshape(inp["shape"]))
        t = time.perf_counter()
        it.invoke()
        if invoke_ms is not None:
            invoke_ms.append((time.perf_counter() - t) * 1e3)
        y = it.get_tensor(out["index"])[0]
        results.append((y.astype(np.float32) - out_zp) * out_scale if out["dtype"] != np.float32 else y)
    return np.stack(results)
