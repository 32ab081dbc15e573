"""MaxP: documents cut into overlapping token windows, one vector per window, a document scored by its best window.

Segmentation (`Segmenter`), in tokens of the encoder's own tokenizer:

- ``window`` W is the length of every segment as the model sees it: the prefix's P tokens (``[CLS] [D]``), the
  title, the body window. ``stride`` S is the number of body tokens between the starts of consecutive windows.
  ``P < W`` and ``1 <= S <= W - P`` are required (a larger stride would skip text): errors otherwise.
- The title is repeated in every segment, cut to ``W - P - S`` tokens (the room the overlap leaves), so every body
  window holds at least S tokens and no body text is ever skipped. Titles cut (or dropped when ``S = W - P``) are
  counted and logged.
- Window boundaries snap to word starts (a window never begins or ends inside a word, unless a single word is longer
  than the stride), so a segment's text re-tokenizes to exactly the tokens counted; a body of at most ``W - P -
  title`` tokens gives one segment, which is FirstP at length W.
- Segment ids are ``f"{docid}#{k}"`` (k = 0, 1, ... in document order); `parse_segment_id` splits at the last
  ``#``, so any docid survives. The index records ``extra["segments"] = {"window", "stride", "prefix_tokens"}``.

Encoding (`encode_segments`, also `encode_corpus(..., segment_window=W, segment_stride=S)`) streams the corpus
in chunks of documents: only one chunk's segments exist as text at a time. Sharding splits documents, never a
document's segments.

Search (`search_segmented`, also `search(index, ...)` on a segmented index): the segment ranking is read deeper
and deeper until every query has ``k`` distinct documents (or the index is exhausted), each document scored by
its best segment (``aggregate="max"``, MaxP) or by its first segment only (``aggregate="first"``, FirstP from the
same index). A document appears once per query; ties are broken by docid ascending, and a tie at the k-th document
is completed before cutting, as in `search`.

Example::

    embeddings, ids = encode_corpus(encoder, "msmarco-docs.tsv", segment_window=256, segment_stride=128)
    index = build_index(embeddings, ids)               # ids carry the segment metadata into index.extra
    run = search(index, encoder.encode_queries(queries), qids, k=100)   # 100 distinct documents, MaxP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

AGGREGATES = ("max", "first")
SEGMENT_SEPARATOR = "#"

__all__ = [
    "AGGREGATES",
    "SegmentIds",
    "Segmenter",
    "encode_segments",
    "is_segmented",
    "parse_segment_id",
    "prefix_token_count",
    "search_segmented",
    "segment_id",
]


def segment_id(docid: str, number: int) -> str:
    """``"D12#3"``: segment ``number`` (from 0) of document ``docid``."""
    return f"{docid}{SEGMENT_SEPARATOR}{number}"


def parse_segment_id(identifier: str) -> tuple[str, int]:
    """``(docid, number)`` of a segment id (split at the last ``#``, so a docid may hold ``#`` itself).

    Example:
        >>> parse_segment_id("doc#7#2")
        ('doc#7', 2)
    """
    docid, separator, number = identifier.rpartition(SEGMENT_SEPARATOR)
    if not separator or not docid or not number.isdigit():
        raise ValueError(f"{identifier!r} is not a segment id docid#number (was this index segmented?)")
    return docid, int(number)


class SegmentIds(list):
    """The segment ids of a segmented encoding, carrying ``segments`` (window, stride, prefix tokens), which
    `build_index` stores as ``extra["segments"]`` so that `search` knows to aggregate."""

    def __init__(self, ids: Sequence[str], segments: dict) -> None:
        super().__init__(ids)
        self.segments = dict(segments)


def is_segmented(index: Any) -> bool:
    """Whether a `DenseIndex` holds document segments (written by a segmented encoding)."""
    return bool((getattr(index, "extra", None) or {}).get("segments"))


# ---------------------------------------------------------------------------------------------- segmentation


def check_window(window: int, stride: int, prefix_tokens: int) -> None:
    """Raise `ValueError` for a window that cannot hold the prefix plus text, or a stride that would skip text."""
    for name, value in (("window", window), ("stride", stride)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"segment {name} must be a positive number of tokens, got {value!r}")
    if window <= prefix_tokens:
        raise ValueError(
            f"segment window {window} tokens is not larger than the prefix ({prefix_tokens} tokens): "
            f"no room for text. Fix: a window of at least {prefix_tokens + 1} tokens (e.g. 256)."
        )
    if stride > window - prefix_tokens:
        raise ValueError(
            f"segment stride {stride} is larger than the window's {window - prefix_tokens} text tokens "
            f"(window {window} minus the {prefix_tokens}-token prefix): text between windows would be skipped. "
            f"Fix: a stride of at most {window - prefix_tokens} (e.g. half the window)."
        )


def prefix_token_count(encoder: Any) -> int:
    """Tokens the encoder adds before a passage's text: the TCT prefix (``[CLS] [D] `` = 4), or for a
    sentence-transformers model its special tokens plus its document prompt."""
    tokenizer = encoder_tokenizer(encoder)
    config = getattr(encoder, "config", None)
    prefix = getattr(config, "passage_prefix", None)
    if prefix is not None:
        return len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    model = getattr(encoder, "model", None)
    prompt = (getattr(model, "prompts", None) or {}).get("document", "")
    return len(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def encoder_tokenizer(encoder: Any) -> Any:
    """The tokenizer the encoder cuts texts with (a `TCTModel`'s, or a sentence-transformers model's)."""
    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is None and getattr(encoder, "model", None) is not None:
        tokenizer = getattr(encoder.model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("segmenting needs the encoder's tokenizer (model.tokenizer); none is attached")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("segmenting needs a fast (tokenizers-backed) tokenizer for character offsets")
    return tokenizer


def encoder_max_positions(encoder: Any) -> int | None:
    """The encoder's position embeddings (None when unknown)."""
    config = getattr(encoder, "config", None)
    if config is None and getattr(encoder, "model", None) is not None:
        first = encoder.model[0] if hasattr(encoder.model, "__getitem__") else None
        config = getattr(getattr(first, "auto_model", None), "config", None)
    return getattr(config, "max_position_embeddings", None)


@dataclass
class Segmenter:
    """Cut (title, body) documents into segments; see the module docstring for the rules.

    Example (a whitespace tokenizer stands in for WordPiece)::

        segmenter = Segmenter(tokenizer, window=8, stride=2, prefix_tokens=4)
        segmenter.split(["T"], ["a b c d e f"])   # [[("T", "a b c"), ("T", "c d e"), ("T", "e f")]]
    """

    tokenizer: Any
    window: int
    stride: int
    prefix_tokens: int
    titles_cut: int = field(default=0, init=False)
    titles_dropped: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        check_window(self.window, self.stride, self.prefix_tokens)

    @property
    def metadata(self) -> dict:
        return {"window": self.window, "stride": self.stride, "prefix_tokens": self.prefix_tokens}

    @property
    def title_budget(self) -> int:
        return self.window - self.prefix_tokens - self.stride

    def _encode(self, texts: list[str]) -> list[Any]:
        if not texts:  # the tokenizer fails on an empty batch
            return []
        return self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True).encodings

    def split(self, titles: Sequence[str] | None, bodies: Sequence[str]) -> list[list[tuple[str, str]]]:
        """Per document, its segments as ``(title, body window text)`` pairs (at least one per document)."""
        titles = list(titles) if titles is not None else [""] * len(bodies)
        if len(titles) != len(bodies):
            raise ValueError(f"{len(titles)} titles for {len(bodies)} documents")
        body_encodings = self._encode(list(bodies))
        title_indices = [i for i, title in enumerate(titles) if title]
        title_encodings = dict(zip(title_indices, self._encode([titles[i] for i in title_indices])))
        result = []
        for index, (title, body) in enumerate(zip(titles, bodies)):
            title = self._cut_title(title, title_encodings.get(index))
            title_tokens = len(title_encodings[index].ids) if title and index in title_encodings else 0
            body_window = self.window - self.prefix_tokens - min(title_tokens, self.title_budget)
            result.append([(title, text) for text in self._windows(body, body_encodings[index], body_window)])
        return result

    def _cut_title(self, title: str, encoding: Any) -> str:
        if not title or encoding is None or len(encoding.ids) <= self.title_budget:
            return title
        if self.title_budget == 0:
            self.titles_dropped += 1
            return ""
        self.titles_cut += 1
        end = _word_start(encoding, self.title_budget)
        if end == 0:  # the first word alone is longer than the budget: cut inside it
            end = self.title_budget
        return title[: encoding.offsets[end - 1][1]]

    def _windows(self, body: str, encoding: Any, size: int) -> list[str]:
        count = len(encoding.ids)
        if count <= size:
            return [body]
        offsets, windows, start = encoding.offsets, [], 0
        while True:
            end = min(start + size, count)
            if end < count:
                snapped = _word_start(encoding, end)
                # keep the cut on a word boundary unless that would leave text between this window and the next
                if snapped >= start + self.stride:
                    end = snapped
            windows.append(body[offsets[start][0] : offsets[end - 1][1]])
            if end >= count:
                return windows
            following = _word_start(encoding, start + self.stride)
            start = following if following > start else start + self.stride

    def log(self) -> None:
        if self.titles_cut or self.titles_dropped:
            logger.warning(
                "segments: %d title(s) cut to %d tokens and %d dropped (a window of %d with stride %d leaves "
                "%d tokens for the title)",
                self.titles_cut,
                self.title_budget,
                self.titles_dropped,
                self.window,
                self.stride,
                self.title_budget,
            )


