"""Search vs numpy brute force (same top-k ids and scores, ties by docid), fp16 / HNSW recall, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tct_hf.retrieval.index import build_index
from tct_hf.retrieval.search import search, search_arrays


def brute_force(corpus: np.ndarray, docids: list[str], queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """Reference: float64 scores, every document, Python sort by (-score, docid)."""
    scores = queries.astype(np.float64) @ corpus.astype(np.float64).T
    return [sorted(zip(docids, row.tolist()), key=lambda item: (-item[1], item[0]))[:k] for row in scores]


def integer_corpus(seed: int, n: int = 300, dim: int = 8):
    """Small integer vectors: every dot product is exact in float32, and many scores tie."""
    rng = np.random.default_rng(seed)
    corpus = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    corpus[n // 2 :] = corpus[: n - n // 2]  # exact duplicates: guaranteed tie groups
    docids = [f"doc{number}" for number in rng.permutation(10 * n)[:n]]  # string order != row order
    queries = rng.integers(-2, 3, size=(25, dim)).astype(np.float32)
    return corpus, docids, queries


@pytest.mark.parametrize("k", [1, 10, 37, 299, 300, 5000])
@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_search_equals_brute_force_including_ties(k, batch_size):
    corpus, docids, queries = integer_corpus(seed=k + batch_size)
    index = build_index(corpus, docids)
    run = search(index, queries, [f"q{i}" for i in range(len(queries))], k=k, batch_size=batch_size)
    deeper = brute_force(corpus, docids, queries, k + 1)
    expected = [reference[:k] for reference in deeper]
    ties_seen = 0
    for i, reference in enumerate(expected):
        got = list(run[f"q{i}"].items())
        assert [docid for docid, _ in got] == [docid for docid, _ in reference]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in reference], atol=1e-5, rtol=0)
        ties_seen += len(deeper[i]) - len({score for _, score in deeper[i]})
    assert ties_seen > 0  # the test really exercises tie-breaking (inside the top k or across the cut)


def test_search_float_corpus_matches_numpy_within_1e5():
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((2000, 32)).astype(np.float32)
    queries = rng.standard_normal((40, 32)).astype(np.float32)
    docids = [str(i) for i in range(2000)]
    scores, ids = search_arrays(build_index(corpus, docids), queries, k=100)
    reference = queries @ corpus.T
    expected_ids = np.argsort(-reference, axis=1, kind="stable")[:, :100]
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, np.take_along_axis(reference, expected_ids, axis=1), atol=1e-5, rtol=0)


def test_fp16_recall_at_10_vs_exact():
    rng = np.random.default_rng(1)
    corpus = rng.standard_normal((5000, 64)).astype(np.float32)
    queries = rng.standard_normal((100, 64)).astype(np.float32)
    docids = [f"d{i}" for i in range(len(corpus))]
    qids = [f"q{i}" for i in range(len(queries))]
    exact = search(build_index(corpus, docids), queries, qids, k=10)
    half = search(build_index(corpus, docids, kind="fp16"), queries, qids, k=10)
    recall = np.mean([len(set(exact[q]) & set(half[q])) / 10 for q in qids])
    assert recall >= 0.99, recall


def test_hnsw_recall_at_10_is_high():
    rng = np.random.default_rng(2)
    corpus = rng.standard_normal((3000, 32)).astype(np.float32)
    queries = rng.standard_normal((50, 32)).astype(np.float32)
    docids = [f"d{i}" for i in range(len(corpus))]
    qids = [f"q{i}" for i in range(len(queries))]
    exact = search(build_index(corpus, docids), queries, qids, k=10)
    hnsw = search(build_index(corpus, docids, kind="hnsw", hnsw_m=16), queries, qids, k=10)
    recall = np.mean([len(set(exact[q]) & set(hnsw[q])) / 10 for q in qids])
    print(f"HNSW recall@10 vs exact: {recall:.3f}")
    assert recall >= 0.9, recall


def test_query_dimension_mismatch_is_explained():
    index = build_index(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"], model_name="student-768")
    with pytest.raises(ValueError, match=r"dimension 3 but the index \(model 'student-768'\) has dimension 4"):
        search(index, np.ones((1, 3), dtype=np.float32), ["q"])


@pytest.mark.parametrize(
    "queries, qids, message",
    [
        (np.ones((2, 4)), ["q"], "2 query embeddings"),
        (np.ones((2, 4)), ["q", "q"], "duplicate query ids"),
        (np.full((1, 4), np.nan), ["q"], "NaN"),
        (np.ones(4), ["q"], r"\[Q, dim\]"),
    ],
)
def test_bad_queries(queries, qids, message):
    index = build_index(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=message):
        search(index, queries, qids)


@pytest.mark.parametrize("padded", [False, True])
def test_search_run_to_dict_equals_the_lazy_mapping(padded):
    """to_dict's one-pass path (no cached row, no padding) and its per-row path (a row already read, or -1 padding)
    give what per-query access gives: same queries in order, same ranked docids and scores; new dicts."""
    from tct_hf.retrieval.search import SearchRun

    rng = np.random.default_rng(5)
    docids = np.array([f"d{i}" for i in range(20)])
    scores = -np.sort(-rng.normal(size=(6, 7)), axis=1).astype(np.float32)
    ids = np.stack([rng.permutation(20)[:7] for _ in range(6)])
    if padded:
        ids[2, 5:] = -1
    qids = [f"q{i}" for i in (3, 0, 5, 1, 4, 2)]
    fresh = SearchRun(qids, scores, ids, docids).to_dict()  # nothing cached
    lazy = SearchRun(qids, scores, ids, docids)
    expected = {qid: {docids[j]: float(s) for j, s in zip(ids[r], scores[r]) if j >= 0} for r, qid in enumerate(qids)}
    assert list(fresh) == qids and fresh == expected
    assert [list(fresh[qid]) for qid in qids] == [list(lazy[qid]) for qid in qids]  # ranked order kept
    lazy_copy = lazy.to_dict()  # per-row path: rows are cached now
    assert lazy_copy == expected and lazy_copy["q0"] is not lazy["q0"]
    if padded:
        assert len(fresh["q5"]) == 5
