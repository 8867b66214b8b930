"""Per-layer float vs int8: where does the quantized model lose accuracy?

Both ``.tflite`` files come from the same student (the int8 one through PT2E, the fp32 one without), so
their operator sequences match apart from QUANTIZE/DEQUANTIZE. Running both on LiteRT's reference kernels with
every intermediate tensor kept, each operator's dequantized int8 output is compared with the float one as a
signal-to-quantization-noise ratio, SQNR = 10 log10(sum f^2 / sum (q - f)^2). The error is cumulative (each
int8 layer is fed by the int8 layers before it), which is what the deployed model sees; a sharp drop from one
layer to the next points at the layer that adds the error.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.logs import native_quiet
from edgekd.verify.litert import quantize

_SKIP = {"QUANTIZE", "DEQUANTIZE"}
SQNR_CAP_DB = 99.0  # identical outputs


@dataclass
class LayerError:
    index: int
    op: str
    name: str
    shape: list[int]
    sqnr_db: float
    max_abs_err: float
    scale: float  # int8 step of this output: errors of about one step are the rounding floor


def layer_name(tensor_name: str) -> str:
    """``Wrapper/pkg.SmallResNet_wrapped/torch...Sequential_body/BasicBlock_2/ConvBNReLU_conv1/ReLU_2;...`` ->
    ``body.2.conv1.2``: the PyTorch module path litert-torch records in the output tensor's name."""
    first = tensor_name.split(";")[0]
    parts = first.split("/")
    start = next((i + 1 for i, p in enumerate(parts) if p.endswith("_wrapped")), 1 if len(parts) > 1 else 0)
    names = [p.rsplit("_", 1)[-1] if "_" in p else p for p in parts[start:]]
    return ".".join(names) or first


def _run_all(path: Path, x: np.ndarray) -> tuple[list[dict[str, Any]], list[list[np.ndarray]]]:
    """Operators (minus QUANTIZE/DEQUANTIZE) and, per sample, every operator's dequantized output."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with native_quiet():
        it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                         experimental_preserve_all_tensors=True)
        it.allocate_tensors()
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    ops = [op for op in it._get_ops_details() if op["op_name"] not in _SKIP]
    inp = it.get_input_details()[0]
    outs = []
    for row in x:
        data = row[None].astype(np.float32)
        if inp["dtype"] != np.float32:
            data = quantize(data, *inp["quantization"], inp["dtype"])
        it.set_tensor(inp["index"], data.reshape(inp["shape"]))
        it.invoke()
        sample = []
        for op in ops:
            d = tensors[op["outputs"][0]]
            y = it.get_tensor(d["index"]).astype(np.float32)
            scale, zp = d["quantization"]
            sample.append((y - zp) * scale if d["dtype"] != np.float32 else y)
        outs.append(sample)
    described = [{"op": op["op_name"], "name": layer_name(tensors[op["outputs"][0]]["name"]),
                  "shape": [int(s) for s in tensors[op["outputs"][0]]["shape"]],
                  "scale": float(tensors[op["outputs"][0]]["quantization"][0])} for op in ops]
    return described, outs


def layer_errors(int8_path: str | Path, fp32_path: str | Path, x: np.ndarray) -> list[LayerError]:
    """SQNR of every int8 operator's output against the float model's, over inputs ``x`` (model layout)."""
    q_ops, q_out = _run_all(Path(int8_path), x)
    f_ops, f_out = _run_all(Path(fp32_path), x)
    matcher = difflib.SequenceMatcher(a=[o["op"] for o in q_ops], b=[o["op"] for o in f_ops], autojunk=False)
    rows = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            i, j = block.a + k, block.b + k
            q = np.stack([s[i] for s in q_out]).ravel()
            f = np.stack([s[j] for s in f_out]).ravel()
            if q.shape != f.shape:
                continue
            noise = float(np.sum((q - f) ** 2))
            signal = float(np.sum(f ** 2))
            sqnr = SQNR_CAP_DB if noise == 0 else min(SQNR_CAP_DB, 10 * math.log10(max(signal, 1e-30) / noise))
            rows.append(LayerError(i, q_ops[i]["op"], q_ops[i]["name"], q_ops[i]["shape"], round(sqnr, 2),
                                   float(np.max(np.abs(q - f))), q_ops[i]["scale"]))
    return rows


def plot_layer_errors(rows: list[LayerError], path: str | Path, title: str) -> Path:
    """Horizontal bars of SQNR per layer, in execution order, worst layer highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    labels = [f"{r.index}: {r.op} {r.name}" for r in rows]
    values = [r.sqnr_db for r in rows]
    worst = int(np.argmin(values)) if values else -1
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.4))
    colors = ["tab:red" if i == worst else "tab:blue" for i in range(len(rows))]
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(20, color="k", ls=":", lw=1)
    ax.set_xlabel("SQNR of the int8 output vs float (dB, higher is better; cumulative)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    from edgekd.export.core import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
