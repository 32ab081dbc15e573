"""Document collections: MS MARCO's `msmarco-docs.tsv` and generic id / title / text corpora, streamed.

Formats (the first line of a TSV decides; fields split on tabs only, quotes and "null" are text):
- MS MARCO documents as distributed: `docid<TAB>url<TAB>title<TAB>body` (4 columns; the url is not kept);
- a generic corpus: `id<TAB>title<TAB>text` (3 columns) or `id<TAB>text` (2 columns);
- JSON lines (`.jsonl`, `.jsonl.gz`): `id` (or `_id`, `docid`, `doc_id`, `pid`), `text` (or `contents`, `body`),
  optional `title`.
The other MS MARCO document files need no reader of their own: `msmarco-doctrain-queries.tsv` /
`msmarco-docdev-queries.tsv` are read by `read_queries`, `msmarco-doctrain-qrels.tsv` / `msmarco-docdev-qrels.tsv`
and TREC DL 2019's graded `2019qrels-docs.txt` by `read_qrels`, and the BM25 candidates `msmarco-doctrain-top100`
(TREC run format) by `read_run`.

Every document comes out as `id`, `title`, `text` (the body). Rules, each counted and logged, never silent:
- a title (JSON lines) holding tabs, newlines or runs of whitespace is collapsed to single spaces (a TSV title
  cannot hold a tab: such a line has one column too many and is an error naming file and line);
- a document with an empty body but a title is indexed by its title alone (`text` = the title, `title` = "");
- a document with neither body nor title follows `empty="keep"` (kept, counted, logged; encoding it is then an
  error unless skipped), `"skip"` (dropped, counted, logged) or `"error"`.

FirstP (the paper's document representation) is the first `max_length` tokens of `title + " " + body`, prefix
included: `firstp_text` pre-cuts that text to as many whitespace-separated words as the token budget (every word is
at least one WordPiece token, so the tokenizer's own truncation is unchanged) and `FirstPLookup` gives it by id for
`build_training_examples`, without copying the collection.

Example:
    >>> documents = load_documents("msmarco-docs.tsv")        # doctest: +SKIP
    >>> documents[0]                                           # doctest: +SKIP
    {'id': 'D1555982', 'title': 'The hot glowing surfaces of stars emit energy ...', 'text': '...'}
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from datasets import Dataset, Features, Value

from .errors import DataFormatError
from .msmarco import count_columns_of_first_line, is_jsonl
from .text_files import (
    EMPTY_TEXT_POLICIES,
    LineIssues,
    cache_key,
    check_option,
    iter_jsonl_records,
    iter_tsv_rows,
    write_cached_dataset,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DOCUMENT_FEATURES",
    "Document",
    "FirstPLookup",
    "document_format",
    "firstp_dataset",
    "firstp_text",
    "is_msmarco_documents",
    "iter_documents",
    "load_documents",
]

DOCUMENT_FEATURES = Features({"id": Value("string"), "title": Value("string"), "text": Value("string")})
TSV_LAYOUTS = {
    4: ("docid", "url", "title", "body"),
    3: ("id", "title", "text"),
    2: ("id", "text"),
}
JSON_ID_KEYS = ("id", "_id", "docid", "doc_id", "pid")
JSON_TEXT_KEYS = ("text", "contents", "body")


class Document(NamedTuple):
    """One document as read: its id, title ("" when none), body text and the 1-based line it came from."""

    id: str
    title: str
    text: str
    line: int


@dataclass
class DocumentIssues:
    """What was repaired or skipped while reading one file; logged once at the end (counts + first lines)."""

    path: str
    empty_policy: str = "keep"
    titles_collapsed: list[int] = field(default_factory=list)
    title_only: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)

    def log(self) -> None:
        for lines, what in (
            (self.titles_collapsed, "title(s) held tabs or newlines, collapsed to single spaces"),
            (self.title_only, "document(s) with an empty body are indexed by their title alone"),
            (
                self.empty,
                "document(s) with neither title nor body were "
                + ("skipped" if self.empty_policy == "skip" else "kept"),
            ),
        ):
            if lines:
                shown = ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")
                logger.warning("%s: %d %s (lines %s)", self.path, len(lines), what, shown)


def document_format(path: str | Path) -> str:
    """``"jsonl"``, ``"msmarco"`` (4-column `msmarco-docs.tsv`), ``"tsv-title"`` (3 columns) or ``"tsv"`` (2)."""
    if is_jsonl(path):
        return "jsonl"
    columns = count_columns_of_first_line(path)
    if columns not in TSV_LAYOUTS:
        raise DataFormatError(
            path,
            1,
            f"expected 4 (docid, url, title, body), 3 (id, title, text) or 2 (id, text) tab-separated columns, "
            f"found {columns}",
            "write one document a line in one of these layouts, or JSON lines with id, title and text",
        )
    return {4: "msmarco", 3: "tsv-title", 2: "tsv"}[columns]


def is_msmarco_documents(path: str | Path) -> bool:
    """Whether ``path`` is laid out like `msmarco-docs.tsv` (a TSV whose first line has 4 columns)."""
    return not is_jsonl(path) and count_columns_of_first_line(path) == 4


def _first_value(record: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in record:
            return "" if record[key] is None else str(record[key])
    return None


def _raw_documents(path: str | Path, encoding_errors: str, issues: LineIssues) -> Iterator[tuple[int, str, str, str]]:
    """``(line, id, title, body)`` for every line of the file, before the document rules."""
    layout = document_format(path)
    if layout == "jsonl":
        for line_number, record in iter_jsonl_records(path, encoding_errors=encoding_errors, issues=issues):
            identifier = _first_value(record, JSON_ID_KEYS)
            text = _first_value(record, JSON_TEXT_KEYS)
            if identifier is None or text is None:
                what, keys = ("id", JSON_ID_KEYS) if identifier is None else ("text", JSON_TEXT_KEYS)
                raise DataFormatError(
                    path, line_number, f"no {what} field (looked for {', '.join(keys)})", f"add a {what} field"
                )
            yield line_number, identifier, _first_value(record, ("title",)) or "", text
        return
    names = TSV_LAYOUTS[{"msmarco": 4, "tsv-title": 3, "tsv": 2}[layout]]
    fix = "every line needs the first line's columns; a title or body must not contain a tab (replace it by a space)"
    for line_number, fields in iter_tsv_rows(path, names, encoding_errors=encoding_errors, issues=issues, fix=fix):
        if layout == "msmarco":
            identifier, _, title, body = fields
        elif layout == "tsv-title":
            identifier, title, body = fields
        else:
            (identifier, body), title = fields, ""
        yield line_number, identifier, title, body


def iter_documents(
    path: str | Path, *, encoding_errors: str = "strict", empty: str = "keep", _issues: DocumentIssues | None = None
) -> Iterator[Document]:
    """Stream the documents of ``path`` one at a time (see the module docstring for formats and rules).

    Errors (`DataFormatError`) name the file and line: a wrong column count, an empty id, bytes that are not UTF-8
    (unless ``encoding_errors="replace"``), a JSON line without id or text, an empty document with
    ``empty="error"``. Repairs and skips are counted and logged when the file has been read to its end.
    """
    check_option("empty", empty, EMPTY_TEXT_POLICIES)
    issues = _issues if _issues is not None else DocumentIssues(str(path), empty_policy=empty)
    line_issues = LineIssues(str(path))
    for line_number, identifier, title, body in _raw_documents(path, encoding_errors, line_issues):
        if not identifier.strip():
            raise DataFormatError(path, line_number, "the document id is empty", "give every document an id")
        if title and any(character in title for character in "\t\n\r\x0b\x0c"):
            title = " ".join(title.split())
            issues.titles_collapsed.append(line_number)
        title = title.strip()
        if not body.strip():
            if title:
                body, title = title, ""
                issues.title_only.append(line_number)
            elif empty == "error":
                raise DataFormatError(
                    path,
                    line_number,
                    f"document {identifier!r} has neither title nor body",
                    "remove the line, or pass empty='skip' (counted and logged) or empty='keep'",
                )
            else:
                issues.empty.append(line_number)
                if empty == "skip":
                    continue
        yield Document(identifier, title, body, line_number)
    line_issues.log()
    issues.log()


def load_documents(
    path: str | Path, *, encoding_errors: str = "strict", empty: str = "keep", cache_dir: str | Path | None = None
) -> Dataset:
    """Documents as a memory-mapped `Dataset` with string columns ``id``, ``title``, ``text`` (the body).

    The file is read once, streamed into Arrow record batches (never held in memory), and cached like
    `load_collection` (key: path, size, modification time, options), so a second call is instant.
    """
    check_option("empty", empty, EMPTY_TEXT_POLICIES)

    def rows() -> Iterator[tuple[str, str, str]]:
        for document in iter_documents(path, encoding_errors=encoding_errors, empty=empty):
            yield document.id, document.title, document.text

    key = cache_key("documents", path, encoding_errors=encoding_errors, empty=empty)
    return write_cached_dataset(rows, DOCUMENT_FEATURES, key, cache_dir)


def firstp_text(title: str, body: str, max_tokens: int | None = 512) -> str:
    """``title + " " + body`` (or the body alone) cut to its first ``max_tokens`` whitespace-separated words.

    The model's tokenizer still truncates to the exact token budget; this cut only keeps training examples small
    (MS MARCO bodies run to hundreds of kB), and never changes the tokens kept because every word yields at least
    one token. ``max_tokens=None`` keeps the whole text.

    Example:
        >>> firstp_text("Heat", "water boils at 100 degrees", max_tokens=3)
        'Heat water boils'
    """
    text = f"{title} {body}" if title else body
    if max_tokens is None:
        return text
    words = text.split(maxsplit=max_tokens)
    return " ".join(words[:max_tokens])


def firstp_dataset(documents: Dataset | str | Path, max_tokens: int | None = 512, **reader_options) -> Dataset:
    """Documents (a file for `load_documents`, or a `Dataset` id, title, text) as a passage collection ``id, text``
    whose text is the FirstP text (`firstp_text`), for every tool that takes a collection `Dataset` (BM25,
    `build_training_examples`, `DevSet`). Written through `Dataset.map`, so a file-backed input stays on disk.

    Example:
        >>> docs = Dataset.from_dict({"id": ["D1"], "title": ["Heat"], "text": ["water boils"]})
        >>> firstp_dataset(docs)[0]
        {'id': 'D1', 'text': 'Heat water boils'}
    """
    if not isinstance(documents, Dataset):
        documents = load_documents(documents, **reader_options)
    has_titles = "title" in documents.column_names

    def cut(batch: dict) -> dict:
        titles = batch["title"] if has_titles else [""] * len(batch["text"])
        return {"text": [firstp_text(title, body, max_tokens) for title, body in zip(titles, batch["text"])]}

    removed = [name for name in documents.column_names if name not in ("id", "text")]
    return documents.map(cut, batched=True, remove_columns=removed, desc="FirstP texts")


class FirstPLookup(Mapping):
    """Read-only ``{docid: FirstP text}`` over a documents `Dataset` (columns id, title, text), for the passage
    tools that take an id → text mapping (`build_training_examples`, id triples). Rows stay in the Arrow table.

    Example:
        >>> docs = Dataset.from_dict({"id": ["D1"], "title": ["Heat"], "text": ["water boils"]})
        >>> FirstPLookup(docs)["D1"]
        'Heat water boils'
    """

    def __init__(self, documents: Dataset, max_tokens: int | None = 512) -> None:
        missing = {"id", "text"} - set(documents.column_names)
        if missing:
            raise ValueError(f"documents need columns id, text (and title); missing {sorted(missing)}")
        self._documents = documents
        self._has_titles = "title" in documents.column_names
        self._max_tokens = max_tokens
        self._rows: dict[str, int] = {}
        for row, identifier in enumerate(documents["id"]):
            if identifier in self._rows:
                raise ValueError(f"documents have the id {identifier!r} twice (rows {self._rows[identifier]}, {row})")
            self._rows[identifier] = row

    def __getitem__(self, identifier: str) -> str:
        record = self._documents[self._rows[str(identifier)]]
        return firstp_text(record["title"] if self._has_titles else "", record["text"], self._max_tokens)

    def __contains__(self, identifier: object) -> bool:
        return str(identifier) in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)
