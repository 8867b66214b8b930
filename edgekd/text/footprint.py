"""Flash a text student's app holds beside its model: the tokenizer's files and the token table's header.

The cost model charges a text student its ``.tflite`` body and its int8 token table (the ``TOKEN_LOOKUP`` layer,
:mod:`edgekd.costmodel`); a bundle also ships ``tokenizer.json``, the vocabulary (``vocab.txt``: the teacher's
30,522 WordPiece pieces, 231 KB, or a frequent-words list) and ``token_table.json``. These are the bytes of the
files the exporter writes (:meth:`edgekd.text.tokenize.Tokenizer.files`,
:func:`edgekd.text.export.token_table_meta`), built from the student's config, so the planner's flash prediction is
what the build's flash gate measures. A microcontroller keeps a frequent-words list as the C tokenizer's sorted
4-byte FNV-1a hashes, not as ``vocab.txt`` (the build's flash gate counts it that way too).

What is not known before the build: the table's int8 input scale and zero point (set by calibration; their JSON
text varies by a few bytes, here a float32 scale's 20 characters and a zero point of 0) and, for a build on the
user's own sentences, how many words its own list keeps (at most the packaged list's count; fewer words give
fewer bytes, so the charge stays on the safe side).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from edgekd.io import dumps_json

#: The scale written into the charged token_table.json; a float32 widened to a double, as calibration gives.
PLACEHOLDER_SCALE = float(np.float32(0.01))
#: How many bytes the real token_table.json may differ from the charged one (scale and zero point text).
TABLE_META_SLACK = 8


@cache
def _tokenizer_files(kind: str, buckets: int, max_len: int) -> tuple[tuple[tuple[str, int], ...], int]:
    """(file name, bytes) of a tokenizer's files and its listed words (0 for none); cached: WordPiece reads 30k
    pieces, and the planner asks once per candidate."""
    from edgekd.text.tokenize import make_tokenizer

    tok = make_tokenizer(kind, max_len, buckets)
    return tuple((name, len(data)) for name, data in tok.files().items()), len(getattr(tok, "words", ()))


def table_meta_bytes(rows: int, width: int) -> int:
    """Bytes of the token_table.json the exporter writes for a ``rows`` x ``width`` table (placeholder scale)."""
    from edgekd.text.export import token_table_meta

    return len(dumps_json(token_table_meta(rows, width, PLACEHOLDER_SCALE, 0, "0" * 64)).encode())


def on_device(files: dict[str, int], words: int, mcu: bool) -> dict[str, int]:
    """Tokenizer file bytes as the device holds them: a microcontroller keeps a ``words``-long list as the C
    tokenizer's sorted 4-byte FNV-1a hashes (``word_hashes``) instead of ``vocab.txt``, which stays on the host."""
    if not (mcu and words and "vocab.txt" in files):
        return dict(files)
    return {name: n for name, n in files.items() if name != "vocab.txt"} | {"word_hashes": 4 * words}

def app_flash_bytes(params: dict[str, Any], max_len: int, mcu: bool, bucket_tokenizer: str = "hashed"
                    ) -> dict[str, int]:
    """Bytes a device holds for a text student besides its ``.tflite`` body and table, by file. ``params``: the
    student's config (``buckets`` None: WordPiece; else ``tokenizer``, or ``bucket_tokenizer`` when the config
    names none: the build recipe's choice, :func:`edgekd.build.text.with_tokenizer`); ``mcu``: a microcontroller,
    which holds a frequent-words list as 4-byte hashes (``word_hashes``) instead of ``vocab.txt``."""
    from edgekd.text.model import vocab_size

    buckets = params.get("buckets")
    kind = "wordpiece" if buckets is None else str(params.get("tokenizer") or bucket_tokenizer)
    files, words = _tokenizer_files(kind, int(buckets or 0) or 4096, max_len)
    out = on_device(dict(files), words, mcu)
    out["token_table.json"] = table_meta_bytes(vocab_size(params), int(params.get("embed") or params["width"]))
    return out
