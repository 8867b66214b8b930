"""Teachers: the built-in ones edgekd trains per task, and users' own PyTorch models.

A built-in teacher is saved as a plain dict of tensors and primitives (architecture name, parameters, state
dict, task, accuracy), so it loads with ``torch.load(weights_only=True)``: no pickled code runs. User teachers
come as a ``torch.export`` program (``.pt2``) or as ``package.module:factory`` plus a state dict; both are
checked against the task (output shape, class count) before anything is trained from them.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.data import TaskSpec
from edgekd.errors import EdgekdError

FORMAT = "edgekd-teacher/1"


class _Block(nn.Module):
    def __init__(self, channels: int, dims: int) -> None:
        super().__init__()
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        k = 3 if dims == 2 else 5
        self.body = nn.Sequential(conv(channels, channels, k, 1, k // 2, bias=False), bn(channels), nn.ReLU(),
                                  conv(channels, channels, k, 1, k // 2, bias=False), bn(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class ResNetTeacher(nn.Module):
    """ResNet-style teacher for images or (with ``dims=1``) time series: stem, then per stage a strided conv
    that doubles the width and ``blocks`` residual blocks; global average pool, dropout, linear."""

    feature_layer = "stages"

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 32, blocks: int = 1,
                 stages: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        dims = len(input_shape) - 1
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        k = 3 if dims == 2 else 5
        self.stem = nn.Sequential(conv(input_shape[0], width, k, 1, k // 2, bias=False), bn(width), nn.ReLU())
        layers: list[nn.Module] = []
        channels, size = width, min(input_shape[1:])
        for stage in range(stages):
            out = width * 2**stage
            stride = 2 if stage > 0 and size > 2 else 1
            if stride == 2 or out != channels:
                layers += [conv(channels, out, k, stride, k // 2, bias=False), bn(out), nn.ReLU()]
                size = math.ceil(size / stride)
            layers += [_Block(out, dims) for _ in range(blocks)]
            channels = out
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = x.mean(tuple(range(2, x.dim())))
        return self.fc(self.dropout(x))


ARCHS: dict[str, Callable[..., nn.Module]] = {"resnet-teacher": ResNetTeacher}

# Defaults chosen to reach the accuracy bars (digits >= 98%, fashion-mnist >= 93.5%, basic-motions >= 95%) on
# 2 CPU cores in reasonable time; docs/benchmarks.md records what they reached and how long they took.
DEFAULTS: dict[str, dict[str, Any]] = {
    # digits: no augmentation; one-pixel shifts of an 8x8 digit cost the teacher accuracy (98.3% vs 98.9%).
    "digits": {"arch": "resnet-teacher", "params": {"width": 32, "blocks": 1, "stages": 2}, "epochs": 60,
               "lr": 3e-3, "batch_size": 64, "augment": False},
    "fashion-mnist": {"arch": "resnet-teacher", "params": {"width": 32, "blocks": 1, "stages": 3}, "epochs": 15,
                      "lr": 3e-3, "batch_size": 128},
    "basic-motions": {"arch": "resnet-teacher", "params": {"width": 32, "blocks": 1, "stages": 2}, "epochs": 60,
                      "lr": 3e-3, "batch_size": 8},
}
GENERIC = {"arch": "resnet-teacher", "params": {"width": 32, "blocks": 1, "stages": 3}, "epochs": 20, "lr": 3e-3,
           "batch_size": 128}


def recipe(task: str) -> dict[str, Any]:
    return DEFAULTS.get(task, GENERIC)


def build_teacher(arch: str, params: dict[str, Any], spec: TaskSpec) -> nn.Module:
    if arch not in ARCHS:
        raise EdgekdError(f"unknown teacher architecture {arch!r}; known: {', '.join(ARCHS)}")
    return ARCHS[arch](tuple(spec.input_shape), spec.num_classes, **params)


@dataclass
class Teacher:
    """A loaded teacher: an eval-mode module plus what identifies it (for caches and reports)."""

    module: nn.Module
    sha256: str
    source: str  # "edgekd" | "pt2" | "factory"
    path: str
    feature_layer: str | None = None
    accuracy: float | None = None
    params: int = 0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(x)

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "source": self.source, "sha256": self.sha256, "params": self.params,
                "accuracy": self.accuracy, "feature_layer": self.feature_layer}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_teacher(model: nn.Module, arch: str, params: dict[str, Any], spec: TaskSpec, path: Path,
                 extra: dict[str, Any]) -> None:
    from edgekd.distill.train import atomic_save

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"format": FORMAT, "arch": arch, "params": params, "task": spec.to_dict(),
                 "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}, path)


def _load_edgekd(path: Path, spec: TaskSpec) -> tuple[nn.Module, str, float | None]:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise EdgekdError(f"{path}: not a loadable teacher file ({type(exc).__name__}); expected an edgekd "
                          "teacher (.pt), a torch.export program (.pt2) or --teacher module:factory") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise EdgekdError(f"{path}: not an edgekd teacher file (no '{FORMAT}' marker); for a plain state dict "
                          "use --teacher package.module:factory --teacher-weights FILE")
    task = blob.get("task", {})
    if tuple(task.get("input_shape", ())) != tuple(spec.input_shape) or task.get("num_classes") != spec.num_classes:
        raise EdgekdError(f"{path}: teacher was trained for task {task.get('name')!r} with input "
                          f"{tuple(task.get('input_shape', ()))} and {task.get('num_classes')} classes; task "
                          f"{spec.name!r} has input {spec.input_shape} and {spec.num_classes} classes")
    model = build_teacher(blob["arch"], blob["params"], spec)
    model.load_state_dict(blob["state_dict"])
    return model, getattr(model, "feature_layer", None), blob.get("test_accuracy")


def _load_factory(ref: str, weights: str | None) -> nn.Module:
    module_name, _, attr = ref.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise EdgekdError(f"--teacher {ref}: cannot import {attr!r} from {module_name!r} ({exc})") from None
    model = factory()
    if not isinstance(model, nn.Module):
        raise EdgekdError(f"--teacher {ref}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    if weights:
        if not Path(weights).is_file():
            raise EdgekdError(f"--teacher-weights {weights}: no such file")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            raise EdgekdError(f"--teacher-weights {weights}: not a state dict loadable with weights_only=True "
                              f"({type(exc).__name__})") from None
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise EdgekdError(f"--teacher-weights {weights}: does not match {ref}: {first}") from None
    return model


def load_teacher(ref: str, spec: TaskSpec, weights: str | None = None, feature_layer: str | None = None,
                 probe: np.ndarray | None = None) -> Teacher:
    """Load a teacher from an edgekd teacher file, a ``.pt2`` export or ``module:factory``; check its output."""
    path = Path(ref)
    if ":" in ref and not path.exists():
        model, source, sha = _load_factory(ref, weights), "factory", ""
        sha = file_sha256(Path(weights)) if weights else hashlib.sha256(ref.encode()).hexdigest()
        acc = None
        layer = feature_layer
    elif not path.is_file():
        raise EdgekdError(f"--teacher {ref}: no such file; train one with `edgekd teacher --task {spec.name} "
                          "--out teacher.pt` or pass package.module:factory")
    elif path.suffix == ".pt2":
        try:
            model = torch.export.load(str(path)).module()
        except Exception as exc:  # deserialisation errors come in many types
            raise EdgekdError(f"{path}: cannot load as a torch.export program ({type(exc).__name__})") from None
        source, sha, acc, layer = "pt2", file_sha256(path), None, None
        if feature_layer:
            raise EdgekdError(f"{path}: a .pt2 teacher gives logits only; feature distillation needs "
                              "--teacher package.module:factory with --teacher-layer")
    else:
        model, layer, acc = _load_edgekd(path, spec)
        source, sha = "edgekd", file_sha256(path)
        layer = feature_layer or layer
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):  # exported programs are captured in eval mode already
        pass
    if layer and layer not in dict(model.named_modules()):
        raise EdgekdError(f"--teacher-layer {layer}: the teacher has no such module")
    sample = torch.zeros(2, *spec.input_shape) if probe is None else torch.as_tensor(probe[:2], dtype=torch.float32)
    try:
        with torch.no_grad():
            out = model(sample)
    except Exception as exc:  # a user model can fail in any way
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = " (export the .pt2 with a dynamic batch dimension)" if path.suffix == ".pt2" else ""
        raise EdgekdError(f"--teacher {ref}: fails on a batch of task {spec.name!r} inputs of shape "
                          f"{spec.input_shape}{hint}: {first}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(sample), spec.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EdgekdError(f"--teacher {ref}: outputs {got} for a batch of {len(sample)}, but task {spec.name!r} "
                          f"needs ({len(sample)}, {spec.num_classes}) logits")
    params = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else 0
    return Teacher(model, sha, source, str(ref), layer, acc, params)
