"""Teachers from other frameworks: ``--teacher model.onnx`` (ONNX Runtime) and ``--teacher model.tflite`` (LiteRT).

The files are data: ONNX Runtime and LiteRT execute the graph's operators, never Python from the file. They give
logits only, so they serve logit distillation (kd, dkd, dist); feature distillation needs a PyTorch teacher.

Inputs: the teacher receives exactly what the student receives, the task's samples normalised per channel
(``(raw - mean[c]) / std[c]`` with the training split's statistics, written to distill.json under
``data.normalization`` and listed per built-in task in docs/distillation.md). The input layout is read from the
model before any training: ``(N, C, H, W)`` or ``(N, H, W, C)`` for images, ``(N, C, L)`` or ``(N, L, C)`` for series;
a model whose input fits neither is refused in one line. A fixed batch size (often 1 in exported files) is
served by running the samples in chunks of that size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.data import TaskSpec
from edgekd.errors import EdgekdError

SUFFIXES = (".onnx", ".tflite")


def _layout(dims: list[Any], spec: TaskSpec, where: str) -> str:
    """"first" (channels-first) or "last" (channels-last) for a model input of ``dims`` (batch dim included; a
    non-integer dim is symbolic and matches anything)."""
    want = tuple(spec.input_shape)
    sample = list(dims[1:])
    last = (*want[1:], want[0])

    def fits(shape: tuple[int, ...]) -> bool:
        return len(sample) == len(shape) and all(not isinstance(d, int) or d <= 0 or d == w
                                                 for d, w in zip(sample, shape, strict=True))

    if fits(want):
        return "first"
    if fits(last):
        return "last"
    named = "(N, C, H, W) or (N, H, W, C)" if len(want) == 3 else "(N, C, L) or (N, L, C)"
    raise EdgekdError(f"{where}: the model's input is {list(dims)}, but task {spec.name!r} gives samples of "
                      f"{want} channels-first, i.e. {named} = {[ 'N', *want]} or {['N', *last]}; export the "
                      "teacher for the task's input")


class _Runner(nn.Module):
    """Runs a foreign model on a batch of channels-first float32 samples, in chunks of its fixed batch size."""

    def __init__(self, layout: str, batch: int | None) -> None:
        super().__init__()
        self.layout, self.batch = layout, batch

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        if self.layout == "last":
            arr = np.ascontiguousarray(np.moveaxis(arr, 1, -1))
        if self.batch is None:
            return torch.from_numpy(np.asarray(self.run(arr), dtype=np.float32))
        outs = []
        for i in range(0, len(arr), self.batch):
            chunk = arr[i:i + self.batch]
            pad = self.batch - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
            outs.append(np.asarray(self.run(chunk), dtype=np.float32)[:len(chunk) - pad])
        return torch.from_numpy(np.concatenate(outs))


class OnnxTeacher(_Runner):
    """An ONNX model run by ONNX Runtime on the CPU."""

    def __init__(self, path: Path, spec: TaskSpec) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgekdError(f"--teacher {path}: ONNX teachers need onnxruntime: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a damaged or unsupported file fails in many ways
            text = " ".join(str(exc).split())[:200]
            raise EdgekdError(f"--teacher {path}: not a model ONNX Runtime can load ({text})") from None
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise EdgekdError(f"--teacher {path}: the model has {len(inputs)} inputs, a teacher takes one (the "
                              "samples)")
        if inputs[0].type != "tensor(float)":
            raise EdgekdError(f"--teacher {path}: the model's input is {inputs[0].type}, a teacher takes "
                              "tensor(float) (normalised samples); export it with a float input")
        dims = list(inputs[0].shape)
        super().__init__(_layout(dims, spec, f"--teacher {path}"), dims[0] if isinstance(dims[0], int) else None)
        self.session, self.input_name = session, inputs[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class TfliteTeacher(_Runner):
    """A .tflite model run by LiteRT (float or fully-integer; int8 inputs and outputs are (de)quantized here)."""

    def __init__(self, path: Path, spec: TaskSpec) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interp = Interpreter(model_path=str(path), num_threads=max(1, torch.get_num_threads()))
        except Exception as exc:  # a damaged file fails in many ways
            text = " ".join(str(exc).split())[:200]
            raise EdgekdError(f"--teacher {path}: not a model LiteRT can load ({text})") from None
        inputs, outputs = self.interp.get_input_details(), self.interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgekdError(f"--teacher {path}: the model has {len(inputs)} inputs and {len(outputs)} outputs, a "
                              "teacher takes one input (the samples) and gives one output (the logits)")
        self.inp, self.out = inputs[0], outputs[0]
        if self.inp["dtype"] not in (np.float32, np.int8, np.uint8):
            raise EdgekdError(f"--teacher {path}: the model's input is {np.dtype(self.inp['dtype']).name}; a teacher "
                              "takes float32 (or int8 with quantization parameters)")
        dims = [int(d) for d in self.inp["shape"]]
        signature = [int(d) for d in self.inp.get("shape_signature", self.inp["shape"])]
        layout = _layout(dims, spec, f"--teacher {path}")
        super().__init__(layout, None if signature[0] == -1 else dims[0])
        self.interp.allocate_tensors()
        self._allocated = dims[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.batch is None and len(x) != self._allocated:
            self.interp.resize_tensor_input(self.inp["index"], [len(x), *x.shape[1:]])
            self.interp.allocate_tensors()
            self._allocated = len(x)
            self.inp, self.out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]
        dtype = self.inp["dtype"]
        if dtype != np.float32:
            scale, zero = self.inp["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        if self.out["dtype"] != np.float32:
            scale, zero = self.out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y


def load_foreign(path: Path, spec: TaskSpec) -> nn.Module:
    """The runner for an ``.onnx`` or ``.tflite`` teacher file (checked input layout)."""
    return OnnxTeacher(path, spec) if path.suffix.lower() == ".onnx" else TfliteTeacher(path, spec)


class Ensemble(nn.Module):
    """Several teachers as one: the mean of their logits."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).float() for m in self.members]).mean(0)
