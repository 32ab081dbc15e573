"""Encode a passage collection into a matrix of float32 vectors, in chunks, optionally one shard of it.

Sharding convention: shard ``i`` of ``n`` (0-based) is the contiguous row slice
``[i * N // n, (i + 1) * N // n)`` of the N-row collection, so concatenating the shards' vectors and docids in
shard order gives exactly one full pass. Under ``accelerate launch`` every process takes shard
``(process_index, num_processes)``.

Memory: the collection is read ``chunk_size`` rows at a time; only the current chunk's texts are in Python lists
(the model sorts each chunk's batches by length itself), and the output matrix is allocated once.

Example::

    encoder = load_encoder("my-student")
    embeddings, docids = encode_corpus(encoder, "collection.tsv", batch_size=128)   # [N, H] float32, N ids
    first_half, ids_0 = encode_corpus(encoder, "collection.tsv", shard=(0, 2))
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tct_hf.data.errors import DataFormatError

DEFAULT_CHUNK_SIZE = 8192
# The one definition of a shard folder's name; `find_shard_directories` recognises exactly what this writes.
SHARD_DIRECTORY_PATTERN = "shard-{index}-of-{count}"
_SHARD_DIRECTORY_RE = re.compile(SHARD_DIRECTORY_PATTERN.format(index=r"(\d+)", count=r"(\d+)"))


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"I/N"`` (0-based I < N) into ``(I, N)``; raise `ValueError` with the expected syntax otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"--shard {text!r}: expected I/N with integers 0 <= I < N, e.g. 0/4")
    index, count = int(match.group(1)), int(match.group(2))
    validate_shard((index, count))
    return index, count


def validate_shard(shard: tuple[int, int]) -> tuple[int, int]:
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= I < N and N >= 1 (shards are numbered from 0)")
    return index, count


def shard_bounds(num_rows: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """Row range ``[start, end)`` of ``shard`` = (i, n) over ``num_rows`` rows (the whole range for None)."""
    if shard is None:
        return 0, num_rows
    index, count = validate_shard(shard)
    return index * num_rows // count, (index + 1) * num_rows // count


def shard_directory(index_dir: str | Path, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` is written: ``INDEX_DIR/shard-{index}-of-{count}``."""
    return Path(index_dir) / SHARD_DIRECTORY_PATTERN.format(index=index, count=count)


