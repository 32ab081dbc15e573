"""Readers for MS MARCO-format files: collection, queries, qrels and run files.

Formats (fields separated by one tab; quote characters and the strings "null"/"NA" are ordinary text):
- collection: `pid<TAB>text` or `pid<TAB>title<TAB>text` (`.tsv` or `.tsv.gz`; the first line decides), or JSON
  lines (`.jsonl`, `.jsonl.gz`) with `id` (or `_id`/`docid`/`pid`), `text` (or `contents`) and optional `title`
  → `Dataset` with string columns `id`, `text` (and `title` when the file has titles);
- queries: `qid<TAB>text` (or `.jsonl`) → `Dataset` `id`, `text`;
- qrels: TREC `qid iteration docid relevance` (spaces or tabs, MS MARCO's 4-column qrels.*.tsv is the same),
  or 2 columns `qid pid` (relevance 1) → `Dataset` `query_id`, `doc_id`, `relevance` (int32);
- runs: TREC `qid Q0 docid rank score tag` or MS MARCO `qid<TAB>pid<TAB>rank` (score = -rank)
  → `dict[qid, dict[docid, float]]`.

Rows whose text is empty follow `empty="keep"` (default: kept, counted and logged), `"skip"` (dropped, counted and
logged) or `"error"`. Non-UTF-8 bytes follow `encoding_errors` (see `text_files`).

Example:
    >>> collection = load_collection("collection.tsv")      # doctest: +SKIP
    >>> collection[0]                                        # doctest: +SKIP
    {'id': '0', 'text': 'The presence of communication amid scientific minds ...'}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from datasets import Dataset, Features, Value

from .bom import strip_bom
from .errors import DataFormatError
from .run_files import read_qrels
from .text_files import (
    EMPTY_TEXT_POLICIES,
    LineIssues,
    cache_key,
    check_option,
    iter_jsonl_records,
    iter_tsv_rows,
    open_binary,
    write_cached_dataset,
)

logger = logging.getLogger(__name__)

ID_KEYS = ("id", "_id", "docid", "pid", "qid")
TEXT_KEYS = ("text", "contents")


def is_jsonl(path: str | Path) -> bool:
    name = Path(path).name
    return name.endswith(".jsonl") or name.endswith(".jsonl.gz")


def count_columns_of_first_line(path: str | Path) -> int:
    """Number of tab-separated fields on the first line (0 for an empty file)."""
    with open_binary(path) as handle:
        first = strip_bom(handle.readline(), 1).rstrip(b"\r\n")
    return first.count(b"\t") + 1 if first else 0


def keep_row(text: str, line_number: int, path: str | Path, empty: str, issues: LineIssues) -> bool:
    """Apply the empty-text policy to one row; True when the row is kept."""
    if text and not text.isspace():
        return True
    if empty == "error":
        raise DataFormatError(
            path, line_number, "the text is empty", "remove the row, or pass empty='keep' or empty='skip'"
        )
    issues.empty.append(line_number)
    return empty == "keep"


def _first_key(record: dict, keys: tuple[str, ...], path: str | Path, line_number: int, what: str) -> str:
    for key in keys:
        if key in record:
            return str(record[key]) if record[key] is not None else ""
    raise DataFormatError(path, line_number, f"no {what} field (looked for {', '.join(keys)})", f"add a {what} field")


def _text_records(
    path: str | Path, kind: str, encoding_errors: str, empty: str
) -> tuple[Features, Callable[[], Iterator[tuple[int, Sequence[str]]]]]:
    """Features and a generator of ``(line number, fields)`` for a collection (`kind="collection"`) or queries
    file: the one parser of both (`load_collection`, `load_queries`, `read_queries`)."""
    check_option("empty", empty, EMPTY_TEXT_POLICIES)
    if is_jsonl(path):
        with_title = kind == "collection" and _jsonl_has_titles(path)
    else:
        columns = count_columns_of_first_line(path)
        allowed = (2, 3) if kind == "collection" else (2,)
        if columns == 0 and _is_blank(path):  # no row at all: the callers say "no query" / "empty corpus"
            features = Features({name: Value("string") for name in ("id", "text")})
            return features, lambda: iter(())
        if columns not in allowed:
            expected = "id<TAB>text or id<TAB>title<TAB>text" if kind == "collection" else "id<TAB>text"
            raise DataFormatError(
                path, 1, f"expected {expected}, found {columns} tab-separated column(s)", f"write lines as {expected}"
            )
        with_title = columns == 3
    names = ("id", "title", "text") if with_title else ("id", "text")
    features = Features({name: Value("string") for name in names})

    def records() -> Iterator[tuple[int, Sequence[str]]]:
        issues = LineIssues(str(path), empty_policy=empty)
        if is_jsonl(path):
            for line_number, record in iter_jsonl_records(path, encoding_errors=encoding_errors, issues=issues):
                identifier = _first_key(record, ID_KEYS, path, line_number, "id")
                text = _first_key(record, TEXT_KEYS, path, line_number, "text")
                if keep_row(text, line_number, path, empty, issues):
                    fields = (identifier, str(record.get("title") or ""), text) if with_title else (identifier, text)
                    yield line_number, fields
        else:
            fix = "every line must have the same columns as the first; a text must not contain a tab"
            for line_number, fields in iter_tsv_rows(
                path, names, encoding_errors=encoding_errors, issues=issues, fix=fix
            ):
                if not fields[0]:
                    raise DataFormatError(path, line_number, "the id is empty", "give every row an id")
                if keep_row(fields[-1], line_number, path, empty, issues):
                    yield line_number, fields
        issues.log()

    return features, records


def _is_blank(path: str | Path) -> bool:
    """Whether the file holds nothing but white space (and a byte-order mark)."""
    with open_binary(path) as handle:
        return not any(line.strip().removeprefix(b"\xef\xbb\xbf").strip() for line in handle)


def _jsonl_has_titles(path: str | Path) -> bool:
    issues = LineIssues(str(path))
    for _, record in iter_jsonl_records(path, encoding_errors="replace", issues=issues):
        return "title" in record
    return False


def load_collection(
    path: str | Path, *, encoding_errors: str = "strict", empty: str = "keep", cache_dir: str | Path | None = None
) -> Dataset:
    """Passages as a memory-mapped `Dataset` with columns `id`, `text` (and `title` when the file has titles).

    Validates every line (column count, UTF-8, non-empty id) and raises `DataFormatError` naming file and line.
    The parsed table is cached (see `text_files.write_cached_dataset`), so a second call is instant.
    """
    features, records = _text_records(path, "collection", encoding_errors, empty)
    key = cache_key("collection", path, encoding_errors=encoding_errors, empty=empty)
    return write_cached_dataset(lambda: (fields for _, fields in records()), features, key, cache_dir)


def load_queries(
    path: str | Path, *, encoding_errors: str = "strict", empty: str = "keep", cache_dir: str | Path | None = None
) -> Dataset:
    """Queries as a `Dataset` with string columns `id`, `text` (`qid<TAB>text` TSV, `.gz`, or JSON lines).

    A file without any query (or whose every query was skipped by ``empty="skip"``) raises `DataFormatError`."""
    features, records = _text_records(path, "queries", encoding_errors, empty)
    key = cache_key("queries", path, encoding_errors=encoding_errors, empty=empty)
    queries = write_cached_dataset(lambda: (fields for _, fields in records()), features, key, cache_dir)
    if len(queries) == 0:
        raise DataFormatError(path, None, "no query in the file", "give one query per line as qid<TAB>text")
    return queries


def read_queries(path: str | Path, *, encoding_errors: str = "strict") -> dict[str, str]:
    """Queries as ``{qid: text}`` in file order: the same parser as `load_queries` (``qid<TAB>text`` TSV, ``.gz``,
    or JSON lines), with an empty text or a repeated query id an error naming the line. A file without any query
    is an error (a search, a BM25 run or a mining over no query would write an empty output as if it had worked)."""
    _, records = _text_records(path, "queries", encoding_errors, "error")
    queries: dict[str, str] = {}
    for line_number, (qid, text) in records():
        if qid in queries:
            raise DataFormatError(path, line_number, f"duplicate query id {qid!r}", "give each query a unique id")
        queries[qid] = text
    if not queries:
        raise DataFormatError(path, None, "no query in the file", "give one query per line as qid<TAB>text")
    return queries


QRELS_FEATURES = Features({"query_id": Value("string"), "doc_id": Value("string"), "relevance": Value("int32")})


def load_qrels(path: str | Path) -> Dataset:
    """Relevance judgements as a `Dataset` with columns `query_id`, `doc_id` (strings), `relevance` (int32), read by
    `read_qrels` (TREC 4-column or MS MARCO 2-column; errors name file and line).

    Example:
        >>> qrels = load_qrels("qrels.dev.small.tsv")           # doctest: +SKIP
        >>> qrels_to_dict(qrels)["1048585"]                      # doctest: +SKIP
        {'7187158': 1}
    """
    rows = [(qid, docid, rel) for qid, judged in read_qrels(path).items() for docid, rel in judged.items()]
    columns = {"query_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows], "relevance": [r[2] for r in rows]}
    return Dataset.from_dict(columns, features=QRELS_FEATURES)


def qrels_to_dict(qrels: Dataset | str | Path | dict) -> dict[str, dict[str, int]]:
    """`{query_id: {doc_id: relevance}}` from a qrels `Dataset`, a qrels file or such a dict (returned as is)."""
    if isinstance(qrels, dict):
        return qrels
    if isinstance(qrels, (str, Path)):
        return read_qrels(qrels)
    result: dict[str, dict[str, int]] = {}
    for query_id, doc_id, relevance in zip(qrels["query_id"], qrels["doc_id"], qrels["relevance"]):
        result.setdefault(query_id, {})[doc_id] = int(relevance)
    return result
