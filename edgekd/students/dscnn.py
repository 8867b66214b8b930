"""Depthwise-separable CNN (DS-CNN / MobileNet-v1 style): the workhorse of microcontroller vision."""

from __future__ import annotations

from typing import Any

from torch import nn

from edgekd.students import (
    ConvBNReLU,
    Family,
    StemBodyHead,
    conv_step,
    register_family,
)


class DSCNN(StemBodyHead):
    """Stem conv, then ``depth`` blocks of depthwise 3x3 + pointwise 1x1; channels double at each downsample."""

    def __init__(self, params: dict[str, Any], task_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        width, depth = int(params["width"]), int(params["depth"])
        size = self.start_image(params, task_shape, width)
        blocks: list[nn.Module] = []
        channels = width
        downsample_at = {1, 3} if depth >= 4 else {1}
        for i in range(depth):
            stride = 2 if i in downsample_at and min(size) >= 4 else 1
            out = channels * 2 if stride == 2 else channels
            pad, size = conv_step(size, 3, stride)
            blocks += [ConvBNReLU(channels, channels, (3, 3), (stride, stride), pad, groups=channels),
                       ConvBNReLU(channels, out, (1, 1), (1, 1), (0, 0))]
            channels = out
        self.finish(blocks, channels, params, num_classes)


register_family(Family(
    name="dscnn",
    kinds=("image",),
    build=DSCNN,
    grid={"width": (8, 12, 16, 24, 32, 48, 64), "depth": (2, 3, 4, 5, 6), "resolution": (None, 20, 16)},
    space={"width": (8, 12, 16, 20, 24, 32, 40, 48, 56, 64, 80, 96), "depth": (2, 3, 4, 5, 6, 7, 8),
           "resolution": (None, 24, 20, 16, 12)},
    describe="depthwise-separable CNN (stem conv + depthwise/pointwise blocks)",
))
