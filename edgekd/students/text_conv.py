"""Convolution/pooling sentence encoder: token rows -> (1, k) convolutions -> mean over tokens -> projection.

Every op converts to int8 (CONV_2D with fused ReLU, MEAN, FULLY_CONNECTED): this is the text student that
ships as a fully-integer ``.tflite`` and fits a microcontroller with the hashed vocabulary. Convolutions keep
the sequence length (SAME padding, stride 1), so each output position sees ``depth * (kernel - 1) + 1`` tokens
before the mean pools the sentence.

The planner takes the candidate with the most MACs that fits a target, so on a phone or a Pi (budgets of tens of
MB) it takes the grid's largest member. What shapes that member (docs/benchmarks.md, Text): the table's width
bounds what the student can learn (a rank-``embed`` map: the phone build scored 0.742 at 128 wide, 0.705 at 96);
a student is only worth distilling well below its teacher's cost, so candidates over 1/20 of the teacher's MACs
per sentence (the issue's phone goal) are not planned; and the build starts a student from the teacher's
per-token prior (:mod:`edgekd.text.init`), which needs ``width >= 2 * embed``, so a narrower body, which would
train from random rows (a 64-wide phone student reached 0.541 that way, the 96-wide one 0.686 from the
least-squares start), is not planned either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import nn

from edgekd.students import Family, register_family
from edgekd.text.model import TextStudent
from edgekd.text.teacher import DIM, MACS_PER_SENTENCE

#: A planned student costs at most 1/MIN_REDUCTION of the teacher's MACs per sentence.
MIN_REDUCTION = 20


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


def conv_macs(params: dict[str, Any], tokens: int, out_dim: int = DIM) -> int:
    """MACs of one ``tokens``-long sentence: the convolutions at every position plus the projection (the table
    lookup is a row copy, the mean a sum)."""
    embed, width, depth, kernel = (int(params[k]) for k in ("embed", "width", "depth", "kernel"))
    return tokens * kernel * (embed * width + (depth - 1) * width * width) + width * out_dim


def teacher_macs(tokens: int) -> int:
    """The teacher's MACs for ``tokens`` tokens, scaled linearly from its counted 32-token figure (attention's
    quadratic part is small at these lengths)."""
    return MACS_PER_SENTENCE * tokens // 32


@dataclass(frozen=True)
class TextConvFamily(Family):
    """The grid, less the candidates the build could not start from the prior or that would not be much cheaper
    than the teacher."""

    def candidates(self, input_shape: tuple[int, ...], space: bool = False) -> list[dict[str, Any]]:
        cap = teacher_macs(int(input_shape[0]))
        return [p for p in super().candidates(input_shape, space) if int(p["width"]) >= 2 * int(p["embed"])
                and conv_macs(p, int(input_shape[0])) * MIN_REDUCTION <= cap]


register_family(TextConvFamily(
    name="text_conv",
    kinds=("text",),
    build=build,
    grid={"embed": (64, 32, 96, 128), "width": (128, 64, 192, 256), "depth": (2, 1, 3), "kernel": (3, 5),
          "buckets": (None, 4096)},
    describe="token rows -> (1,k) conv+ReLU x depth -> mean over tokens -> linear to the teacher's width",
))
