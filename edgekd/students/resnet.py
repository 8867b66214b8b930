"""Small ResNet: basic residual blocks whose int8 ADD stays on the integer path."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgekd.students import (
    ConvBNReLU,
    Family,
    StemBodyHead,
    conv_step,
    register_family,
)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + identity shortcut, ReLU after the ADD (fuses into it).

    Shortcuts are always identities: a tensor read by two convolutions (conv path and a 1x1 projection
    shortcut) gets two input observers in PT2E, and the converter then inserts a requantizing copy.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(channels, channels, (3, 3), (1, 1), (1, 1))
        self.conv2 = ConvBNReLU(channels, channels, (3, 3), (1, 1), (1, 1), relu=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + x)


class SmallResNet(StemBodyHead):
    """Stem, then stages of ``depth`` blocks; between stages a strided 3x3 conv halves the resolution and
    doubles the channels (a max pool there would share its input's int8 scale and force a requantizing
    QUANTIZE before the next conv)."""

    def __init__(self, params: dict[str, Any], task_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        width, depth, stages = int(params["width"]), int(params["depth"]), int(params.get("stages", 2))
        size = self.start_image(params, task_shape, width)
        layers: list[nn.Module] = []
        channels = width
        for stage in range(stages):
            if stage > 0:
                stride = 2 if min(size) >= 4 else 1
                pad, size = conv_step(size, 3, stride)
                out = width * 2**stage
                layers.append(ConvBNReLU(channels, out, (3, 3), (stride, stride), pad))
                channels = out
            layers += [BasicBlock(channels) for _ in range(depth)]
        self.finish(layers, channels, params, num_classes)


register_family(Family(
    name="resnet",
    kinds=("image",),
    build=SmallResNet,
    grid={"width": (8, 12, 16, 24, 32), "depth": (1, 2), "stages": (2, 3), "resolution": (None, 16)},
    space={"width": (8, 12, 16, 20, 24, 32, 40, 48), "depth": (1, 2, 3), "stages": (1, 2, 3),
           "resolution": (None, 24, 20, 16, 12)},
    describe="small ResNet (identity basic blocks, strided conv between stages)",
))
