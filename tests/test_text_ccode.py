"""The hashed tokenizer and token table in C (edgekd/text/ccode.py): generated deterministically from the
tokenizer's settings and table, identical ids to the Python tokenizer on ASCII text, refused for WordPiece."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekd.errors import EdgekdError
from edgekd.text.ccode import c_sources, run_c_tokenizer
from edgekd.text.tokenize import HashedTokenizer, WordPieceTokenizer

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
CASES = ["Hello, World!", "a\tb\x01c  d", "ALL CAPS... ok?", "", "   ", "x" * 300, "it's 42% (approx.)",
         "a" * 5 + " b" * 40, "draw air into, and expel out of, the lungs", "{[(<quoted>)]}~`|\\^_@#$&*+=-/:;\"'"]


def _write(tmp: Path, buckets: int = 4096, width: int = 8) -> tuple[HashedTokenizer, np.ndarray]:
    tok = HashedTokenizer(buckets, 32)
    table = np.random.default_rng(1).integers(-128, 128, size=(buckets, width), dtype=np.int8)
    for name, text in c_sources(tok.settings(), {"width": width, "scale": 0.05, "zero_point": -2},
                                table.tobytes()).items():
        (tmp / name).write_text(text)
    return tok, table


@needs_gcc
def test_c_tokenizer_gives_the_python_ids_on_ascii_text(tmp_path: Path) -> None:
    tok, _ = _write(tmp_path)
    rng = np.random.default_rng(0)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.;:!?'\"()-\t\x07"))
    randoms = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 200)))) for _ in range(500)]
    texts = CASES + randoms
    ids = run_c_tokenizer(tmp_path, texts, 32)
    assert ids.dtype == np.int32 and ids.shape == (len(texts), 32)
    assert (ids == tok.encode(texts)).all()
    assert ids[3].tolist() == [0] * 32 and (ids[5, 1:] == 0).all() and (ids[7] > 0).all()  # empty, one word, 41 cut
    # 0x80+ bytes are hashed as they are: the Python tokenizer strips the accent first (the documented contract)
    assert run_c_tokenizer(tmp_path, ["cafe"], 32).tolist() == tok.encode(["café"]).tolist()
    assert run_c_tokenizer(tmp_path, ["café"], 32).tolist() != tok.encode(["café"]).tolist()


def test_c_sources_are_deterministic_and_hold_the_table(tmp_path: Path) -> None:
    tok = HashedTokenizer(64, 32)
    table = np.arange(64 * 4, dtype=np.int16).astype(np.int8)
    meta = {"width": 4, "scale": 0.25, "zero_point": 3}
    a, b = c_sources(tok.settings(), meta, table.tobytes()), c_sources(tok.settings(), meta, table.tobytes())
    assert a == b and set(a) == {"edgekd_tokenizer.h", "edgekd_tokenizer.c", "edgekd_token_table.c"}
    assert "#define EDGEKD_TOKENIZER_BUCKETS 64u" in a["edgekd_tokenizer.h"]
    assert "#define EDGEKD_TOKEN_TABLE_ZERO_POINT 3" in a["edgekd_tokenizer.h"]
    assert "  0, 1, 2, 3,\n  4, 5, 6, 7," in a["edgekd_token_table.c"]
    with pytest.raises(EdgekdError, match="expected 64 x 4"):
        c_sources(tok.settings(), meta, table.tobytes()[:-1])
    wp = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])
    with pytest.raises(EdgekdError, match="hashed vocabulary"):
        c_sources(wp.settings(), meta, table.tobytes())
