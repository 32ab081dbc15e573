"""Dense–sparse hybrid fusion with Pyserini's ``HybridSearcher`` semantics (TCT-ColBERT paper, section 4).

For each query, over the union ``U`` of the documents of both lists:

    score(d) = alpha * sparse(d) + dense(d)            (default)
    score(d) = sparse(d) + alpha * dense(d)            (weight_on_dense=True)

where a document absent from a list takes that list's minimum score for the query. With ``normalize=True`` each
list's scores (and the filled-in minimum) are first mapped as Pyserini does — centred min-max, not [0, 1]:

    x' = (x - (min + max) / 2) / (max - min)           (0 when max == min; Pyserini would divide by zero)

An empty or missing list behaves as in Pyserini: its minimum is 0 and its maximum 1. A query present in only one
run is therefore still fused (the other side contributes its fill value) and counted in a warning. ``depth``
(Pyserini's ``k0``) optionally cuts each input to its top ``depth`` before fusing; the output keeps the top ``k``,
sorted by fused score descending, ties by docid ascending (Pyserini leaves ties in set order).
Defaults follow Pyserini: ``alpha=0.1``, no normalization. Published alphas: 0.12 (v1 + BM25), 0.06 (v2-HN+ + BM25).

Example:
    >>> dense = {"q1": {"a": 10.0, "b": 9.0}}
    >>> sparse = {"q1": {"b": 20.0, "c": 5.0}}
    >>> fuse(dense, sparse, alpha=0.1)  # a: .1*5+10, b: .1*20+9, c: .1*5+9
    {'q1': {'b': 11.0, 'a': 10.5, 'c': 9.5}}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from ..data.run_files import Run, ranked_order

logger = logging.getLogger(__name__)

__all__ = ["fuse"]


def _top(scores: Mapping[str, float], depth: int | None) -> tuple[np.ndarray, np.ndarray]:
    docids = np.array(list(scores.keys()), dtype=str)
    values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    if depth is not None and len(values) > depth:
        keep = ranked_order(docids, values)[:depth]
        docids, values = docids[keep], values[keep]
    return docids, values


def _filled(values: np.ndarray, positions: np.ndarray, size: int, normalize: bool) -> np.ndarray:
    """Scores over the union: the list's own scores at ``positions``, its minimum elsewhere (then normalized)."""
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    full = np.full(size, low, dtype=np.float64)
    full[positions] = values
    if normalize:
        span = high - low
        full = (full - (low + high) / 2) / span if span > 0 else np.zeros(size, dtype=np.float64)
    return full


def fuse(
    dense_run: Mapping[str, Mapping[str, float]],
    sparse_run: Mapping[str, Mapping[str, float]],
    alpha: float = 0.1,
    k: int = 1000,
    normalize: bool = False,
    weight_on_dense: bool = False,
    depth: int | None = None,
) -> Run:
    """Fuse a dense and a sparse run per query (formula in the module docstring).

    Args:
        dense_run, sparse_run: ``{qid: {docid: score}}``.
        alpha: weight of the sparse scores (of the dense scores with ``weight_on_dense``).
        k: results kept per query.
        normalize: Pyserini's centred min-max normalization of each list before fusing.
        weight_on_dense: put ``alpha`` on the dense side instead.
        depth: cut each input list to its top ``depth`` first (``None`` = use the lists as given).

    Returns:
        The fused run, queries in dense-run order then sparse-only queries, documents in ranked order.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be at least 1 or None, got {depth}")
    if not np.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    qids = list(dense_run) + [qid for qid in sparse_run if qid not in dense_run]
    only_dense = sum(1 for qid in dense_run if qid not in sparse_run)
    only_sparse = sum(1 for qid in sparse_run if qid not in dense_run)
    if only_dense or only_sparse:
        logger.warning(
            "%d queries only in the dense run and %d only in the sparse run; the missing side counts as an empty "
            "list (minimum 0), as in Pyserini",
            only_dense,
            only_sparse,
        )
    fused: Run = {}
    for qid in qids:
        dense_ids, dense_values = _top(dense_run.get(qid, {}), depth)
        sparse_ids, sparse_values = _top(sparse_run.get(qid, {}), depth)
        union, positions = np.unique(np.concatenate([dense_ids, sparse_ids]), return_inverse=True)
        dense = _filled(dense_values, positions[: len(dense_ids)], len(union), normalize)
        sparse = _filled(sparse_values, positions[len(dense_ids) :], len(union), normalize)
        scores = sparse + alpha * dense if weight_on_dense else alpha * sparse + dense
        order = ranked_order(union, scores)[:k]
        fused[qid] = dict(zip(union[order].tolist(), scores[order].tolist()))
    return fused
