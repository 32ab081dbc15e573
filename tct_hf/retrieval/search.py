"""Top-k inner-product search over a :class:`~tct_hf.retrieval.index.DenseIndex` with deterministic ties.

Ranking: score descending, ties broken by docid ascending (the package convention, see ``run_files``). faiss
returns tied documents in an arbitrary order and may cut a group of equal scores at position ``k``; for queries
whose ``k``-th score equals the last score fetched, the search is repeated deeper until the tie group is complete,
so the top ``k`` is the same whatever the batch or the faiss version (exact for flat/fp16 indexes; HNSW is
approximate anyway). Work per batch is numpy over ``[batch, k]`` arrays.

:func:`search` returns a :class:`SearchRun`: a read-only ``Mapping`` ``{qid: {docid: score}}`` over the result
arrays, whose per-query dicts are built on first access (``Q x k`` Python floats and strings cost more than the
faiss search itself at ``k = 1000``; most callers read each query once, to write or evaluate it).

Example:
    >>> import numpy as np
    >>> from tct_hf.retrieval.index import build_index
    >>> index = build_index(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype="float32"), ["c", "b", "a"])
    >>> search(index, np.array([[1.0, 0.0]], dtype="float32"), ["q1"], k=2)
    {'q1': {'a': 1.0, 'c': 1.0}}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from .index import DenseIndex

__all__ = ["SearchRun", "search", "search_arrays"]


class SearchRun(Mapping[str, dict[str, float]]):
    """Read-only ``{qid: {docid: score}}`` over search result arrays; each query's dict is built on first access.

    Iteration follows the query order given to :func:`search`; each inner dict is in ranked order (score
    descending, ties by docid ascending) and is cached, so repeated access returns the same dict. It works wherever
    a run ``Mapping`` is accepted (``write_run``, ``sort_run``, ``evaluate_run``, ``fuse``); ``to_dict()`` gives a
    plain ``dict`` of dicts (built in one pass, faster than per-query access for the whole run).

    Example:
        >>> run = SearchRun(["q1"], np.array([[2.0, 1.0]], dtype="float32"), np.array([[1, 0]]), np.array(["a", "b"]))
        >>> run["q1"], len(run), "q2" in run
        ({'b': 2.0, 'a': 1.0}, 1, False)
    """

    __slots__ = ("_rows", "_scores", "_ids", "_docids", "_cache")

    def __init__(self, qids: Sequence[str], scores: np.ndarray, ids: np.ndarray, docids: np.ndarray):
        self._rows = dict(zip(qids, range(len(qids))))
        if len(self._rows) != len(qids) or scores.shape != ids.shape or len(qids) != len(scores):
            raise ValueError(f"{len(qids)} unique qids needed for {scores.shape} scores and {ids.shape} ids")
        self._scores, self._ids, self._docids = scores, ids, docids
        self._cache: dict[str, dict[str, float]] = {}

    def __getitem__(self, qid: str) -> dict[str, float]:
        ranked = self._cache.get(qid)
        if ranked is None:
            row = self._rows[qid]  # KeyError for an unknown qid, as a dict
            row_ids, row_scores = self._ids[row], self._scores[row]
            if row_ids.size and row_ids[-1] < 0:  # -1 pads the tail when the index holds fewer than k results
                valid = row_ids >= 0
                row_ids, row_scores = row_ids[valid], row_scores[valid]
            ranked = dict(zip(self._docids[row_ids].tolist(), row_scores.tolist()))
            self._cache[qid] = ranked
        return ranked

    def __contains__(self, qid: object) -> bool:
        return qid in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return repr(self.to_dict())

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [Q, k'], faiss ids [Q, k'])`` in query order (``-1`` = no result); map ids with the index."""
        return self._scores, self._ids

    def to_dict(self) -> dict[str, dict[str, float]]:
        """A plain ``{qid: {docid: score}}`` (new dicts; cached rows are copied)."""
        if self._cache or (self._ids < 0).any():
            return {qid: dict(self[qid]) for qid in self._rows}
        # The common case: one fancy index and one tolist for the whole matrix.
        docids, scores = self._docids[self._ids].tolist(), self._scores.tolist()
        return dict(zip(self._rows, map(dict, map(zip, docids, scores))))


