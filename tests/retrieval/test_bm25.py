"""BM25 via bm25s vs a hand-computed Lucene BM25 on a tiny corpus."""

from __future__ import annotations

import math
from collections import Counter

import pytest

pytest.importorskip("bm25s")

from tct_hf.retrieval.bm25 import bm25_search  # noqa: E402

CORPUS = {
    "d1": "dense retrieval with dense vectors",
    "d2": "sparse retrieval wins on keywords",
    "d3": "the cat sat on the mat",
    "d4": "retrieval retrieval retrieval",
    "d5": "vectors and keywords",
}
STOPWORDS = {"the", "on", "with", "and"}


def lucene_bm25(query: str, k1: float, b: float) -> dict[str, float]:
    """Hand formula: sum_t log(1 + (N - df + .5) / (df + .5)) * tf / (tf + k1 (1 - b + b |d| / avgdl))."""
    documents = {docid: [w for w in text.split() if w not in STOPWORDS] for docid, text in CORPUS.items()}
    n = len(documents)
    average_length = sum(len(words) for words in documents.values()) / n
    scores = {}
    for docid, words in documents.items():
        counts = Counter(words)
        total = 0.0
        for term in query.split():
            if counts[term] == 0:
                continue
            df = sum(term in other for other in documents.values())
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = counts[term]
            total += idf * tf / (tf + k1 * (1 - b + b * len(words) / average_length))
        if total > 0:
            scores[docid] = total
    return scores


@pytest.mark.parametrize("k1, b", [(0.9, 0.4), (1.2, 0.75)])
def test_scores_match_hand_computed_lucene_bm25(k1, b):
    query = "retrieval vectors keywords"
    run = bm25_search(
        list(CORPUS),
        list(CORPUS.values()),
        ["q"],
        [query],
        k=10,
        k1=k1,
        b=b,
        stemmer=None,
        stopwords=sorted(STOPWORDS),
    )
    expected = lucene_bm25(query, k1, b)
    assert run["q"] == pytest.approx(expected, rel=1e-6)
    assert list(run["q"]) == [d for d, _ in sorted(expected.items(), key=lambda item: (-item[1], item[0]))]


def test_k_cut_unknown_terms_and_empty_query():
    run = bm25_search(list(CORPUS), list(CORPUS.values()), ["q1", "q2"], ["retrieval", "zebra"], k=2, stemmer=None)
    assert len(run["q1"]) == 2 and set(run["q1"]) <= {"d1", "d2", "d4"}
    assert run["q2"] == {}


def test_default_stopwords_are_lucenes_english_list():
    run = bm25_search(["a", "b"], ["the cat", "the dog"], ["q"], ["the"], stemmer=None)
    assert run["q"] == {}  # "the" is a stopword


def test_bad_input():
    with pytest.raises(ValueError, match="empty corpus"):
        bm25_search([], [], ["q"], ["x"])
    with pytest.raises(ValueError, match="duplicate corpus ids"):
        bm25_search(["a", "a"], ["x", "y"], ["q"], ["x"])
    with pytest.raises(ValueError, match="2 qids for 1 queries"):
        bm25_search(["a"], ["x"], ["q", "r"], ["x"])