def _word_start(encoding: Any, position: int) -> int:
    """The index of the first token of the word that token ``position`` belongs to."""
    words = encoding.word_ids
    word = words[position]
    while position > 0 and word is not None and words[position - 1] == word:
        position -= 1
    return position


# ---------------------------------------------------------------------------------------------- encoding


def encode_segments(
    encoder: Any,
    corpus: Any,
    window: int,
    stride: int,
    batch_size: int = 64,
    shard: tuple[int, int] | None = None,
    show_progress_bar: bool = True,
    chunk_size: int = 1024,
    skip_empty: bool = False,
) -> tuple[np.ndarray, SegmentIds]:
    """Encode every document of ``corpus`` as overlapping segments: ``(embeddings [segments, dim], SegmentIds)``.

    ``corpus`` is a path (`msmarco-docs.tsv`, an id/title/text TSV or JSONL) or a `datasets.Dataset` (id, text,
    optional title). Documents are read ``chunk_size`` at a time; each chunk is segmented, encoded with
    ``max_length=window`` and dropped. ``shard=(i, n)`` encodes the documents of slice i of n.
    """
    from .encode import _check_texts, check_docids, iter_chunks, load_corpus, shard_bounds

    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size ({batch_size}) and chunk_size ({chunk_size}) must be >= 1")
    prefix = prefix_token_count(encoder)
    check_window(window, stride, prefix)
    max_positions = encoder_max_positions(encoder)
    if max_positions is not None and window > max_positions:
        raise ValueError(
            f"segment window {window} tokens, but the model has only {max_positions} position embeddings. "
            f"Fix: a window of at most {max_positions} tokens."
        )
    segmenter = Segmenter(encoder_tokenizer(encoder), window, stride, prefix)
    dataset, source = load_corpus(corpus, skip_empty=skip_empty)
    docids = [str(docid) for docid in dataset["id"]]
    check_docids(docids, source)
    start, end = shard_bounds(len(docids), shard)
    parts: list[np.ndarray] = []
    ids: list[str] = []
    position = start
    description = "encoding segments" if shard is None else f"encoding segments, shard {shard[0]}/{shard[1]}"
    progress = tqdm(total=end - start, unit="doc", desc=description, disable=not show_progress_bar)
    with progress:
        for bodies, titles in iter_chunks(dataset, start, end, chunk_size):
            chunk_ids = docids[position : position + len(bodies)]
            _check_texts(bodies, chunk_ids, source)
            texts, segment_titles = [], []
            for docid, segments in zip(chunk_ids, segmenter.split(titles, bodies)):
                for number, (title, text) in enumerate(segments):
                    ids.append(segment_id(docid, number))
                    segment_titles.append(title)
                    texts.append(text)
            vectors = np.asarray(
                encoder.encode_passages(
                    texts,
                    titles=segment_titles if titles is not None else None,
                    batch_size=batch_size,
                    max_length=window,
                    show_progress_bar=False,
                ),
                dtype=np.float32,
            )
            if vectors.shape[0] != len(texts):
                raise RuntimeError(f"the encoder returned {vectors.shape[0]} vectors for {len(texts)} segments")
            parts.append(vectors)
            position += len(bodies)
            progress.update(len(bodies))
            progress.set_postfix(segments=len(ids))
    segmenter.log()
    if parts:
        embeddings = np.concatenate(parts) if len(parts) > 1 else parts[0]
    else:
        from .encode import _probe_dimension

        embeddings = np.empty((0, _probe_dimension(encoder, batch_size)), dtype=np.float32)
    return embeddings, SegmentIds(ids, segmenter.metadata)


