"""Training triples from MS MARCO files, in the training format `{"query", "positive", "negatives": [str]}`.

- text triples (`triples.train.small.tsv`, 39.8M rows, 27 GB): `query<TAB>positive<TAB>negative`;
- id triples (`qidpidtriples.train.full.2.tsv`): `qid<TAB>positive pid<TAB>negative pid`, resolved to texts
  through the queries and the collection (ids kept as `query_id`, `positive_id`, `negative_ids`).

With `streaming=True` (the default) the result is an `IterableDataset` that reads the file lazily, line by line,
so the 27 GB file is never loaded; shuffle it with `.shuffle(buffer_size=..., seed=...)`, split it across
processes with `datasets.distributed.split_dataset_by_node`. It is built with `IterableDataset.from_generator`
rather than `load_dataset("csv", streaming=True)` so that a malformed line raises `DataFormatError` naming the
file and line. With `streaming=False` the rows are validated once and cached as a memory-mapped `Dataset`.

Example:
    >>> triples = load_text_triples("triples.train.small.tsv")           # doctest: +SKIP
    >>> next(iter(triples))                                               # doctest: +SKIP
    {'query': 'is a little caffeine ok during pregnancy', 'positive': 'We don…', 'negatives': ['It is generally…']}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from datasets import Dataset, IterableDataset

from .errors import DataFormatError
from .lookup import as_lookup
from .msmarco import keep_row
from .schema import ID_FEATURES, TEXT_FEATURES
from .text_files import EMPTY_TEXT_POLICIES, LineIssues, cache_key, check_option, iter_tsv_rows, write_cached_dataset


def iter_text_triples(path: str, encoding_errors: str = "strict", empty: str = "keep") -> Iterator[dict]:
    """Yield training examples from a `query<TAB>positive<TAB>negative` file (empty-text policy on every field)."""
    check_option("empty", empty, EMPTY_TEXT_POLICIES)
    issues = LineIssues(path, empty_policy=empty)
    columns = ("query", "positive", "negative")
    for line_number, (query, positive, negative) in iter_tsv_rows(
        path, columns, encoding_errors=encoding_errors, issues=issues
    ):
        all_present = all(text and not text.isspace() for text in (query, positive, negative))
        if all_present or keep_row("", line_number, path, empty, issues):
            yield {"query": query, "positive": positive, "negatives": [negative]}
    issues.log()


def load_text_triples(
    path: str | Path,
    *,
    streaming: bool = True,
    encoding_errors: str = "strict",
    empty: str = "keep",
    cache_dir: str | Path | None = None,
) -> IterableDataset | Dataset:
    """Text triples as training examples; an `IterableDataset` when `streaming` (default), else a `Dataset`."""
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    kwargs = {"path": path, "encoding_errors": encoding_errors, "empty": empty}
    if streaming:
        return IterableDataset.from_generator(iter_text_triples, features=TEXT_FEATURES, gen_kwargs=kwargs)
    key = cache_key("text_triples", path, encoding_errors=encoding_errors, empty=empty)
    rows = lambda: (tuple(example.values()) for example in iter_text_triples(**kwargs))  # noqa: E731
    return write_cached_dataset(rows, TEXT_FEATURES, key, cache_dir)


def iter_id_triples(path: str, collection: Mapping[str, str], queries: Mapping[str, str]) -> Iterator[dict]:
    """Yield training examples (with ids) from a `qid<TAB>pos_pid<TAB>neg_pid` file, texts looked up by id."""
    issues = LineIssues(path)
    for line_number, (query_id, positive_id, negative_id) in iter_tsv_rows(
        path, ("qid", "positive pid", "negative pid"), issues=issues
    ):
        for identifier, table, what in (
            (query_id, queries, "query id"),
            (positive_id, collection, "positive passage id"),
            (negative_id, collection, "negative passage id"),
        ):
            if identifier not in table:
                raise DataFormatError(
                    path,
                    line_number,
                    f"{what} {identifier!r} is not in the {'queries' if table is queries else 'collection'}",
                    "pass the queries and collection files these triples were made from",
                )
        yield {
            "query_id": query_id,
            "query": queries[query_id],
            "positive_id": positive_id,
            "positive": collection[positive_id],
            "negative_ids": [negative_id],
            "negatives": [collection[negative_id]],
        }
    issues.log()


def load_id_triples(
    path: str | Path,
    collection: Dataset | Mapping[str, str],
    queries: Dataset | Mapping[str, str],
    *,
    streaming: bool = True,
) -> IterableDataset | Dataset:
    """Id triples resolved to texts through `collection` and `queries` (datasets from `load_collection` /
    `load_queries`, or id → text dicts). Rows: `query_id, query, positive_id, positive, negative_ids, negatives`.
    An unknown id raises `DataFormatError` naming the line."""
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    kwargs = {
        "path": path,
        "collection": as_lookup(collection, "collection"),
        "queries": as_lookup(queries, "queries"),
    }
    if streaming:
        return IterableDataset.from_generator(iter_id_triples, features=ID_FEATURES, gen_kwargs=kwargs)
    rows = list(iter_id_triples(**kwargs))
    columns = {name: [row[name] for row in rows] for name in ID_FEATURES}
    return Dataset.from_dict(columns, features=ID_FEATURES)
