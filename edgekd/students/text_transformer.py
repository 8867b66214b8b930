"""A small pre-LayerNorm transformer encoder over token rows, mean-pooled (the teacher's shape, shrunk).

It does not convert fully-integer with litert-torch 0.10: LayerNorm lowers to float MEAN / SQUARED_DIFFERENCE /
RSQRT / MUL / SUB, and the attention's BATCH_MATMUL and SOFTMAX stay float between DEQUANTIZE/QUANTIZE. So it
is a float (or XNNPACK) student for phones and Pis, never planned for int8-only cores; ``text_conv`` is the
fully-integer one. ReLU replaces GELU (cheaper everywhere, fuses into FULLY_CONNECTED).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.students import Family, register_family
from edgekd.text.model import TextStudent


class Block(nn.Module):
    def __init__(self, width: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ff1, self.ff2 = nn.Linear(width, ffn), nn.Linear(ffn, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape
        head = width // self.heads
        q, k, v = (t.reshape(n, length, self.heads, head).transpose(1, 2) for t in self.qkv(self.ln1(x)).chunk(3, -1))
        att = torch.softmax(q @ k.transpose(-1, -2) * head**-0.5, dim=-1)
        x = x + self.out((att @ v).transpose(1, 2).reshape(n, length, width))
        return x + self.ff2(F.relu(self.ff1(self.ln2(x))))


class TransformerBody(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, ffn: int, length: int, out_dim: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(length, width) * 0.02)
        self.blocks = nn.Sequential(*(Block(width, heads, ffn) for _ in range(layers)))
        self.ln = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2) + self.pos  # (N, E, 1, L) -> (N, L, E)
        return self.proj(self.ln(self.blocks(x)).mean(1))


def build(params: dict[str, Any], task_shape: tuple[int, ...], out_dim: int) -> TextStudent:
    width, heads = int(params["width"]), int(params["heads"])
    if width % heads:
        raise ValueError(f"text_transformer: width {width} is not a multiple of heads {heads}")
    body = TransformerBody(width, int(params["layers"]), heads, int(params["ffn"]) * width, int(task_shape[0]),
                           out_dim)
    return TextStudent(params, task_shape, out_dim, body, width)


register_family(Family(
    name="text_transformer",
    kinds=("text",),
    build=build,
    grid={"width": (64, 96, 128), "layers": (2, 1, 3, 4), "heads": (2, 4), "ffn": (2, 4),
          "buckets": (None, 4096)},
    describe="pre-LN transformer (ReLU FFN, learned positions) over token rows -> mean -> linear; float only",
))
