"""Multi-layer perceptron: the smallest baseline, for tiny inputs (digits, short sensor windows)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from edgekd.students import Family, register_family


class MLP(nn.Module):
    """Flatten, ``depth`` hidden layers of ``width`` units with ReLU (fused into FULLY_CONNECTED), classifier."""

    feature_layer = "hidden"  # feeds feature (hint) distillation

    def __init__(self, params: dict[str, Any], task_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        width, depth = int(params["width"]), int(params["depth"])
        self.input_shape = tuple(task_shape)
        layers: list[nn.Module] = []
        features = math.prod(task_shape)
        for _ in range(depth):
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        self.hidden = nn.Sequential(*layers)
        self.dropout = nn.Dropout(float(params.get("dropout", 0.1)))
        self.fc = nn.Linear(features, num_classes)
        self.feature_channels = features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


register_family(Family(
    name="mlp",
    kinds=("image", "timeseries"),
    build=MLP,
    grid={"width": (32, 64, 128, 256, 512), "depth": (1, 2, 3)},
    channels_last_input=False,
    describe="multi-layer perceptron over the flattened input",
))