def find_shard_directories(index_dir: str | Path) -> list[Path]:
    """The ``shard-I-of-N`` folders under ``index_dir``, ordered by I (what ``--shard`` runs and
    `tct_hf.retrieval.encode_index` write there). Raises `FileNotFoundError` when ``index_dir`` is not a folder or
    holds no shard folder; `tct_hf.retrieval.index.merge_index_shards` checks that they cover 0..N-1 once."""
    directory = Path(index_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such index directory")
    found = []
    for path in directory.iterdir():
        match = _SHARD_DIRECTORY_RE.fullmatch(path.name)
        if match is not None and path.is_dir():
            found.append((int(match.group(1)), path))
    if not found:
        raise FileNotFoundError(
            f"{directory}: no {SHARD_DIRECTORY_PATTERN.format(index='I', count='N')} folders to merge "
            "(write them with `tct-hf encode --shard I/N` or encode_index(..., shard=(i, n)))"
        )
    return [path for _, path in sorted(found, key=lambda item: item[0])]


def load_corpus(corpus: Any, skip_empty: bool = False) -> tuple[Any, str]:
    """Return ``(dataset, source)``: a path is read with `tct_hf.data.msmarco.load_collection` (a 4-column
    ``msmarco-docs.tsv`` with `tct_hf.data.documents.load_documents`: title + body) (empty passages
    dropped with a counted warning when ``skip_empty``), a `datasets.Dataset` (columns ``id``, ``text``, optional
    ``title``) is used as it is. ``source`` names it in error messages."""
    if isinstance(corpus, (str, Path)):
        from tct_hf.data.msmarco import load_collection

        path = Path(corpus)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: corpus file not found")
        if not _has_content(path):
            raise DataFormatError(
                path, None, "empty corpus (no passages)", "give a collection with one passage a line"
            )
        from tct_hf.data.documents import is_msmarco_documents, load_documents

        empty = "skip" if skip_empty else "keep"
        if is_msmarco_documents(path):  # docid, url, title, body
            return load_documents(path, empty=empty), str(path)
        return load_collection(path, empty=empty), str(path)
    missing = {"id", "text"} - set(getattr(corpus, "column_names", []))
    if missing:
        raise ValueError(f"corpus dataset lacks column(s) {sorted(missing)}; it needs id, text and optionally title")
    return corpus, "<corpus dataset>"


def _has_content(path: Path) -> bool:
    """Whether the file (``.gz`` too) has a non-blank line; reads only up to the first one."""
    from tct_hf.data.text_files import open_binary

    with open_binary(path) as handle:
        return any(line.strip() for line in handle)


def _lines_with_docid(path: str, docid: str) -> list[int]:
    """1-based line numbers of ``path`` (TSV or JSONL, ``.gz`` too) whose id field is ``docid`` (error path only)."""
    import json

    from tct_hf.data.bom import strip_bom
    from tct_hf.data.msmarco import ID_KEYS, is_jsonl
    from tct_hf.data.text_files import open_binary

    found = []
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            line = strip_bom(raw, number).decode("utf-8", errors="replace").rstrip("\r\n")
            if is_jsonl(path):
                try:
                    record = json.loads(line) if line.strip() else {}
                except json.JSONDecodeError:
                    continue
                ids = [str(record[key]) for key in ID_KEYS if key in record][:1]
            else:
                ids = [line.split("\t", 1)[0]]
            if ids == [docid]:
                found.append(number)
    return found


def check_docids(docids: list[str], source: str) -> None:
    """Raise `DataFormatError` on an empty corpus, an empty id or a duplicate id.

    For a file the error names the lines of both occurrences; for an in-memory dataset, the rows (from 1)."""
    if not docids:
        raise DataFormatError(
            source, None, "empty corpus (no passages)", "give a collection with at least one passage"
        )
    first_row: dict[str, int] = {}
    for row, docid in enumerate(docids, start=1):
        if docid == "":
            raise DataFormatError(source, None, f"row {row} has an empty docid", "give every passage an id")
        if docid in first_row:
            lines = _lines_with_docid(source, docid) if Path(source).is_file() else []
            if len(lines) >= 2:
                raise DataFormatError(
                    source, lines[1], f"duplicate docid {docid!r} (first on line {lines[0]})", "make docids unique"
                )
            raise DataFormatError(
                source,
                None,
                f"row {row}: duplicate docid {docid!r} (first at row {first_row[docid]})",
                "make docids unique",
            )
        first_row[docid] = row


def iter_chunks(dataset: Any, start: int, end: int, chunk_size: int) -> Iterator[tuple[list[str], list[str] | None]]:
    """Yield ``(texts, titles or None)`` for rows ``[start, end)`` in chunks of ``chunk_size`` rows."""
    has_titles = "title" in dataset.column_names
    columns = ["text", "title"] if has_titles else ["text"]
    view = dataset.select_columns(columns)
    for chunk_start in range(start, end, chunk_size):
        rows = view[chunk_start : min(chunk_start + chunk_size, end)]
        texts = ["" if text is None else text for text in rows["text"]]
        titles = ["" if title is None else title for title in rows["title"]] if has_titles else None
        yield texts, titles


def encode_corpus(
    encoder: Any,
    corpus: Any,
    batch_size: int = 64,
    max_length: int | None = None,
    shard: tuple[int, int] | None = None,
    show_progress_bar: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    skip_empty: bool = False,
    segment_window: int | None = None,
    segment_stride: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Encode the passages of ``corpus`` (a path or a `datasets.Dataset`) with ``encoder.encode_passages``.

    With ``segment_window`` and ``segment_stride`` (tokens) every document is encoded as overlapping segments
    instead (MaxP, `tct_hf.retrieval.segments.encode_segments`); the ids returned are then segment ids whose
    metadata `build_index` keeps, so that `search` returns distinct documents.

    Args:
        encoder: a `TCTModel` or anything from `load_encoder`.
        corpus: ``docid<TAB>text[<TAB>title]`` TSV, JSONL with ``id``/``text``/``title``, or a dataset.
        batch_size: passages per forward pass (the model sorts each chunk by length before batching).
        max_length: total token length cap (prefix included); None keeps the model's default.
        shard: ``(i, n)`` to encode only the contiguous slice i of n (see the module docstring).
        show_progress_bar: a tqdm bar counting passages, with passages/s.
        chunk_size: rows read from the collection at a time.
        skip_empty: when reading a file, drop passages whose text is empty (counted in a warning). Otherwise an
            empty passage is an error naming its docid (its vector would be meaningless).

    Returns:
        ``(embeddings float32 [rows of the shard, dim], docids)`` in collection order.
    """
    if (segment_window is None) != (segment_stride is None):
        raise ValueError("segment_window and segment_stride go together: give both (tokens) or neither")
    if segment_window is not None:
        from .segments import encode_segments

        return encode_segments(
            encoder,
            corpus,
            segment_window,
            segment_stride,
            batch_size=batch_size,
            shard=shard,
            show_progress_bar=show_progress_bar,
            chunk_size=chunk_size,
            skip_empty=skip_empty,
        )
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size ({batch_size}) and chunk_size ({chunk_size}) must be >= 1")
    dataset, source = load_corpus(corpus, skip_empty=skip_empty)
    docids = [str(docid) for docid in dataset["id"]]
    check_docids(docids, source)
    start, end = shard_bounds(len(docids), shard)
    shard_docids = docids[start:end]
    embeddings: np.ndarray | None = None
    description = "encoding" if shard is None else f"encoding shard {shard[0]}/{shard[1]}"
    progress = tqdm(
        total=end - start, unit="passage", unit_scale=True, desc=description, disable=not show_progress_bar
    )
    position = 0
    with progress:
        for texts, titles in iter_chunks(dataset, start, end, chunk_size):
            _check_texts(texts, shard_docids[position : position + len(texts)], source)
            vectors = np.asarray(
                encoder.encode_passages(
                    texts, titles=titles, batch_size=batch_size, max_length=max_length, show_progress_bar=False
                ),
                dtype=np.float32,
            )
            if vectors.shape[0] != len(texts):
                raise RuntimeError(f"the encoder returned {vectors.shape[0]} vectors for {len(texts)} passages")
            if embeddings is None:
                embeddings = np.empty((end - start, vectors.shape[1]), dtype=np.float32)
            embeddings[position : position + len(texts)] = vectors
            position += len(texts)
            progress.update(len(texts))
    if embeddings is None:  # an empty shard of a non-empty corpus (more shards than rows)
        dim = _probe_dimension(encoder, batch_size)
        embeddings = np.empty((0, dim), dtype=np.float32)
    return embeddings, shard_docids


def _check_texts(texts: list[str], docids: list[str], source: str) -> None:
    for text, docid in zip(texts, docids):
        if not text.strip():
            raise DataFormatError(
                source,
                None,
                f"passage {docid!r} has empty text",
                "remove it, or skip empty passages (`tct-hf encode --skip-empty`, `skip_empty=True`)",
            )


def _probe_dimension(encoder: Any, batch_size: int) -> int:
    from tct_hf.retrieval.encoders import embedding_dim

    dim = embedding_dim(encoder)
    if dim is None:
        dim = np.asarray(encoder.encode_passages(["probe"], titles=None, batch_size=batch_size)).shape[1]
    return int(dim)
