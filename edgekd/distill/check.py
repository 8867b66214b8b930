"""Re-check a trained student on the real toolchain: its int8 .tflite, accuracy on LiteRT, and the arena
TFLite Micro really needs, against the target's budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.data import Splits
from edgekd.distill.train import accuracy, predict
from edgekd.export.tflite import export_tflite_int8
from edgekd.students import model_input_shape, to_model_input
from edgekd.targets import Target
from edgekd.verify.litert import run_litert
from edgekd.verify.tflm import min_arena


def int8_accuracy(model: nn.Module, splits: Splits, path: Path) -> float:
    """Test accuracy of ``model``'s fully-integer .tflite (written to ``path``) on LiteRT's reference kernels."""
    shape = model_input_shape(model)
    artifact = export_tflite_int8(model, shape, to_model_input(splits.x_calib, shape).numpy(), path,
                                  channels_last=model.channels_last_input)
    logits = run_litert(artifact.path, to_model_input(splits.x_test, shape).numpy(), artifact.channels_last,
                        reference=True)
    return accuracy(logits, splits.y_test)


def measure_int8(model: nn.Module, splits: Splits, path: Path, target: Target,
                 qat_state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    shape = model_input_shape(model)
    calib = to_model_input(splits.x_calib, shape).numpy()
    artifact = export_tflite_int8(model, shape, calib, path, channels_last=model.channels_last_input,
                                  qat_state=qat_state)
    x_test = to_model_input(splits.x_test, shape).numpy()
    int8_logits = run_litert(artifact.path, x_test, artifact.channels_last, reference=True)
    float_logits = predict(model, splits.x_test, shape)
    arena = min_arena(artifact.path)
    flash = artifact.bytes + target.runtime_flash_bytes
    ram = arena.min_arena_bytes + target.runtime_ram_bytes
    return {
        "tflite_path": str(artifact.path),
        "tflite_bytes": artifact.bytes,
        "tflite_sha256": artifact.sha256,
        "arena_bytes": arena.min_arena_bytes,
        "flash_bytes": flash,
        "ram_bytes": ram,
        "accuracy_int8": accuracy(int8_logits, splits.y_test),
        "agreement_with_float": float((int8_logits.argmax(1) == float_logits.argmax(1)).mean()),
        "float_islands": artifact.graph.float_islands,
        "runtime": "LiteRT reference kernels (int8) and TFLite Micro arena search, host",
        "fits": flash <= target.budgets.flash_bytes and ram <= target.budgets.ram_bytes
        and not artifact.graph.float_islands,
    }
