"""What every text student shares: a token embedding table in front of a body that maps (N, E, 1, L) to (N, D).

The table and the body are exported apart. litert-torch 0.10 keeps ``nn.Embedding`` as a float
``EMBEDDING_LOOKUP`` (a float island even with an int8 annotation on its weight), so the device looks token rows
up itself (a copy of ``max_len`` rows of an int8 table quantized with the body's input scale, exactly the values
the body's QUANTIZE would give) and the ``.tflite`` body is fully integer. ``(N, L, E)`` rows laid out as
``(N, 1, L, E)`` are the body's channels-last input, so no TRANSPOSE is needed on either side.

The table's padding row (id 0) is all zeros and never trained: a short sentence's padding is exactly 0 in int8.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: The teacher's WordPiece vocabulary size (``buckets=None`` in a family's config means "use WordPiece").
WORDPIECE_VOCAB = 30522


def vocab_size(params: dict[str, Any]) -> int:
    buckets = params.get("buckets")
    return WORDPIECE_VOCAB if buckets is None else int(buckets)


def tokenizer_spec(params: dict[str, Any]) -> dict[str, Any]:
    """The tokenizer a student was built for (``edgekd.text.tokenize.make_tokenizer`` arguments): WordPiece
    without ``buckets``, else ``params["tokenizer"]`` over that many ids (``hashed`` when not given, as configs
    from before the frequent-words tokenizer were); ``params["words"]``: the sha256 of the frequent-words list the
    student was trained with when it is not the packaged one (the list itself travels as a file beside it)."""
    buckets = params.get("buckets")
    if buckets is None:
        return {"kind": "wordpiece"}
    spec = {"kind": str(params.get("tokenizer") or "hashed"), "buckets": int(buckets)}
    if params.get("words"):  # the sha256 of a word list of its own (a build on the user's sentences)
        spec["words"] = str(params["words"])
    return spec


class TextStudent(nn.Module):
    """ids (N, L) int64 -> table rows -> body -> (N, D) sentence embedding (not normalised; cosine losses are)."""

    input_dtype = torch.long
    feature_layer = "body"

    def __init__(self, params: dict[str, Any], task_shape: tuple[int, ...], out_dim: int, body: nn.Module,
                 embed: int) -> None:
        super().__init__()
        self.max_len = int(task_shape[0])
        self.vocab = vocab_size(params)
        self.tokenizer = tokenizer_spec(params)
        self.embed = nn.Embedding(self.vocab, embed, padding_idx=0)
        nn.init.normal_(self.embed.weight, std=0.02)  # small: rare tokens' rows barely train and must not add noise
        with torch.no_grad():
            self.embed.weight[0].zero_()
        self.body = body
        self.out_dim = out_dim
        self.input_shape = (self.max_len,)
        self.body_input_shape = (embed, 1, self.max_len)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Table rows as the body's NCHW input (N, E, 1, L); the permute is the channels-last relabel."""
        return self.embed(ids).unsqueeze(1).permute(0, 3, 1, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.body(self.rows(ids))
