"""The hashed tokenizer and token table in C (edgekd/text/ccode.py): generated deterministically from the
tokenizer's settings and table, identical ids to the Python tokenizer on ASCII text, refused for WordPiece."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekd.errors import EdgekdError
from edgekd.text.ccode import c_sources, run_c_tokenizer
from edgekd.text.tokenize import FrequentWordsTokenizer, HashedTokenizer, WordPieceTokenizer, frequent_words

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
CASES = ["Hello, World!", "a\tb\x01c  d", "ALL CAPS... ok?", "", "   ", "x" * 300, "it's 42% (approx.)",
         "a" * 5 + " b" * 40, "draw air into, and expel out of, the lungs", "{[(<quoted>)]}~`|\\^_@#$&*+=-/:;\"'"]


def _write(tmp: Path, buckets: int = 4096, width: int = 8,
           words: list[str] | None = None) -> tuple[HashedTokenizer | FrequentWordsTokenizer, np.ndarray]:
    tok = HashedTokenizer(buckets, 32) if words is None else FrequentWordsTokenizer(words, buckets, 32)
    table = np.random.default_rng(1).integers(-128, 128, size=(buckets, width), dtype=np.int8)
    for name, text in c_sources(tok.settings(), {"width": width, "scale": 0.05, "zero_point": -2},
                                table.tobytes(), words).items():
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
    with pytest.raises(EdgekdError, match="hashed and frequent-words vocabularies"):
        c_sources(wp.settings(), meta, table.tobytes())


@needs_gcc
@pytest.mark.parametrize("n", [3072, 4094])  # 1,023 hashed ids for unlisted words; the default: one shared id
def test_frequent_words_c_tokenizer_gives_the_python_ids(tmp_path: Path, n: int) -> None:
    words = frequent_words(n)
    tok, _ = _write(tmp_path, words=words)
    rng = np.random.default_rng(2)
    pool = np.array(words[:500] + ["zebra", "Qwerty", "xylophones", "UNLISTED", "9"])
    sentences = [" ".join(rng.choice(pool, size=int(rng.integers(0, 40)))) for _ in range(300)]
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.;:!?'\"()-\t"))
    randoms = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 120)))) for _ in range(200)]
    texts = CASES + sentences + randoms + [" ".join(words)]
    ids = tok.encode(texts)
    assert (run_c_tokenizer(tmp_path, texts, 32) == ids).all()
    assert ((ids[len(CASES) : len(CASES) + 300] >= 1) | (ids[len(CASES) : len(CASES) + 300] == 0)).all()
    listed = ids[-1]  # the first 32 listed words all get ids 1..n
    assert (listed >= 1).all() and (listed <= n).all() and len(set(listed.tolist())) == 32
    assert (tok.encode(["zebroid qwertyuiop"]) > n).sum() == 2


def test_frequent_words_c_sources_hold_the_sorted_hashes_and_refuse_a_wrong_list() -> None:
    words = ["the", "of", "dog"]
    tok = FrequentWordsTokenizer(words, 64, 32)
    table = np.zeros(64 * 4, dtype=np.int8).tobytes()
    meta = {"width": 4, "scale": 0.25, "zero_point": 3}
    a = c_sources(tok.settings(), meta, table, words)
    assert a == c_sources(tok.settings(), meta, table, words)
    assert "#define EDGEKD_TOKENIZER_WORDS 3u" in a["edgekd_tokenizer.h"]
    hashes = ", ".join(f"0x{h:08X}u" for h in sorted(tok.hashes))
    assert f"edgekd_tokenizer_word_hashes[EDGEKD_TOKENIZER_WORDS] = {{\n  {hashes}\n}};" in a["edgekd_token_table.c"]
    with pytest.raises(EdgekdError, match="vocab.txt does not match"):
        c_sources(tok.settings(), meta, table, ["the", "of", "cat"])
    with pytest.raises(EdgekdError, match="needs the word list"):
        c_sources(tok.settings(), meta, table)
    # the hashed tokenizer's sources carry no word table
    assert "WORDS" not in c_sources(HashedTokenizer(64, 32).settings(), meta, table)["edgekd_tokenizer.h"]


def _user_text(tmp: Path, sentences: int = 400, vocabulary: int = 600) -> Path:
    """A tiny user text file: Zipf-distributed made-up words, plus a non-ASCII word and a word used once."""
    rng = np.random.default_rng(4)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti") for b in range(vocabulary // 8)]
    p = 1.0 / np.arange(1, len(vocab) + 1)
    lines = [" ".join(rng.choice(vocab, size=int(rng.integers(3, 20)), p=p / p.sum())) for _ in range(sentences)]
    path = tmp / "my nötes*.txt"  # a file name the C comment that records it shows as printable ASCII
    path.write_text("\n".join(lines + ["straße straße straße", "once-only hapaxword"]) + "\n", encoding="utf-8")
    return path


@needs_gcc
def test_a_user_texts_own_frequent_words_give_the_same_ids_in_python_and_c(tmp_path: Path) -> None:
    from collections import Counter

    from edgekd.text.corpus import read_sentence_file
    from edgekd.text.tokenize import corpus_frequent_words, load_tokenizer, split_words

    path = _user_text(tmp_path)
    texts = read_sentence_file(path)
    words = corpus_frequent_words(texts, 4094)
    counts = Counter(w for t in texts for w in split_words(t)[:32])
    assert words == corpus_frequent_words(list(texts), 4094)  # deterministic
    assert words[:3] == [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:3]
    assert all(counts[w] >= 2 for w in words) and "hapaxword" not in words and "straße" not in words
    assert len(words) == sum(1 for w, c in counts.items() if c >= 2 and w.isascii())  # no FNV-1a clash here
    origin = f"the {len(words)} most frequent words of {path.name}"
    tok = FrequentWordsTokenizer(words, 4096, 32, origin)
    assert tok.settings()["words_from"] == origin
    table = np.random.default_rng(1).integers(-128, 128, size=(4096, 8), dtype=np.int8)
    src = c_sources(tok.settings(), {"width": 8, "scale": 0.05, "zero_point": -2}, table.tobytes(), words)
    comment = next(line for line in src["edgekd_token_table.c"].splitlines() if "listed words" in line)
    assert tok.settings()["vocab_sha256"] in comment and "my n?tes*.txt" in comment and comment.endswith("*/")
    out = tmp_path / "c"
    out.mkdir()
    for name, text in src.items():
        (out / name).write_text(text)
    ids = tok.encode(texts)
    assert (run_c_tokenizer(out, texts, 32) == ids).all()
    listed = ids[(ids > 0) & (ids <= len(words))]
    assert len(set(listed.tolist())) == len(words)  # every listed word of the file has its own id
    tok.save(tmp_path / "t")  # the bundle's tokenizer.json + vocab.txt read back with their origin
    again = load_tokenizer(tmp_path / "t")
    assert again.settings() == tok.settings() and (again.encode(texts) == ids).all()
