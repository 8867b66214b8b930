"""1-D CNN for sensor time series, written as a 2-D net over a 1-pixel-high image.

The task's (C, L) series becomes a (C, 1, L) input; exported channels-last it is (1, L, C): time-major,
channels interleaved, which is how IMU samples arrive on a device, and the graph needs no TRANSPOSE.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from edgekd.students import (
    ConvBNReLU,
    Family,
    StemBodyHead,
    conv_out,
    register_family,
    same_or_valid,
)


class CNN1D(StemBodyHead):
    """``depth`` conv layers with (1, k) kernels, stride 2 while the series is long, width doubling halfway."""
    def __init__(self, params: dict[str, Any], task_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        width, depth, kernel = int(params["width"]), int(params["depth"]), int(params.get("kernel", 5))
        cin, length = task_shape[0], task_shape[-1]
        self.input_shape = (cin, 1, length)
        layers: list[nn.Module] = []
        channels, size = cin, length
        for i in range(depth):
            stride = 2 if size >= 2 * kernel else 1
            pad = same_or_valid(size, kernel, stride)
            out = width * (2 if i >= depth // 2 and depth > 1 else 1)
            layers.append(ConvBNReLU(channels, out, (1, kernel), (1, stride), (0, pad)))
            size = conv_out(size, kernel, stride, pad)
            channels = out
        self.stem = nn.Identity()
        self.finish(layers, channels, params, num_classes)


register_family(Family(
    name="cnn1d",
    kinds=("timeseries",),
    build=CNN1D,
    grid={"width": (8, 16, 24, 32, 48, 64), "depth": (2, 3, 4), "kernel": (3, 5, 7)},
    describe="1-D CNN over (C, 1, L) with (1, k) kernels",
))
