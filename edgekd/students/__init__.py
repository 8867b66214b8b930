"""Student families, registered by name; each builds microcontroller-clean PyTorch modules.

A family turns a config (width, depth, input resolution ...) into an ``nn.Module`` whose converted int8
graph uses only operators the MCU profiles allow, with no float islands and no needless PAD or TRANSPOSE
(``tests/test_students.py`` converts each family and checks the graph). Every student carries
``input_shape``: the shape it takes, which may differ from the task's (a lower resolution, or a time series
seen as a 1-pixel-high image); :func:`to_model_input` maps task data to it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import EdgekdError


@dataclass(frozen=True)
class StudentConfig:
    family: str
    params: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return f"{self.family}:{json.dumps(self.params, sort_keys=True)}"

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "config": dict(self.params)}


@dataclass(frozen=True)
class Family:
    name: str
    kinds: tuple[str, ...]  # task kinds it serves: "image", "timeseries"
    build: Callable[[dict[str, Any], tuple[int, ...], int], nn.Module]
    grid: dict[str, tuple[Any, ...]]  # search space: every combination is a candidate
    channels_last_input: bool = True
    describe: str = ""
    plannable: bool = True  # the planner enumerates its grid (the user's own student is named, never planned)
    space: dict[str, tuple[Any, ...]] | None = None  # what `edgekd search` samples from (default: the grid)
    default: bool = True  # planned without --family (False: only when named, or by `edgekd search`)

    def candidates(self, input_shape: tuple[int, ...], space: bool = False) -> list[dict[str, Any]]:
        """Every combination of the grid (or of the search ``space``) that is distinct for this input."""
        grid = self.space or self.grid if space else self.grid
        keys = sorted(grid)
        out = []
        for values in itertools.product(*(grid[k] for k in keys)):
            params = dict(zip(keys, values, strict=True))
            res = params.get("resolution")
            if res is not None and (len(input_shape) != 3 or res >= max(input_shape[1:])):
                continue  # the resolution cap would not shrink anything: same as resolution=None
            out.append(params)
        return out


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family; its search ``space`` (if any) must name exactly the grid's parameters and hold every grid
    value, so ``edgekd search`` can always reach the planner's pick and ``--config`` names every parameter."""
    if family.space is not None:
        if set(family.space) != set(family.grid):
            raise EdgekdError(f"search space of {family.name}: parameters {sorted(family.space)} differ from its "
                              f"grid's {sorted(family.grid)}")
        missing = {k: [v for v in family.grid[k] if v not in family.space[k]] for k in family.grid}
        if any(missing.values()):
            raise EdgekdError(f"search space of {family.name} leaves out grid values "
                              f"{ {k: v for k, v in missing.items() if v} }")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise EdgekdError(f"unknown student family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def families_for(kind: str, names: Iterable[str] | None = None) -> list[Family]:
    chosen = [get_family(n) for n in names] if names else [f for f in FAMILIES.values() if f.default]
    return [f for f in chosen if kind in f.kinds and f.plannable]


def parse_config(family: str, text: str) -> StudentConfig:
    """``width=16,depth=4`` for ``family``: named parameters from its grid (others take the grid's first value),
    plus ``dropout``; a wrong name, a missing or non-numeric value, or one out of range is one EdgekdError line."""
    fam = get_family(family)
    params: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = (part.strip() for part in item.partition("="))
        if key not in fam.grid and key != "dropout":
            raise EdgekdError(f"--config: {family} has no parameter {key!r}; it has {', '.join(fam.grid)}")
        if not sep or not value:
            raise EdgekdError(f"--config: {item!r} needs a value, e.g. {key}={fam.grid.get(key, (0.1,))[-1]}")
        if value.lower() == "none" and None in fam.grid.get(key, ()):
            params[key] = None
            continue
        try:
            number = float(value) if key == "dropout" else int(value)
        except ValueError:
            raise EdgekdError(f"--config: {key}={value!r} is not a number") from None
        if (key == "dropout" and not 0 <= number < 1) or (key != "dropout" and number < 1):
            raise EdgekdError(f"--config: {key}={value} is out of range")
        params[key] = number
    for key, values in fam.grid.items():
        params.setdefault(key, values[0])
    return StudentConfig(family, params)


def build_student(config: StudentConfig, task_input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build a student; seeds are the caller's business (``torch.manual_seed``) so builds are reproducible."""
    family = get_family(config.family)
    model = family.build(dict(config.params), tuple(task_input_shape), num_classes)
    model.edgekd_config = config  # type: ignore[attr-defined]
    model.channels_last_input = family.channels_last_input  # type: ignore[attr-defined]
    return model


def model_input_shape(model: nn.Module) -> tuple[int, ...]:
    return tuple(model.input_shape)  # type: ignore[attr-defined]


def to_model_input(x: np.ndarray | torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Map task data (N, *task shape) to what a student takes: a free reshape, or area downsampling."""
    t = torch.as_tensor(x, dtype=torch.float32)
    if tuple(t.shape[1:]) == tuple(shape):
        return t
    if t[0].numel() == int(np.prod(shape)):
        return t.reshape(len(t), *shape)
    if t.dim() == 4 and len(shape) == 3 and t.shape[1] == shape[0]:
        return F.interpolate(t, size=tuple(shape[1:]), mode="area")
    raise EdgekdError(f"cannot map task inputs of shape {tuple(t.shape[1:])} to student input {shape}")


def same_or_valid(size: int, kernel: int, stride: int) -> int:
    """Symmetric padding that TFLite reads as SAME, or 0 (VALID) where SAME would be asymmetric.

    Asymmetric SAME (stride 2 on an even size) would otherwise become an explicit PAD op plus a padded copy.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2 if total % 2 == 0 else 0


def conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def image_size(params: dict[str, Any], task_shape: tuple[int, ...]) -> tuple[int, int]:
    """Student input (H, W): the task's, each side capped at ``resolution`` when given (never upsampled)."""
    h, w = task_shape[1], task_shape[2]
    res = params.get("resolution")
    return (h, w) if res is None else (min(int(res), h), min(int(res), w))


def conv_step(size: tuple[int, int], kernel: int, stride: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Per-axis (padding, output size) of a square-kernel conv, padding chosen by :func:`same_or_valid`."""
    pads = tuple(same_or_valid(s, kernel, stride) for s in size)
    return pads, tuple(conv_out(s, kernel, stride, p) for s, p in zip(size, pads, strict=True))  # type: ignore[return-value]


class ConvBNReLU(nn.Sequential):
    """Conv + BatchNorm + ReLU; BN folds and ReLU fuses into one int8 CONV_2D / DEPTHWISE_CONV_2D."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], groups: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class StemBodyHead(nn.Module):
    """A student built as stem -> body -> classifier head; the body's output feeds feature distillation."""

    feature_layer = "body"
    stem: nn.Module
    body: nn.Module
    head: nn.Module

    def start_image(self, params: dict[str, Any], task_shape: tuple[int, ...], width: int) -> tuple[int, int]:
        """Set ``input_shape`` (the task's image, capped at ``resolution``) and the 3x3 ``stem``; returns the
        stem's output size. One place, so every image family takes its input the same way."""
        cin = task_shape[0]
        size = image_size(params, task_shape)
        self.input_shape = (cin, *size)
        self.stem, size = image_stem(cin, width, size)
        return size

    def finish(self, body: list[nn.Module], channels: int, params: dict[str, Any], num_classes: int) -> None:
        """The shared tail: ``body`` as one Sequential, then pool + dropout + classifier over its ``channels``.

        Assigned in this order (body, then head) so parameters are created, and state_dict keys listed, exactly
        as the families did before this helper: seeded models and saved checkpoints stay byte-identical."""
        self.body = nn.Sequential(*body)
        self.head = ClassifierHead(channels, num_classes, float(params.get("dropout", 0.1)))
        self.feature_channels = channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def image_stem(cin: int, width: int, size: tuple[int, int]) -> tuple[nn.Module, tuple[int, int]]:
    """3x3 conv stem, stride 2 when the image is at least 16 pixels a side; returns it and the output size."""
    stride = 2 if min(size) >= 16 else 1
    pad, size = conv_step(size, 3, stride)
    return ConvBNReLU(cin, width, (3, 3), (stride, stride), pad), size


class ClassifierHead(nn.Module):
    """Global average pool as adaptive_avg_pool2d (one MEAN op; ``x.mean((2, 3))`` costs a TRANSPOSE)."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(F.adaptive_avg_pool2d(x, 1).flatten(1)))


from edgekd.students import (  # noqa: E402,F401  (register the families; text_*: issue 16)
    cnn1d,
    dscnn,
    mbv2,
    mlp,
    resnet,
    text_conv,
    text_transformer,
    user,
)
