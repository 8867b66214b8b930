"""Inverted-residual students (MobileNetV2 / MCUNet style), the space ``edgekd search`` explores.

Three stages of inverted-residual blocks (1x1 expand + ReLU6, depthwise k x k + ReLU6, linear 1x1 project, identity
shortcut when shape allows). Per-stage depth (``d1``, ``d2``, ``d3``), one expand ratio, one depthwise kernel (3, 5
or 7), a width multiplier (``width`` = stage-1 channels; stages have width, 2x and 4x) and an input resolution cap.
A strided block on an even-sized map, where TFLite SAME padding would be asymmetric and the conv is VALID instead,
uses a 3x3 depthwise kernel. Every op lowers to CONV_2D / DEPTHWISE_CONV_2D (ReLU6 fused), ADD, MEAN and
FULLY_CONNECTED, all in the microcontroller profiles' operator sets; paddings are TFLite SAME or VALID so no PAD is
emitted.

``grid`` is what ``edgekd plan --family mbv2`` enumerates (kept small: it costs each one); ``space`` is the larger
set ``edgekd search`` samples from. The family is not in the default plan: which student a plain build trains
stays what the benchmarks measured, and ``build --search`` is how an inverted-residual student gets chosen.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgekd.students import (
    Family,
    StemBodyHead,
    conv_step,
    register_family,
)

#: BatchNorm momentum. With torch's 0.1 the running statistics of a deep inverted-residual stack lag far behind
#: its weights in short runs, so the short rungs of `edgekd search` would rank it by stale statistics: on digits
#: (one CPU thread, seed 0, d1=1 d2=2 d3=1 expand=6 kernel=5 width=16) validation accuracy after 1 / 3 / 9 epochs
#: was 9.7 / 34.0 / 97.2% with 0.1 and 45.8 / 86.8 / 97.9% with 0.3, at identical training accuracy.
BN_MOMENTUM = 0.3


class ConvBNReLU6(nn.Sequential):
    """Conv + BatchNorm (+ ReLU6): folds and fuses into one int8 CONV_2D / DEPTHWISE_CONV_2D."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: tuple[int, int], groups: int = 1,
                 act: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout, momentum=BN_MOMENTUM)]
        if act:
            layers.append(nn.ReLU6())
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """Expand (skipped at ratio 1), depthwise, project; the shortcut is an identity (no projection conv, so the
    block input has one int8 scale) and exists only when stride is 1 and channels are unchanged."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, size: tuple[int, int]) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, 1, 1, (0, 0)))
        pad, self.out_size = conv_step(size, kernel, stride)
        if stride > 1 and kernel > 3 and 0 in pad:  # SAME would be asymmetric here, so the conv is VALID, and a
            kernel = 3  # wide VALID kernel throws most of the map away (7x7 stride 2 takes 8x8 to 1x1)
            pad, self.out_size = conv_step(size, kernel, stride)
        self.kernel = kernel
        layers += [ConvBNReLU6(hidden, hidden, kernel, stride, pad, groups=hidden),
                   ConvBNReLU6(hidden, cout, 1, 1, (0, 0), act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y + x if self.residual else y


class MobileNetV2(StemBodyHead):
    """Stem conv, then stages of ``d1``/``d2``/``d3`` inverted-residual blocks at width, 2x and 4x channels;
    stages 2 and 3 halve the resolution (while the feature map is at least 4 pixels a side)."""

    def __init__(self, params: dict[str, Any], task_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        width, expand, kernel = int(params["width"]), int(params["expand"]), int(params["kernel"])
        depths = [int(params["d1"]), int(params["d2"]), int(params["d3"])]
        if kernel not in (3, 5, 7):
            raise ValueError(f"kernel must be 3, 5 or 7, got {kernel}")
        size = self.start_image(params, task_shape, width)
        blocks: list[nn.Module] = []
        channels = width
        for stage, depth in enumerate(depths):
            out = width * 2**stage
            for i in range(depth):
                stride = 2 if i == 0 and stage > 0 and min(size) >= 4 else 1
                block = InvertedResidual(channels, out, expand, kernel, stride, size)
                blocks.append(block)
                size, channels = block.out_size, out
        self.finish(blocks, channels, params, num_classes)


register_family(Family(
    name="mbv2",
    kinds=("image",),
    build=MobileNetV2,
    grid={"width": (8, 16, 24), "expand": (3, 6), "kernel": (3,), "d1": (1,), "d2": (1, 2), "d3": (1, 2),
          "resolution": (None,)},
    space={"width": (8, 12, 16, 24, 32), "expand": (1, 2, 3, 4, 6), "kernel": (3, 5, 7), "d1": (1, 2),
           "d2": (1, 2, 3), "d3": (1, 2, 3), "resolution": (None, 24, 20, 16, 12)},
    describe="inverted-residual CNN (MobileNetV2/MCUNet: expand, depthwise k x k, linear project)",
    default=False,  # planned with --family mbv2 and searched; default builds keep their measured students
))
