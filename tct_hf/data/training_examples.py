"""Training examples from qrels and a run: (query, each relevant passage, negatives sampled from the run).

For query `q`, every passage `p` judged `qrels[q][p] >= min_relevance` gives one example. Its negatives are
`num_negatives` passages drawn without replacement from the candidates
`top-depth(run[q]) minus {every passage judged relevant for q, i.e. qrels[q][d] > 0}` (judged non-relevant,
relevance 0, passages stay: they are good negatives). The top-`depth` list is ordered by score, ties by doc id.
Drawing uses one `random.Random(seed)` over the examples in order (queries in the order given, positives by doc
id), so the same inputs and seed give the same examples. This is TCT-ColBERT's hard-negative construction
(top-200 of a run, sampled) when the run is BM25 or a dense retriever's.

Example:
    >>> examples = build_training_examples(queries, qrels, collection, bm25_run, num_negatives=1)  # doctest: +SKIP
    >>> examples[0]["negatives"]                                                                   # doctest: +SKIP
    ['Hurricane season in Jamaica ...']
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path

from datasets import Dataset

from .lookup import as_lookup
from .msmarco import qrels_to_dict
from .run_files import read_run
from .triples import ID_TRIPLE_FEATURES

logger = logging.getLogger(__name__)

SHORT_POLICIES = ("error", "skip")


def negative_candidates(
    ranking: Mapping[str, float], judged: Mapping[str, int], depth: int, collection: Mapping[str, str]
) -> list[str]:
    """Doc ids of the top-`depth` of `ranking` (score descending, doc id ascending on ties) that are not judged
    relevant (`judged[d] > 0`) and exist in `collection`."""
    top = sorted(ranking.items(), key=lambda item: (-item[1], item[0]))[:depth]
    return [doc_id for doc_id, _ in top if judged.get(doc_id, 0) <= 0 and doc_id in collection]


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
) -> Dataset:
    """Examples `query_id, query, positive_id, positive, negative_ids, negatives` (see the module docstring).

    Args:
        queries: the queries to use (their order fixes the example order); a dataset `id, text` or a dict.
        qrels: `{qid: {docid: relevance}}`, a qrels dataset or file.
        collection: the passages, a dataset `id, text` or a dict.
        negatives_run: `{qid: {docid: score}}` or a TREC / MS MARCO run file.
        num_negatives: negatives per example. min_relevance: smallest grade that makes a positive.
        depth: how deep in the run negatives are drawn from. seed: seed of the drawing.
        on_short: a query with fewer than `num_negatives` candidates (or absent from the run) raises ("error",
            the default) or has its examples skipped, counted and logged ("skip").
    """
    if on_short not in SHORT_POLICIES:
        raise ValueError(f"on_short={on_short!r} is not one of {SHORT_POLICIES}")
    if num_negatives < 1 or depth < 1:
        raise ValueError(f"num_negatives and depth must be >= 1, got {num_negatives} and {depth}")
    judgements = qrels_to_dict(qrels)
    run = read_run(negatives_run) if isinstance(negatives_run, (str, Path)) else negatives_run
    passages = as_lookup(collection, "collection")
    query_texts = as_lookup(queries, "queries")
    rng = random.Random(seed)
    rows: dict[str, list] = {name: [] for name in ID_TRIPLE_FEATURES}
    skipped: list[str] = []
    without_positive = 0
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
        if len(candidates) < num_negatives:
            if on_short == "error":
                raise ValueError(
                    f"query {query_id}: only {len(candidates)} negative candidates in the run's top-{depth} "
                    f"(after removing judged-relevant passages), need {num_negatives}. Use a deeper run, fewer "
                    f"negatives, or on_short='skip'."
                )
            skipped.append(query_id)
            continue
        for positive_id in positives:
            negative_ids = rng.sample(candidates, num_negatives)
            rows["query_id"].append(query_id)
            rows["query"].append(query_texts[query_id])
            rows["positive_id"].append(positive_id)
            rows["positive"].append(passages[positive_id])
            rows["negative_ids"].append(negative_ids)
            rows["negatives"].append([passages[doc_id] for doc_id in negative_ids])
    if skipped:
        logger.warning(
            "%d queries skipped: fewer than %d negative candidates in the run (%s)",
            len(skipped),
            num_negatives,
            ", ".join(skipped[:10]),
        )
    if without_positive:
        logger.info(
            "%d queries have no passage with relevance >= %d and give no example", without_positive, min_relevance
        )
    return Dataset.from_dict(rows, features=ID_TRIPLE_FEATURES)
