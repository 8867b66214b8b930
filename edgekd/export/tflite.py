"""``.tflite`` through litert-torch (no TensorFlow needed): fully-integer int8 via its PT2E quantizer, or fp32.

int8 has int8 input and output, per-channel weights, histogram calibration on the task's calibration split.
Image models (4-D input) take NHWC input so the file carries no input TRANSPOSE. :func:`inspect_tflite` lists
the operators and finds float islands (ops left in float between DEQUANTIZE/QUANTIZE), which TFLite Micro
targets must not have: the registered exporter refuses them, and operators the target's profile lacks.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.formats.tflite import QuantParams
from edgekd.io import atomic_path, sha256_file
from edgekd.logs import native_quiet
from edgekd.targets import Target


@dataclass
class TfliteGraph:
    """What is inside a .tflite: operators in execution order, I/O quantization, float islands."""

    ops: list[str]
    input: QuantParams
    output: QuantParams
    float_islands: list[str] = field(default_factory=list)
    tensor_count: int = 0

    @property
    def fully_integer(self) -> bool:
        return not self.float_islands and self.input.dtype == "int8" and self.output.dtype == "int8"


@dataclass
class TfliteArtifact:
    path: Path
    bytes: int
    sha256: str
    channels_last: bool
    graph: TfliteGraph

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def inspect_tflite(path: str | Path) -> TfliteGraph:
    """Read operators and tensor types with LiteRT's reference op resolver (no delegate rewrites the graph)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with native_quiet():
        it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    ops = [d for d in it._get_ops_details() if d["op_name"] != "DELEGATE"]
    islands = []
    for op in ops:
        ids = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        if any(tensors[i]["dtype"] == np.float32 for i in ids):  # int8->int8 QUANTIZE is a requantize, fine
            islands.append(op["op_name"])

    def qp(detail: dict[str, Any]) -> QuantParams:
        scale, zp = detail["quantization"]
        shape = tuple(int(s) for s in detail["shape"])
        return QuantParams(float(scale), int(zp), np.dtype(detail["dtype"]).name, shape)

    return TfliteGraph([op["op_name"] for op in ops], qp(it.get_input_details()[0]), qp(it.get_output_details()[0]),
                       islands, len(tensors))


def _quantize_and_convert(model: torch.nn.Module, sample: torch.Tensor, calibration: np.ndarray) -> Any:
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgekd.distill.qat import ResidualAddQuantizer

    quantizer = ResidualAddQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                                             is_dynamic=False))
    captured = torch.export.export(model, (sample,)).module()
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for row in calibration:  # the exported graph has batch size 1
            prepared(torch.from_numpy(np.ascontiguousarray(row[None])))
    converted = convert_pt2e(prepared, fold_quantize=False)
    return litert_torch.convert(converted, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer))


class _ChannelsLastInput(torch.nn.Module):
    """NHWC input in front of a (converted, quantized) NCHW graph: the file then takes NHWC, no TRANSPOSE."""

    def __init__(self, graph: torch.nn.Module) -> None:
        super().__init__()
        self.inner = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 3, 1, 2))


def _convert_qat(model: torch.nn.Module, qat_state: dict[str, torch.Tensor], sample: torch.Tensor,
                 channels_last: bool) -> Any:
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from edgekd.distill.qat import qat_quantizer, rebuild_qat

    converted = convert_pt2e(rebuild_qat(model, qat_state), fold_quantize=False)
    graph = _ChannelsLastInput(converted) if channels_last else converted
    return litert_torch.convert(graph, (sample,), quant_config=QuantConfig(pt2e_quantizer=qat_quantizer()))


def export_tflite_int8(model: torch.nn.Module, input_shape: tuple[int, ...], calibration: np.ndarray,
                       path: str | Path, channels_last: bool | None = None,
                       qat_state: dict[str, torch.Tensor] | None = None) -> TfliteArtifact:
    """Write a fully-integer int8 ``.tflite`` of ``model`` to ``path`` (atomically) and describe it.

    ``calibration`` is float32, channels-first ``(N, *input_shape)`` like the task's splits; ``channels_last``
    defaults to True for image (3-D ``input_shape``) models. With ``qat_state`` (from ``--qat``) the trained
    fake-quant graph is converted as it is and calibration is not used.
    """
    import litert_torch

    path = Path(path)
    if calibration.ndim != len(input_shape) + 1 or tuple(calibration.shape[1:]) != tuple(input_shape):
        raise EdgekdError(f"calibration data has shape {calibration.shape[1:]}, the model expects {input_shape}")
    if len(calibration) == 0:
        raise EdgekdError("calibration set is empty; the task's calibration split must hold samples")
    channels_last = len(input_shape) == 3 if channels_last is None else channels_last
    model = copy.deepcopy(model).eval()  # never flip the caller's model out of training mode
    calib = calibration.astype(np.float32)
    float_model = model
    if channels_last:
        model = litert_torch.to_channel_last_io(model, args=[0]).eval()
        calib = np.transpose(calib, (0, 2, 3, 1))
    sample = torch.from_numpy(np.ascontiguousarray(calib[:1]))
    with atomic_path(path) as tmp:
        with native_quiet():
            if qat_state is not None:
                edge = _convert_qat(float_model, qat_state, sample, channels_last)
            else:
                edge = _quantize_and_convert(model, sample, calib)
            edge.export(str(tmp))
        graph = inspect_tflite(tmp)
    return TfliteArtifact(path, path.stat().st_size, sha256_file(path), channels_last, graph)


def export_tflite_float(model: torch.nn.Module, input_shape: tuple[int, ...], path: str | Path,
                        channels_last: bool | None = None) -> TfliteArtifact:
    """Write an fp32 ``.tflite`` (float I/O, same layout as the int8 one) to ``path`` atomically."""
    import litert_torch

    path = Path(path)
    channels_last = len(input_shape) == 3 if channels_last is None else channels_last
    model = copy.deepcopy(model).eval()
    shape = (1, *input_shape)
    if channels_last:
        model = litert_torch.to_channel_last_io(model, args=[0]).eval()
        shape = (1, input_shape[1], input_shape[2], input_shape[0])
    with atomic_path(path) as tmp:
        with native_quiet():
            litert_torch.convert(model, (torch.zeros(shape),)).export(str(tmp))
        graph = inspect_tflite(tmp)
    return TfliteArtifact(path, path.stat().st_size, sha256_file(path), channels_last, graph)


def refuse_unsupported(graph: TfliteGraph, target: Target, path: Path) -> None:
    """Stop (and delete) an export the target cannot run: unknown operators, or float islands on int8-only cores."""
    try:
        _check_graph(graph, target, path.name)
    except EdgekdError:
        path.unlink(missing_ok=True)
        raise


def _check_graph(graph: TfliteGraph, target: Target, what: str) -> None:
    missing = sorted({op for op in graph.ops if op not in target.operators})
    if missing:
        raise EdgekdError(f"{what}: operator(s) {', '.join(missing)} not supported by target {target.name} "
                          "(its profile's operators list); change the student or the target")
    if graph.float_islands and target.quantization == "int8-full":
        raise EdgekdError(f"{what}: float islands ({', '.join(sorted(set(graph.float_islands)))} run in float "
                          f"between DEQUANTIZE/QUANTIZE) but {target.name} needs a fully-integer model; "
                          "change the student's layers that the quantizer leaves in float")
