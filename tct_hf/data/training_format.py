"""Conversions into the training format `{"query": str, "positive": str, "negatives": list[str]}` (+ optional ids).

Sources: Hub datasets (e.g. `sentence-transformers/msmarco-bm25`, configs "triplet", "triplet-hard",
"triplet-50", "triplet-all" with columns `query, positive, negative` or `query, positive, negative_1..negative_50`;
the "*-ids" configs hold integer ids instead and need the collection and queries), mined hard negatives saved with
`save_to_disk` (columns `query_id, query, positive_id, positive, negative_ids, negatives`), and any dataset whose
columns follow one of the recognised schemas (see `to_training_format`).

Example:
    >>> train = load_hub_dataset("sentence-transformers/msmarco-bm25", "triplet-hard", streaming=True)
    >>> next(iter(train)).keys()  # doctest: +SKIP
    dict_keys(['query', 'positive', 'negatives'])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from datasets import Dataset, IterableDataset, load_dataset, load_from_disk

from .lookup import as_lookup
from .schema import ID_FEATURES

QUERY_COLUMNS = ("query", "anchor", "question")
POSITIVE_COLUMNS = ("positive", "pos", "passage", "document")
_NUMBERED_NEGATIVE = re.compile(r"^negative_(\d+)$")
MINED_COLUMNS = tuple(ID_FEATURES)


def _pick(columns: list[str], candidates: tuple[str, ...], what: str) -> str:
    for name in candidates:
        if name in columns:
            return name
    raise ValueError(f"no {what} column: looked for {candidates} in the dataset's columns {columns}")


def negative_columns(columns: list[str]) -> list[str]:
    """`["negatives"]`, `["negative"]` or `["negative_1", "negative_2", ...]` sorted by number."""
    if "negatives" in columns:
        return ["negatives"]
    if "negative" in columns:
        return ["negative"]
    numbered = sorted((int(m.group(1)), name) for name in columns if (m := _NUMBERED_NEGATIVE.match(name)))
    if not numbered:
        raise ValueError(f"no negative column: looked for negatives, negative, negative_1.. in {columns}")
    return [name for _, name in numbered]


def to_training_format(
    dataset: Dataset | IterableDataset,
    collection: Dataset | Mapping[str, str] | None = None,
    queries: Dataset | Mapping[str, str] | None = None,
) -> Dataset | IterableDataset:
    """Map a dataset with a recognised schema into the training format (lazily for an `IterableDataset`).

    Recognised: a query column (`query`/`anchor`/`question`), a positive column (`positive`/`pos`/...), and
    negatives as a list column `negatives`, one `negative` column or numbered `negative_1..negative_k` columns.
    Columns `query_id`, `positive_id`, `negative_ids` are kept. When the query/positive/negative values are
    integers (the Hub's "*-ids" configs), texts are looked up in `collection` and `queries`, and the ids kept.
    """
    columns = list(dataset.column_names or next(iter(dataset)).keys())
    query_column = _pick(columns, QUERY_COLUMNS, "query")
    positive_column = _pick(columns, POSITIVE_COLUMNS, "positive")
    negatives = negative_columns(columns)
    kept_ids = [name for name in ("query_id", "positive_id", "negative_ids") if name in columns]
    passage_lookup = as_lookup(collection, "collection") if collection is not None else None
    query_lookup = as_lookup(queries, "queries") if queries is not None else None

    def convert(example: dict) -> dict:
        negative_values = (
            list(example[negatives[0]]) if negatives == ["negatives"] else [example[name] for name in negatives]
        )
        row = {name: example[name] for name in kept_ids}
        query, positive = example[query_column], example[positive_column]
        if isinstance(query, int) or isinstance(positive, int):
            if passage_lookup is None or query_lookup is None:
                raise ValueError(
                    "this dataset holds integer ids (a '*-ids' config): pass collection= and queries= to look up texts"
                )
            row.update(
                query_id=str(query),
                positive_id=str(positive),
                negative_ids=[str(n) for n in negative_values],
            )
            query = query_lookup[str(query)]
            positive = passage_lookup[str(positive)]
            negative_values = [passage_lookup[str(n)] for n in negative_values]
        row.update(query=query, positive=positive, negatives=negative_values)
        return row

    # map() drops `remove_columns` before adding convert's output, so "query" etc. may be replaced in place.
    return dataset.map(convert, remove_columns=[name for name in columns if name not in kept_ids])


def load_hub_dataset(
    name: str,
    config: str | None = None,
    split: str = "train",
    *,
    streaming: bool = False,
    collection: Dataset | Mapping[str, str] | None = None,
    queries: Dataset | Mapping[str, str] | None = None,
    **load_kwargs,
) -> Dataset | IterableDataset:
    """`load_dataset(name, config, split=split, streaming=streaming)` mapped by `to_training_format`.

    `name` may be a Hub id (parquet datasets; script datasets no longer load in datasets >= 4) or a local folder of
    parquet/json files. Offline (`HF_HUB_OFFLINE=1`) only datasets already in the cache load.
    """
    dataset = load_dataset(name, config, split=split, streaming=streaming, **load_kwargs)
    return to_training_format(dataset, collection=collection, queries=queries)


def load_mined_negatives(path: str | Path) -> Dataset:
    """A hard-negative dataset written by the miner with `save_to_disk` (columns `query_id, query, positive_id,
    positive, negative_ids, negatives`), checked and returned in the training format (ids kept)."""
    dataset = load_from_disk(str(path))
    if not isinstance(dataset, Dataset):
        raise ValueError(f"{path}: expected one saved Dataset, found {type(dataset).__name__} (pick a split)")
    missing = [name for name in ("query", "positive", "negatives") if name not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{path}: a mined-negatives dataset needs columns {MINED_COLUMNS}; missing {missing} "
            f"(found {dataset.column_names})"
        )
    return dataset