def _search_batch(index: DenseIndex, queries: np.ndarray, k: int, docid_ranks: np.ndarray):
    """Top-``k`` ``(scores, ids)`` for one batch, ties by docid ascending; ids ``-1`` pad missing results."""
    total = index.count
    depth = min(total, k + 1)  # one extra result shows whether a tie group crosses the cut
    scores, ids = index.faiss_index.search(queries, depth)
    while depth < total:
        # A query needs a deeper search when its k-th score ties the last score fetched (the group may go on).
        needs_more = (ids[:, -1] >= 0) & (scores[:, -1] == scores[:, k - 1])
        if not needs_more.any():
            break
        depth = min(total, depth * 2)
        deeper_scores, deeper_ids = index.faiss_index.search(np.ascontiguousarray(queries[needs_more]), depth)
        padded_scores = np.full((len(queries), depth), -np.inf, dtype=scores.dtype)
        padded_ids = np.full((len(queries), depth), -1, dtype=ids.dtype)
        padded_scores[:, : scores.shape[1]] = scores
        padded_ids[:, : ids.shape[1]] = ids
        padded_scores[needs_more], padded_ids[needs_more] = deeper_scores, deeper_ids
        scores, ids = padded_scores, padded_ids
    # faiss sorts by score; only rows holding equal adjacent scores need re-ordering by docid.
    valid = ids >= 0
    tied = np.flatnonzero(((scores[:, 1:] == scores[:, :-1]) & valid[:, 1:]).any(axis=1))
    if len(tied):
        tied_scores, tied_ids, tied_valid = scores[tied], ids[tied], valid[tied]
        keys = np.where(tied_valid, docid_ranks[np.where(tied_valid, tied_ids, 0)], np.iinfo(np.int64).max)
        primary = -np.where(tied_valid, tied_scores, -np.inf).astype(np.float64)
        order = np.lexsort((keys, primary), axis=1)
        scores[tied] = np.take_along_axis(tied_scores, order, axis=1)
        ids[tied] = np.take_along_axis(tied_ids, order, axis=1)
    return scores[:, :k], ids[:, :k]


def search_arrays(
    index: DenseIndex, query_embeddings: np.ndarray, k: int = 1000, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` as arrays: ``scores [Q, k']`` float32 and faiss ids ``[Q, k']`` (``k' = min(k, N)``, ``-1`` = none).

    Rows are sorted by score descending, ties by docid ascending. Map ids to docids with ``index.docids``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    queries = np.asarray(query_embeddings)
    if queries.ndim != 2:
        raise ValueError(f"query embeddings must be a [Q, dim] array, got shape {queries.shape}")
    index.check_query_dim(queries.shape[1])
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if not np.isfinite(queries).all():
        raise ValueError("query embeddings contain NaN or infinity. Fix: check the query encoder.")
    k = min(k, index.count)
    docid_ranks = index.docid_ranks
    all_scores = np.empty((len(queries), k), dtype=np.float32)
    all_ids = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        all_scores[start : start + len(batch)], all_ids[start : start + len(batch)] = _search_batch(
            index, batch, k, docid_ranks
        )
    return all_scores, all_ids


def search(
    index: DenseIndex,
    query_embeddings: np.ndarray,
    qids: Sequence[str],
    k: int = 1000,
    batch_size: int = 1024,
    aggregate: str | None = None,
) -> SearchRun:
    """Search ``index`` with one vector per query; returns ``{qid: {docid: score}}`` in ranked order.

    The result is a :class:`SearchRun`, a read-only ``Mapping`` whose per-query dicts are built on first access
    (``run.to_dict()`` for a plain ``dict``). On an index of document segments the run holds ``k`` distinct
    documents, each scored by its best segment (``aggregate="max"``, the default there) or its first
    (``"first"``); see `tct_hf.retrieval.segments`. ``aggregate`` on an index of passages is an error.

    Args:
        index: a :class:`DenseIndex` (flat, fp16 or hnsw; CPU or GPU).
        query_embeddings: ``[Q, dim]`` float array, row ``i`` for ``qids[i]``.
        qids: unique query ids.
        k: results per query (cut to the corpus size when larger).
        batch_size: queries per faiss call.
    """
    if aggregate is not None or index.extra.get("segments"):
        from .segments import search_segmented

        return search_segmented(
            index, query_embeddings, qids, k=k, aggregate=aggregate or "max", batch_size=batch_size
        )
    qids = [str(qid) for qid in qids]
    query_embeddings = np.asarray(query_embeddings)
    if query_embeddings.ndim != 2:
        raise ValueError(f"query embeddings must be a [Q, dim] array, got shape {query_embeddings.shape}")
    if len(qids) != len(query_embeddings):
        raise ValueError(f"{len(qids)} qids for {len(query_embeddings)} query embeddings. Fix: one qid per row.")
    if len(set(qids)) != len(qids):
        raise ValueError("duplicate query ids. Fix: give each query a unique id.")
    scores, ids = search_arrays(index, query_embeddings, k=k, batch_size=batch_size)
    return SearchRun(qids, scores, ids, index.docid_array)
