"""Training examples from qrels and a run: (query, each relevant passage, negatives sampled from the run).

For query `q`, every passage `p` judged `qrels[q][p] >= min_relevance` gives one example. Its negatives are
`num_negatives` passages drawn from the candidates
`top-depth(run[q]) minus {every passage judged relevant for q, i.e. qrels[q][d] > 0}` (judged non-relevant,
relevance 0, passages stay: they are good negatives), without replacement (the default) or with replacement
(castorini's ``hard_triplet_construct.py``: every draw independent). The top-`depth` list is ordered by score, ties
by doc id. An optional `candidate_filter(query_id, positive_id, candidates)` narrows each example's candidates
(teacher-filtered mining uses it). Drawing uses one `random.Random(seed)` over the examples in order (queries in
the order given, positives by doc id), so the same inputs and seed give the same examples. This is TCT-ColBERT's
hard-negative construction (top-200 of a run, sampled) when the run is BM25 or a dense retriever's; hard-negative
mining (`tct_hf.retrieval.mining`) builds its examples here from its dense run.

The columns are `tct_hf.data.schema`'s: `query_id, query, positive_id, positive, negative_ids, negatives`, plus
`positive_title, negative_titles` when the collection is a dataset with a `title` column.

Example:
    >>> examples = build_training_examples(queries, qrels, collection, bm25_run, num_negatives=1)  # doctest: +SKIP
    >>> examples[0]["negatives"]                                                                   # doctest: +SKIP
    ['Hurricane season in Jamaica ...']
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from datasets import Dataset

from .lookup import TextLookup, as_lookup
from .msmarco import qrels_to_dict
from .run_files import read_run
from .schema import training_features

logger = logging.getLogger(__name__)

SHORT_POLICIES = ("error", "skip")
CandidateFilter = Callable[[str, str, list[str]], list[str]]


def negative_candidates(
    ranking: Mapping[str, float], judged: Mapping[str, int], depth: int, collection: Mapping[str, str]
) -> list[str]:
    """Doc ids of the top-`depth` of `ranking` (score descending, doc id ascending on ties) that are not judged
    relevant (`judged[d] > 0`) and exist in `collection`."""
    top = sorted(ranking.items(), key=lambda item: (-item[1], item[0]))[:depth]
    return [doc_id for doc_id, _ in top if judged.get(doc_id, 0) <= 0 and doc_id in collection]


def sample_negatives(
    candidates: Sequence[str], num_negatives: int, rng: random.Random, with_replacement: bool = False
) -> list[str] | None:
    """`num_negatives` draws from `candidates`: distinct (`rng.sample`), or independent draws that may repeat
    (`rng.choices`) when `with_replacement`. None when the candidates cannot give that many (none at all, or
    fewer than `num_negatives` without replacement)."""
    if not candidates or (not with_replacement and len(candidates) < num_negatives):
        return None
    if with_replacement:
        return rng.choices(candidates, k=num_negatives)
    return rng.sample(list(candidates), num_negatives)


def examples_dataset(
    rows: Sequence[tuple[str, str, list[str]]],
    queries: Mapping[str, str],
    passages: Mapping[str, str],
    titles: Mapping[str, str] | None = None,
) -> Dataset:
    """The examples `(query_id, positive_id, negative_ids)` of `rows` as a `Dataset` in the schema's column order,
    texts looked up in `queries` and `passages` (and titles in `titles`, when given)."""
    columns: dict[str, list] = {name: [] for name in training_features(ids=True, titles=titles is not None)}
    for query_id, positive_id, negative_ids in rows:
        columns["query_id"].append(query_id)
        columns["query"].append(queries[query_id])
        columns["positive_id"].append(positive_id)
        columns["positive"].append(passages[positive_id])
        columns["negative_ids"].append(list(negative_ids))
        columns["negatives"].append([passages[doc_id] for doc_id in negative_ids])
        if titles is not None:
            columns["positive_title"].append(titles[positive_id] or "")
            columns["negative_titles"].append([titles[doc_id] or "" for doc_id in negative_ids])
    return Dataset.from_dict(columns, features=training_features(ids=True, titles=titles is not None))


def build_training_examples(
    queries: Dataset | Mapping[str, str],
    qrels: Dataset | Mapping[str, Mapping[str, int]] | str | Path,
    collection: Dataset | Mapping[str, str],
    negatives_run: Mapping[str, Mapping[str, float]] | str | Path,
    *,
    num_negatives: int = 1,
    min_relevance: int = 1,
    depth: int = 200,
    seed: int = 0,
    on_short: str = "error",
    with_replacement: bool = False,
    candidate_filter: CandidateFilter | None = None,
) -> Dataset:
    """Examples `query_id, query, positive_id, positive, negative_ids, negatives` (+ titles; see the module
    docstring).

    Args:
        queries: the queries to use (their order fixes the example order); a dataset `id, text` or a dict.
        qrels: `{qid: {docid: relevance}}`, a qrels dataset or file.
        collection: the passages, a dataset `id, text` (optional `title`) or a dict.
        negatives_run: `{qid: {docid: score}}` or a TREC / MS MARCO run file.
        num_negatives: negatives per example. min_relevance: smallest grade that makes a positive.
        depth: how deep in the run negatives are drawn from. seed: seed of the drawing.
        on_short: an example with too few candidates (fewer than `num_negatives`, or none with replacement; a
            query absent from the run has none) raises ("error", the default) or is skipped, counted and logged
            ("skip").
        with_replacement: independent draws (a passage may repeat) instead of distinct negatives.
        candidate_filter: `(query_id, positive_id, candidates) -> kept candidates`, applied per example.
    """
    if on_short not in SHORT_POLICIES:
        raise ValueError(f"on_short={on_short!r} is not one of {SHORT_POLICIES}")
    if num_negatives < 1 or depth < 1:
        raise ValueError(f"num_negatives and depth must be >= 1, got {num_negatives} and {depth}")
    judgements = qrels_to_dict(qrels)
    run = read_run(negatives_run) if isinstance(negatives_run, (str, Path)) else negatives_run
    passages = as_lookup(collection, "collection")
    titles = None
    if isinstance(collection, Dataset) and "title" in collection.column_names:
        titles = TextLookup(collection, "collection", column="title")
    query_texts = as_lookup(queries, "queries")
    rng = random.Random(seed)
    rows: list[tuple[str, str, list[str]]] = []
    skipped: list[tuple[str, str]] = []
    without_positive = 0
    needed = 1 if with_replacement else num_negatives
    for query_id in query_texts:
        judged = judgements.get(query_id, {})
        positives = sorted(doc_id for doc_id, grade in judged.items() if grade >= min_relevance)
        if not positives:
            without_positive += 1
            continue
        missing = [doc_id for doc_id in positives if doc_id not in passages]
        if missing:
            raise ValueError(f"query {query_id}: relevant passages {missing[:5]} are not in the collection")
        candidates = negative_candidates(run.get(query_id, {}), judged, depth, passages)
        for positive_id in positives:
            kept = candidates if candidate_filter is None else candidate_filter(query_id, positive_id, candidates)
            negative_ids = sample_negatives(kept, num_negatives, rng, with_replacement)
            if negative_ids is None:
                if on_short == "error":
                    raise ValueError(
                        f"query {query_id}: only {len(kept)} negative candidates in the run's top-{depth} (after "
                        f"removing judged-relevant passages{' and filtering' if candidate_filter else ''}), need "
                        f"{needed}. Use a deeper run, fewer negatives, or on_short='skip'."
                    )
                skipped.append((query_id, positive_id))
                continue
            rows.append((query_id, positive_id, negative_ids))
    if skipped:
        logger.warning(
            "%d (query, positive) pairs skipped: fewer than %d negative candidates in the run's top %d (%s)",
            len(skipped),
            needed,
            depth,
            ", ".join(f"{query_id}/{positive_id}" for query_id, positive_id in skipped[:10]),
        )
    if without_positive:
        logger.info(
            "%d queries have no passage with relevance >= %d and give no example", without_positive, min_relevance
        )
    return examples_dataset(rows, query_texts, passages, titles)
