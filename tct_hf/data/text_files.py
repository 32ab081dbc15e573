"""Line-level reading of TSV / JSONL files with errors that name the file and line, and a cached Arrow writer.

Why not `load_dataset("csv", ...)`: its errors do not name a line, and it would need a second validating pass.
One Python pass that validates, decodes and writes Arrow record batches is faster than a validating pass followed by
the csv builder, or `Dataset.from_generator` (benchmarks/RESULTS.md, "Reading text files").

Conventions of every reader built on this module:
- fields are split on tabs only; quote characters have no meaning (`csv.QUOTE_NONE`) and the strings "null",
  "NA", "" stay strings (never None);
- `encoding_errors="strict"` (default) raises `DataFormatError` at the first line that is not UTF-8;
  `"replace"` decodes such lines with U+FFFD, counts them and logs the count and the first line numbers;
- `.gz` files are decompressed on the fly;
- a UTF-8 byte-order mark at the start of a file is stripped (`bom.strip_bom`; Windows editors write one), so the
  first id never begins with U+FEFF; every reader of this package (collection, queries, qrels, runs, triples,
  JSONL) does the same;
- the parsed table is cached as an Arrow file keyed by (reader, options, a SHA-256 of the file's bytes), written to a
  temporary name and renamed, so an interrupted run never leaves a partial cache entry, and a file rewritten with
  the same size and modification time is parsed again (the content decides, not the file's metadata).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pyarrow as pa
from datasets import Dataset, Features

from .bom import strip_bom
from .errors import DataFormatError

logger = logging.getLogger(__name__)

ENCODING_ERRORS = ("strict", "replace")
EMPTY_TEXT_POLICIES = ("keep", "skip", "error")
_BATCH_ROWS = 50_000
_CACHE_FORMAT_VERSION = "2"


def open_binary(path: str | Path) -> IO[bytes]:
    """Open `path` for binary line reading, decompressing `.gz` files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


@dataclass
class LineIssues:
    """Counts of lines that were repaired or skipped, logged once at the end of a file (never silent)."""

    path: str
    replaced: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)
    empty_policy: str = "keep"

    def log(self) -> None:
        if self.replaced:
            logger.warning(
                "%s: %d line(s) were not valid UTF-8 and were decoded with U+FFFD replacements (lines %s%s)",
                self.path,
                len(self.replaced),
                ", ".join(map(str, self.replaced[:10])),
                ", ..." if len(self.replaced) > 10 else "",
            )
        if self.empty:
            action = "skipped" if self.empty_policy == "skip" else "kept"
            logger.warning(
                "%s: %d row(s) with an empty text field were %s (lines %s%s)",
                self.path,
                len(self.empty),
                action,
                ", ".join(map(str, self.empty[:10])),
                ", ..." if len(self.empty) > 10 else "",
            )


def check_option(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {allowed}")


def decode_line(raw: bytes, path: str, line_number: int, encoding_errors: str, issues: LineIssues) -> str:
    """Decode one line (without its line terminator) as UTF-8 under the `encoding_errors` policy."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        if encoding_errors == "replace":
            issues.replaced.append(line_number)
            return raw.decode("utf-8", errors="replace")
        raise DataFormatError(
            path,
            line_number,
            f"byte {raw[error.start : error.start + 1]!r} at column {error.start + 1} is not valid UTF-8",
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or pass encoding_errors='replace' to "
            "decode such lines with U+FFFD (they are counted and logged)",
        ) from None


def iter_lines(path: str | Path, encoding_errors: str, issues: LineIssues) -> Iterator[tuple[int, str]]:
    """Yield `(line_number, text)` for every line of the file, 1-based, without the line terminator.

    A final empty line (the newline at the end of the file) is not a line; any other empty line is yielded.
    A UTF-8 byte-order mark at the start of the file is dropped.
    """
    check_option("encoding_errors", encoding_errors, ENCODING_ERRORS)
    with open_binary(path) as handle:
        for line_number, raw in enumerate(handle, start=1):
            raw = strip_bom(raw, line_number)
            if raw.endswith(b"\n"):
                raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
            yield line_number, decode_line(raw, str(path), line_number, encoding_errors, issues)


def iter_tsv_rows(
    path: str | Path,
    column_names: tuple[str, ...],
    *,
    encoding_errors: str = "strict",
    issues: LineIssues | None = None,
    fix: str | None = None,
) -> Iterator[tuple[int, list[str]]]:
    """Yield `(line_number, fields)` for a tab-separated file whose every line has exactly len(column_names) fields."""
    issues = issues if issues is not None else LineIssues(str(path))
    expected = len(column_names)
    for line_number, line in iter_lines(path, encoding_errors, issues):
        fields = line.split("\t")
        if len(fields) != expected:
            raise DataFormatError(
                path,
                line_number,
                f"expected {expected} tab-separated columns ({', '.join(column_names)}), found {len(fields)}",
                fix or "give every line exactly these columns; a text must not contain a tab or a newline",
            )
        yield line_number, fields


def iter_jsonl_records(
    path: str | Path, *, encoding_errors: str = "strict", issues: LineIssues | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield `(line_number, object)` for a JSON-lines file (blank lines are errors)."""
    issues = issues if issues is not None else LineIssues(str(path))
    for line_number, line in iter_lines(path, encoding_errors, issues):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(
                path, line_number, f"not a JSON object ({error.msg})", "write one JSON object per line"
            ) from None
        if not isinstance(record, dict):
            raise DataFormatError(path, line_number, "not a JSON object", "write one JSON object per line")
        yield line_number, record


def file_digest(path: str | Path) -> str:
    """SHA-256 of the file's bytes (as stored: a `.gz` file is hashed compressed)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cache_key(kind: str, path: str | Path, **options) -> str:
    """Hash of the reader, its options and the file's content (a SHA-256 of its bytes).

    Content, not size and modification time: a file rewritten within the same second with the same length (a
    script regenerating it, a copy that keeps times) must not return the previous parse. Hashing reads the file
    once, a small cost next to parsing it."""
    identity = {
        "version": _CACHE_FORMAT_VERSION,
        "kind": kind,
        "sha256": file_digest(path),
        "options": options,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    import datasets.config

    return Path(datasets.config.HF_DATASETS_CACHE) / "tct_hf_text_files"


def write_cached_dataset(
    rows: Callable[[], Iterable[Sequence]],
    features: Features,
    key: str,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """Build a memory-mapped `Dataset` from `rows()` (called only on a cache miss) and cache it under `key`.

    Each row is a sequence of values in the order of `features` (tuples, not dicts: cheaper to build).

    Rows are written in Arrow record batches of 50k rows to a temporary file that is renamed into place only
    after the last row, so a failure (e.g. a `DataFormatError` on line 5,000,000) leaves no cache entry.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{key}.arrow"
    if target.is_file():
        return Dataset.from_file(str(target))
    schema = features.arrow_schema
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{key}.", suffix=".tmp")
    os.close(descriptor)
    try:
        with pa.OSFile(temporary, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            columns: list[list] = [[] for _ in features]
            count = 0
            for row in rows():
                for column, value in zip(columns, row):
                    column.append(value)
                count += 1
                if count == _BATCH_ROWS:
                    writer.write_batch(pa.record_batch(columns, schema=schema))
                    columns = [[] for _ in features]
                    count = 0
            writer.write_batch(pa.record_batch(columns, schema=schema))
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return Dataset.from_file(str(target))
