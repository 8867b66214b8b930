"""Least-squares initialisation of a ``text_conv`` student: start from the best linear bag-of-words model.

SGD on 20,000 sentences leaves most of a 30,522-row WordPiece table barely trained (rare tokens), while a ridge
regression from token frequencies to the teacher's embedding solves every row at once (docs/benchmarks.md,
Text: 0.74 mean cosine vs 0.54 for the same student trained from random rows). This writes a rank-``embed``
factorisation of that regression into the student so that its first forward pass already computes it:

* ridge ``W`` (vocab x 384, no intercept) = ``U S V^T``; the table gets ``U_E sqrt(S_E)``;
* the first convolution's centre tap holds ``[I; -I]`` and the next ones pass those ``2 E`` channels on
  (``relu(x) - relu(-x) = x``), the projection holds ``[B, -B]`` with ``B = sqrt(S_E) V_E^T``;
* the other channels keep small random weights (exact zeros would never train through ReLU).

Because the body is bias-free and padding rows stay 0, the output is proportional to the regression's
prediction, and cosine ignores the scale. Training then fine-tunes everything end to end.

``init_from_prior`` (the builds' start since the per-token prior, docs/benchmarks.md, Text) changes two things:

* the ridge shrinks toward a prior table instead of toward zero (``W = P + ridge(X, Y - X P)``), so a token
  the training sample rarely or never saw keeps the teacher's own vector for it (Model2Vec's idea:
  :func:`edgekd.text.teacher.token_vectors`, the teacher's embedding of ``[CLS] token [SEP]``); for the
  hashed vocabulary the prior of a bucket is the count-weighted mean of the vectors of the training words
  hashing into it (:func:`bucket_prior`);
* the rank-``embed`` reduction keeps the ``embed`` directions that matter for the fitted sentences (reduced-
  rank regression: ``W V V^T`` with ``V`` the top right singular vectors of ``X W``) rather than those of the
  table itself, where rare tokens' rows weigh as much as "the".
"""

from __future__ import annotations

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.text.model import TextStudent
from edgekd.text.tokenize import FrequentWordsTokenizer, HashedTokenizer, WordPieceTokenizer

RIDGE_ALPHA = 0.1
#: Ridge strength toward the prior, per tokenizer: the best of 0.03 / 0.1 / 0.3 / 1 on a 2,000-sentence
#: validation split of the 20,000 training sentences (never the evaluation pool; docs/text_init.json;
#: frequent: 0.01 / 0.03 / 0.1 / 0.3 / 1, docs/text_tokenizers_validation.json).
PRIOR_ALPHA = {"wordpiece": 0.03, "hashed": 0.3, "frequent": 0.1}


def bag_of_words(ids: np.ndarray, vocab: int):  # type: ignore[no-untyped-def]
    """Token frequencies per sentence (rows sum to 1, padding dropped), as a sparse matrix."""
    import scipy.sparse as sparse

    rows = np.repeat(np.arange(len(ids)), ids.shape[1])
    keep = ids.ravel() != 0
    m = sparse.csr_matrix((np.ones(int(keep.sum())), (rows[keep], ids.ravel()[keep])), shape=(len(ids), vocab))
    return sparse.csr_matrix(m.multiply(1 / np.asarray(m.sum(1)).clip(1)))


def _convs(model: TextStudent) -> list[torch.nn.Conv2d]:
    body = model.body
    convs = [m for m in body.convs if isinstance(m, torch.nn.Conv2d)] if hasattr(body, "convs") else []
    e = model.embed.embedding_dim
    if not convs or any(c.out_channels < 2 * e for c in convs) or convs[0].bias is not None:
        raise EdgekdError("least-squares init needs a text_conv student whose width is at least 2 x embed")
    return convs


