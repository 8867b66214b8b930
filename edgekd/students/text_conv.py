"""Convolution/pooling sentence encoder: token rows -> (1, k) convolutions -> mean over tokens -> projection.

Every op converts to int8 (CONV_2D with fused ReLU, MEAN, FULLY_CONNECTED): this is the text student that
ships as a fully-integer ``.tflite`` and fits a microcontroller with the hashed vocabulary. Convolutions keep
the sequence length (SAME padding, stride 1), so each output position sees ``depth * (kernel - 1) + 1`` tokens
before the mean pools the sentence.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import nn

from edgekd.students import Family, register_family
from edgekd.text.model import TextStudent


class ConvBody(nn.Module):
    """Bias-free convolutions and projection, no BatchNorm: a padding position (an all-zero row, far from the
    sentence) stays exactly 0 through every layer (in int8 too: the zero point), so the mean over all ``max_len``
    positions is the mean over the sentence's own positions times n / max_len, a scale cosine ignores. With
    biases or BatchNorm shifts every padding position adds a constant vector, weighted by sentence length: the
    first version of this student (with ConvBNReLU) reached a mean cosine of only 0.36 where a linear
    bag-of-words regression reaches 0.74 (docs/benchmarks.md, Text)."""

    def __init__(self, embed: int, width: int, depth: int, kernel: int, out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = embed
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, (1, kernel), padding=(0, kernel // 2), bias=False), nn.ReLU()]
            channels = width
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(channels, out_dim, bias=False)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.proj(F.adaptive_avg_pool2d(self.convs(x), 1).flatten(1))


def build(params: dict[str, Any], task_shape: tuple[int, ...], out_dim: int) -> TextStudent:
    embed, kernel = int(params["embed"]), int(params["kernel"])
    if kernel % 2 == 0:
        raise ValueError("text_conv: kernel must be odd (SAME padding keeps the sequence length)")
    body = ConvBody(embed, int(params["width"]), int(params["depth"]), kernel, out_dim)
    return TextStudent(params, task_shape, out_dim, body, embed)


register_family(Family(
    name="text_conv",
    kinds=("text",),
    build=build,
    grid={"embed": (64, 32, 96), "width": (128, 64, 192), "depth": (2, 1, 3), "kernel": (3, 5),
          "buckets": (None, 4096)},
    describe="token rows -> (1,k) conv+ReLU x depth -> mean over tokens -> linear to the teacher's width",
))