# ---------------------------------------------------------------------------------------------- search


@dataclass
class SegmentTable:
    """Per faiss id: the document number and the segment number; the documents' ids and their string ranks."""

    document_of: np.ndarray
    segment_of: np.ndarray
    docids: np.ndarray
    docid_ranks: np.ndarray


def segment_table(index: Any) -> SegmentTable:
    """Parse the index's segment ids once (cached on the index object)."""
    cached = index.__dict__.get("_segment_table")
    if cached is not None:
        return cached
    numbers: dict[str, int] = {}
    document_of = np.empty(index.count, dtype=np.int64)
    segment_of = np.empty(index.count, dtype=np.int64)
    for row, identifier in enumerate(index.docids):
        docid, number = parse_segment_id(identifier)
        document_of[row] = numbers.setdefault(docid, len(numbers))
        segment_of[row] = number
    docids = np.array(list(numbers), dtype=object)
    order = np.argsort(docids.astype(str), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    table = SegmentTable(document_of, segment_of, docids, ranks)
    index.__dict__["_segment_table"] = table
    return table


def _aggregate_row(scores, ids, table: SegmentTable, k: int, aggregate: str):
    """Best score per document from one query's segment ranking; ``(doc numbers, scores, complete)``, where
    ``complete`` says the top k cannot change with a deeper read."""
    valid = ids >= 0
    scores, ids = scores[valid], ids[valid]
    documents = table.document_of[ids]
    if aggregate == "first":
        keep = table.segment_of[ids] == 0
        documents, scores_kept = documents[keep], scores[keep]
    else:
        scores_kept = scores
    found, first = np.unique(documents, return_index=True)  # first occurrence = best segment (scores sorted)
    best = scores_kept[first]
    order = np.lexsort((table.docid_ranks[found], -best.astype(np.float64)))[:k]
    found, best = found[order], best[order]
    # Complete when k documents are found and the k-th is strictly above the last segment read (a document
    # not read yet scores at most that last score, and a tie would need the docid order).
    complete = len(found) >= k and len(scores) > 0 and best[-1] > scores[-1]
    return found, best, complete


def search_segmented(
    index: Any,
    query_embeddings: np.ndarray,
    qids: Sequence[str],
    k: int = 1000,
    aggregate: str = "max",
    batch_size: int = 1024,
) -> Any:
    """The top ``k`` distinct documents per query from a segmented index (see the module docstring).

    Returns a `SearchRun` ``{qid: {docid: score}}`` ranked by score descending, docid ascending.
    """
    from .search import SearchRun, search_arrays

    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate={aggregate!r} is not one of {AGGREGATES}")
    if not is_segmented(index):
        raise ValueError(
            f"aggregate={aggregate!r} needs an index of document segments (encoded with a segment window), but "
            f"this index (model {index.model_name!r}) holds one vector per passage. Fix: search it without "
            "--aggregate, or encode the corpus with --segment-window / --segment-stride."
        )
    qids = [str(qid) for qid in qids]
    queries = np.ascontiguousarray(np.asarray(query_embeddings), dtype=np.float32)
    if queries.ndim != 2 or len(queries) != len(qids):
        raise ValueError(f"{len(qids)} qids for query embeddings of shape {queries.shape}. Fix: one qid per row.")
    if len(set(qids)) != len(qids):
        raise ValueError("duplicate query ids. Fix: give each query a unique id.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    table = segment_table(index)
    total = index.count
    k = min(k, len(table.docids))
    segments_per_document = max(1, math.ceil(total / max(1, len(table.docids))))
    start_depth = min(total, max(k * segments_per_document * 2, k + 1))
    out_scores = np.full((len(qids), k), -np.inf, dtype=np.float32)
    out_ids = np.full((len(qids), k), -1, dtype=np.int64)
    for batch_start in range(0, len(qids), batch_size):
        rows = np.arange(batch_start, min(batch_start + batch_size, len(qids)))
        depth = start_depth
        while len(rows):
            scores, ids = search_arrays(index, queries[rows], k=depth)
            pending = []
            for row, row_scores, row_ids in zip(rows, scores, ids):
                found, best, complete = _aggregate_row(row_scores, row_ids, table, k, aggregate)
                if complete or depth >= total:
                    out_ids[row, : len(found)], out_scores[row, : len(found)] = found, best
                else:
                    pending.append(row)
            rows, depth = np.array(pending, dtype=np.int64), min(total, depth * 2)
    return SearchRun(qids, out_scores, out_ids, table.docids)