def init_from_least_squares(model: TextStudent, ids: np.ndarray, targets: np.ndarray, seed: int = 0) -> float:
    """Write the factorised ridge solution into ``model`` (in place); returns the ridge fit's training cosine."""
    from sklearn.linear_model import Ridge

    from edgekd.text.metrics import mean_cosine

    convs = _convs(model)
    x = bag_of_words(ids, model.vocab)
    ridge = Ridge(alpha=RIDGE_ALPHA, fit_intercept=False, random_state=seed).fit(x, targets)
    _write_factorised(model, convs, ridge.coef_.T.astype(np.float64))
    return mean_cosine(np.asarray(ridge.predict(x)), targets)


def init_from_prior(model: TextStudent, ids: np.ndarray, targets: np.ndarray, prior: np.ndarray,
                    alpha: float, seed: int = 0) -> float:
    """Ridge toward ``prior`` (vocab x 384), reduced to rank ``embed`` on the fitted sentences, written into
    ``model`` (in place); returns the rank-reduced fit's training cosine."""
    from sklearn.linear_model import Ridge

    from edgekd.text.metrics import mean_cosine

    convs = _convs(model)
    if prior.shape != (model.vocab, targets.shape[1]):
        raise EdgekdError(f"prior table {prior.shape} does not match the student's vocabulary x output "
                          f"({model.vocab}, {targets.shape[1]})")
    x = bag_of_words(ids, model.vocab)
    p = prior.astype(np.float64)
    residual = targets - np.asarray(x @ p)
    w = Ridge(alpha=alpha, fit_intercept=False, random_state=seed).fit(x, residual).coef_.T + p
    _, _, vt = np.linalg.svd(np.asarray(x @ w), full_matrices=False)
    v = vt[: model.embed.embedding_dim].T
    w = (w @ v) @ v.T
    _write_factorised(model, convs, w)
    return mean_cosine(np.asarray(x @ w), targets)


def bucket_prior(texts: list[str], hashed: HashedTokenizer | FrequentWordsTokenizer, vectors: np.ndarray,
                 wordpiece: WordPieceTokenizer) -> np.ndarray:
    """(buckets, 384): each id's count-weighted mean of the teacher vectors of the words of ``texts`` that map to
    it (a word's vector: the unit mean of its WordPiece tokens' ``vectors``); 0 where none. A listed word of the
    frequent-words tokenizer has an id to itself, so its row is that word's own vector."""
    from collections import Counter

    from edgekd.text.tokenize import split_words

    counts = Counter(w for t in texts for w in split_words(t)[: hashed.max_len])
    out = np.zeros((hashed.vocab_size, vectors.shape[1]))
    total = np.zeros(hashed.vocab_size)
    for word, n in sorted(counts.items()):
        v = vectors[wordpiece.pieces(word)].astype(np.float64).mean(0)
        b = hashed.ids(word)[0]
        out[b] += n * v / max(float(np.linalg.norm(v)), 1e-12)
        total[b] += n
    out /= np.maximum(total, 1)[:, None]
    out[0] = 0.0
    return out


def _write_factorised(model: TextStudent, convs: list[torch.nn.Conv2d], w: np.ndarray) -> None:
    """Write the rank-``embed`` factorisation of ``w`` (vocab x 384) into the table, the identity path of the
    convolutions and the projection."""
    body = model.body
    e = model.embed.embedding_dim
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    root = np.sqrt(s[:e])
    table = u[:, :e] * root
    table[0] = 0.0
    b = (root[:, None] * vt[:e]).T  # (384, E)
    with torch.no_grad():
        model.embed.weight.copy_(torch.from_numpy(table).float())
        k = convs[0].kernel_size[1] // 2
        eye = torch.eye(e)
        for i, conv in enumerate(convs):
            conv.weight[: 2 * e] = 0.0
            if i == 0:
                conv.weight[:e, :, 0, k] = eye
                conv.weight[e : 2 * e, :, 0, k] = -eye
            else:
                conv.weight[: 2 * e, : 2 * e, 0, k] = torch.eye(2 * e)
        body.proj.weight[:, : 2 * e] = torch.from_numpy(np.concatenate([b, -b], axis=1)).float()
        body.proj.weight[:, 2 * e :] *= 0.1
