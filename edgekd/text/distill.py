"""One text distillation run end to end: sentences, tokens, cached teacher embeddings, training, metrics.

The training sentences are a seeded sample of the corpus's training split; the evaluation pool is a fixed
sample (seed independent of the run's) of the held-out split, so every student of a task is scored on the same
sentences. The probe trains on the labelled sentences among the training sample and is scored on the labelled
sentences of the evaluation pool.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.students import StudentConfig, build_student
from edgekd.text import teacher as teacher_mod
from edgekd.text.corpus import Corpus
from edgekd.text.metrics import TextMetrics, mean_cosine, neighbour_agreement, probe_accuracy
from edgekd.text.model import TextStudent
from edgekd.text.tokenize import Tokenizer, make_tokenizer
from edgekd.text.train import TextTrainConfig, TextTrainResult, student_embed, train_text_student

EVAL_SEED = 20261130  # fixed: the evaluation pool never depends on the run's seed


@dataclass
class TextData:
    train: Corpus
    eval: Corpus

    @classmethod
    def sample(cls, corpus: Corpus, n_train: int, n_eval: int, seed: int = 0) -> TextData:
        train_pool = np.flatnonzero(~corpus.held_out)
        eval_pool = np.flatnonzero(corpus.held_out)
        if n_train < 1 or n_eval < 11:
            raise EdgekdError(f"need at least 1 training and 11 evaluation sentences, got {n_train} and {n_eval}")
        train = np.random.default_rng(seed).permutation(train_pool)[:n_train]
        held = np.random.default_rng(EVAL_SEED).permutation(eval_pool)[:n_eval]
        return cls(corpus.subset(train), corpus.subset(held))


@dataclass
class TextRun:
    student: StudentConfig
    tokenizer: dict[str, Any]
    train: TextTrainConfig
    metrics: TextMetrics
    result: TextTrainResult
    teacher_cache: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    init: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"student": self.student.to_dict(), "tokenizer": self.tokenizer, "train": self.train.to_dict(),
                "metrics": self.metrics.to_dict(), "history": self.result.history,
                "train_seconds": round(self.result.seconds, 1),
                "train_sentences_per_second": round(self.result.sentences_per_second, 1),
                "teacher_cache": self.teacher_cache, "seconds": self.seconds, "init": self.init}


def count_macs(model: torch.nn.Module, tokens: int) -> int:
    """MACs of one sentence (FLOPs / 2 from torch's FLOP counter: matmuls and convolutions, as for the teacher)."""
    from torch.utils.flop_counter import FlopCounterMode

    ids = torch.ones((1, tokens), dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(ids)
    return counter.get_total_flops() // 2


def tokenizer_for(model: TextStudent, words: list[str] | None = None, words_from: str = "") -> Tokenizer:
    """The student's tokenizer: the packaged one of its kind, or for a student trained with its own frequent-words
    list (its config's ``words`` sha256) that list, given here and checked against the sha256."""
    from edgekd.io import sha256_bytes
    from edgekd.text.tokenize import FrequentWordsTokenizer

    spec = model.tokenizer
    if not spec.get("words"):
        return make_tokenizer(spec["kind"], model.max_len, spec.get("buckets", 0) or 4096)
    if words is None or sha256_bytes(("\n".join(words) + "\n").encode()) != spec["words"]:
        raise EdgekdError(f"this student was trained with its own word list (sha256 {spec['words'][:12]}...); "
                          "give that list (the build's student/vocab.txt), not " + ("none" if words is None else
                                                                                   "another one"))
    return FrequentWordsTokenizer(words, int(spec["buckets"]), model.max_len, words_from or "the build's own list")


def token_prior(tok: Tokenizer, texts: list[str], stats: teacher_mod.EmbedStats) -> np.ndarray:
    """The prior table of a student's tokenizer: the teacher's vector of each WordPiece token (cached), or for
    the hashed and frequent-words tokenizers each id's mean over the words of ``texts`` mapped to it."""
    from edgekd.text.init import bucket_prior
    from edgekd.text.tokenize import FrequentWordsTokenizer, HashedTokenizer, WordPieceTokenizer, teacher_vocab

    vectors = teacher_mod.token_vectors(teacher_vocab(), stats=stats)
    if isinstance(tok, HashedTokenizer | FrequentWordsTokenizer):
        return bucket_prior(texts, tok, vectors, WordPieceTokenizer(teacher_vocab(), tok.max_len))
    return vectors.astype(np.float64)


def teacher_embeddings(data: TextData, stats: teacher_mod.EmbedStats) -> tuple[np.ndarray, np.ndarray]:
    return teacher_mod.embed(data.train.texts, stats=stats), teacher_mod.embed(data.eval.texts, stats=stats)


def distil_text(config: StudentConfig, data: TextData, train: TextTrainConfig, max_len: int = 32,
                teacher_macs: int | None = None, probe_teacher: float | None = None,
                init: str = "random", words: list[str] | None = None,
                words_from: str = "") -> tuple[TextStudent, TextRun]:
    """Train one student on ``data`` and score it against the teacher; teacher embeddings come from the cache.
    ``words``, ``words_from``: the frequent-words list of a config that names its own (:func:`tokenizer_for`).

    ``init="lstsq"`` starts a ``text_conv`` student from the factorised ridge regression
    (:func:`edgekd.text.init.init_from_least_squares`) instead of random rows; ``init="prior"`` from the
    ridge shrunk toward the teacher's per-token vectors (:func:`edgekd.text.init.init_from_prior`)."""
    seconds: dict[str, float] = {}
    stats = teacher_mod.EmbedStats()
    start = time.perf_counter()
    t_train, t_eval = teacher_embeddings(data, stats)
    seconds["teacher"] = round(time.perf_counter() - start, 1)
    torch.manual_seed(train.seed)
    model = build_student(config, (max_len,), teacher_mod.DIM)
    assert isinstance(model, TextStudent)
    tok = tokenizer_for(model, words, words_from)
    start = time.perf_counter()
    ids_train, ids_eval = tok.encode(data.train.texts), tok.encode(data.eval.texts)
    seconds["tokenize"] = round(time.perf_counter() - start, 1)
    init_fit = None
    if init == "lstsq":
        from edgekd.text.init import init_from_least_squares

        start = time.perf_counter()
        init_fit = init_from_least_squares(model, ids_train, t_train, train.seed)
        seconds["init"] = round(time.perf_counter() - start, 1)
    elif init == "prior":
        from edgekd.text.init import PRIOR_ALPHA, init_from_prior

        start = time.perf_counter()
        prior_stats = teacher_mod.EmbedStats()
        prior = token_prior(tok, data.train.texts, prior_stats)
        init_fit = init_from_prior(model, ids_train, t_train, prior, PRIOR_ALPHA[tok.kind], train.seed)
        seconds["init"] = round(time.perf_counter() - start, 1)
    elif init != "random":
        raise EdgekdError(f"unknown init {init!r}; choose random, lstsq or prior")
    init_cosine = mean_cosine(student_embed(model, ids_eval), t_eval)
    result = train_text_student(model, ids_train, t_train, train, ids_eval, t_eval)
    start = time.perf_counter()
    s_train, s_eval = student_embed(model, ids_train), student_embed(model, ids_eval)
    metrics = score(s_train, s_eval, t_train, t_eval, data, count_macs(model, max_len),
                    sum(p.numel() for p in model.parameters()), teacher_macs, max_len, probe_teacher)
    seconds["metrics"] = round(time.perf_counter() - start, 1)
    run = TextRun(config, tok.settings(), train, metrics, result, stats.to_dict(), seconds)
    run.init = {"kind": init, "ridge_train_cosine": init_fit, "eval_cosine_before_training": init_cosine}
    if init == "prior":
        run.init["token_vectors_cache"] = prior_stats.to_dict()
    return model, run


def score(s_train: np.ndarray, s_eval: np.ndarray, t_train: np.ndarray, t_eval: np.ndarray, data: TextData,
          student_macs: int, student_params: int, teacher_macs: int | None, tokens: int,
          probe_teacher: float | None = None) -> TextMetrics:
    """Every metric of one student; ``probe_teacher`` (the same for every student of a data sample) is computed
    when not given."""
    top1, top10 = neighbour_agreement(s_eval, t_eval, 10)
    tr, te = data.train.labels >= 0, data.eval.labels >= 0
    y_tr, y_te = data.train.labels[tr].astype(np.int64), data.eval.labels[te].astype(np.int64)
    probe = len(np.unique(y_tr)) >= 2 and te.sum() >= 1  # user text has no labels: no probe
    if probe and probe_teacher is None:
        probe_teacher = probe_accuracy(t_train[tr], y_tr, t_eval[te], y_te)
    teacher = teacher_mod.get_teacher()
    return TextMetrics(
        mean_cosine=mean_cosine(s_eval, t_eval), nn_top1=top1, nn_top10=top10, nn_pool=len(s_eval),
        probe_student=probe_accuracy(s_train[tr], y_tr, s_eval[te], y_te) if probe else None,
        probe_teacher=probe_teacher if probe else None,
        probe_train=int(tr.sum()) if probe else 0, probe_test=int(te.sum()) if probe else 0,
        student_params=student_params,
        student_macs=student_macs, teacher_params=teacher.params,
        teacher_macs=teacher_macs if teacher_macs is not None else teacher.macs(tokens), tokens=tokens)


def save_text_student(model: TextStudent, config: StudentConfig, path: str | Path) -> None:
    """``student.pt`` in the student store's format (``edgekd.students.store.load_student`` rebuilds it): the
    family, config, the text task's spec and the weights, loadable with ``weights_only``."""
    from edgekd.io import atomic_torch_save
    from edgekd.students.store import STUDENT_FORMAT
    from edgekd.text.task import SPEC

    atomic_torch_save({"format": STUDENT_FORMAT, "family": config.family, "config": dict(config.params),
                       "task": SPEC.to_dict(), "input_shape": [model.max_len], "channels_last_input": True,
                       "normalization": None,
                       "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "qat_state": None},
                      path)
