"""BM25 retrieval with bm25s (optional extra ``hybrid``), for the sparse side of dense–sparse fusion.

Scoring (``method="lucene"``, Lucene ≥ 8 / Anserini), for query terms ``t`` present in document ``d``:

    score(q, d) = sum_t idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Defaults ``k1=0.9, b=0.4`` are Anserini's MS MARCO passage settings.

Analyzer differences from Anserini (scores and rankings will not match it exactly):

- tokens: bm25s's regex ``\\w\\w+`` on lower-cased text (single characters dropped); Lucene uses its
  StandardTokenizer;
- stopwords: ``"en"`` is the same 33-word English list Lucene's ``EnglishAnalyzer`` uses;
- stemming: Anserini applies Porter stemming. Here ``stemmer="auto"`` (default) uses PyStemmer's English
  (Porter 2 / Snowball) stemmer when PyStemmer is installed and no stemming otherwise (a warning says so);
  ``stemmer=None`` disables it, any callable ``list[str] -> list[str]`` replaces it;
- document lengths are exact; Lucene stores them lossily (one byte), which shifts its scores slightly.

Example:
    >>> run = bm25_search(["d1", "d2"], ["dense retrieval", "sparse retrieval wins"], ["q1"], ["sparse"], k=2)
    ...  # doctest: +SKIP
    >>> list(run["q1"])  # doctest: +SKIP
    ['d2']
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from ..data.run_files import Run, ranked_order

logger = logging.getLogger(__name__)

__all__ = ["bm25_search"]


def _bm25s():
    try:
        import bm25s
    except ImportError as error:
        raise ImportError("bm25_search needs bm25s. Fix: pip install 'tct_hf[hybrid]'.") from error
    return bm25s


def _resolve_stemmer(stemmer: str | Callable | None) -> Callable | None:
    if stemmer is None or callable(stemmer):
        return stemmer
    if stemmer != "auto":
        raise ValueError(f"stemmer must be 'auto', None or a callable, got {stemmer!r}")
    try:
        import Stemmer
    except ImportError:
        logger.warning(
            "PyStemmer is not installed: BM25 runs without stemming (Anserini uses Porter stemming). "
            "Fix: pip install PyStemmer."
        )
        return None
    return Stemmer.Stemmer("english").stemWords


def bm25_search(
    corpus_ids: Sequence[str],
    corpus_texts: Sequence[str],
    qids: Sequence[str],
    queries: Sequence[str],
    k: int = 1000,
    k1: float = 0.9,
    b: float = 0.4,
    method: str = "lucene",
    stemmer: str | Callable | None = "auto",
    stopwords: str | list[str] | None = "en",
) -> Run:
    """Index ``corpus_texts`` with BM25 and return the top ``k`` documents per query.

    Args:
        corpus_ids, corpus_texts: parallel lists (unique ids).
        qids, queries: parallel lists (unique ids).
        k: results per query (cut to the corpus size). Documents sharing no term with the query (score 0) are
            left out, as in Lucene.
        k1, b: BM25 parameters (Anserini MS MARCO defaults).
        method: bm25s variant (``"lucene"``, ``"robertson"``, ``"atire"``, ``"bm25l"``, ``"bm25+"``).
        stemmer: ``"auto"``, ``None`` or a callable (see the module docstring).
        stopwords: ``"en"`` (Lucene's list), a list of words, or ``None``.

    Returns:
        ``{qid: {docid: score}}``, score descending, ties by docid ascending.
    """
    bm25s = _bm25s()
    if len(corpus_ids) != len(corpus_texts):
        raise ValueError(f"{len(corpus_ids)} corpus ids for {len(corpus_texts)} texts. Fix: one id per text.")
    if len(qids) != len(queries):
        raise ValueError(f"{len(qids)} qids for {len(queries)} queries. Fix: one id per query.")
    if not corpus_ids:
        raise ValueError("empty corpus. Fix: pass at least one document.")
    if len(set(corpus_ids)) != len(corpus_ids):
        raise ValueError("duplicate corpus ids. Fix: make document ids unique.")
    if len(set(qids)) != len(qids):
        raise ValueError("duplicate query ids. Fix: make query ids unique.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    stem = _resolve_stemmer(stemmer)
    stopwords = [] if stopwords is None else stopwords
    corpus_tokens = bm25s.tokenize(list(corpus_texts), stopwords=stopwords, stemmer=stem, show_progress=False)
    retriever = bm25s.BM25(k1=k1, b=b, method=method)
    retriever.index(corpus_tokens, show_progress=False)
    if not qids:
        return {}
    # Tokenize queries with the corpus vocabulary so token ids match; unknown words are dropped.
    query_tokens = bm25s.tokenize(
        list(queries), stopwords=stopwords, stemmer=stem, return_ids=False, show_progress=False
    )
    vocabulary = corpus_tokens.vocab
    query_ids = [[vocabulary[token] for token in tokens if token in vocabulary] for tokens in query_tokens]
    depth = min(k, len(corpus_ids))
    weights = retriever.get_scores  # one dense score vector per query; vectorised in bm25s (sparse matrix)
    docids = np.array([str(docid) for docid in corpus_ids], dtype=str)
    run: Run = {}
    for qid, tokens in zip(qids, query_ids):
        scores = weights(tokens) if tokens else np.zeros(len(docids), dtype=np.float32)
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > depth:
            candidates = candidates[np.argpartition(-scores[candidates], depth - 1)[:depth]]
            threshold = scores[candidates].min()
            candidates = np.flatnonzero(scores >= threshold)  # keep the whole tie group at the cut
        order = ranked_order(docids[candidates], scores[candidates])[:depth]
        chosen = candidates[order]
        run[str(qid)] = dict(zip(docids[chosen].tolist(), scores[chosen].astype(np.float64).tolist()))
    return run
