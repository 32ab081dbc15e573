"""Retrieval: corpus encoding (passages, or document segments for MaxP), faiss indexes, search, dense–sparse
fusion, BM25, hard-negative mining.

The `tct-hf` command line (`tct_hf.cli`) is a thin layer over these functions::

    from tct_hf.retrieval import load_encoder, encode_corpus, build_index, search, evaluate_run

    encoder = load_encoder("my-student")
    embeddings, docids = encode_corpus(encoder, "collection.tsv")
    index = build_index(embeddings, docids)
    run = search(index, encoder.encode_queries(["what is dense retrieval"]), ["q1"], k=10)

Names are imported on first use, so `import tct_hf.retrieval` stays cheap (no torch / faiss until needed).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_encoder": "tct_hf.retrieval.encoders",
    "detect_encoder_type": "tct_hf.retrieval.encoders",
    "SentenceTransformerEncoder": "tct_hf.retrieval.encoders",
    "encode_corpus": "tct_hf.retrieval.encode",
    "parse_shard": "tct_hf.retrieval.encode",
    "find_shard_directories": "tct_hf.retrieval.encode",
    "encode_index": "tct_hf.retrieval.encode_index",
    "merge_shards": "tct_hf.retrieval.encode_index",
    "DenseIndex": "tct_hf.retrieval.index",
    "build_index": "tct_hf.retrieval.index",
    "save_index": "tct_hf.retrieval.index",
    "load_index": "tct_hf.retrieval.index",
    "merge_index_shards": "tct_hf.retrieval.index",
    "search": "tct_hf.retrieval.search",
    "encode_segments": "tct_hf.retrieval.segments",
    "search_segmented": "tct_hf.retrieval.segments",
    "fuse": "tct_hf.retrieval.fuse",
    "bm25_search": "tct_hf.retrieval.bm25",
    "mine_hard_negatives": "tct_hf.retrieval.mining",
    "save_mined_negatives": "tct_hf.retrieval.mining",
    "read_run": "tct_hf.data.run_files",
    "write_run": "tct_hf.data.run_files",
    "read_qrels": "tct_hf.data.run_files",
    "read_queries": "tct_hf.data.msmarco",
    "evaluate_run": "tct_hf.evaluation.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tct_hf.retrieval' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
