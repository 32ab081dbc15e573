"""Search speed: `tct_hf.retrieval.search` vs raw faiss on the same index and queries; flat vs fp16 vs HNSW.

Part 1 (issue 4: overhead < 10%): one flat inner-product index over ``--corpus`` random vectors, ``--queries``
queries, top ``--k``. Variants, timed interleaved (A B C, C B A, ...), medians:

- ``raw_faiss``: ``index.faiss_index.search(queries, k)`` plus the minimal id mapping ``docid_array[ids]``;
- ``search``: our ``search(index, queries, qids, k)`` (validation, deterministic ties, a lazy ``SearchRun``);
- ``search_to_dict``: ``search(...).to_dict()``, every query's ``{docid: score}`` built (what a caller pays when
  it reads the whole run as Python dicts; writing a TREC file costs that and more anyway).

``overhead = median(search) / median(raw_faiss) - 1``.

Part 2: the same corpus in a flat, an fp16 (``IndexScalarQuantizer`` QT_fp16) and an HNSW index: queries/s of
``search`` at k=10 (ratio to flat), build seconds, and recall@10 against exact numpy brute force. Random Gaussian
vectors are HNSW's hard case (no cluster structure), so its recall here is a lower bound.

Usage:
    python benchmarks/search.py                 # 50,000 x 128, 500 queries, k=1000
    python benchmarks/search.py --quick         # 20,000 x 64, 200 queries, k=100
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import (
    add_common_arguments,
    device_description,
    emit_json,
    interleaved_timings,
    log,
    resolve_device,
    summarize,
)

from tct_hf.retrieval.index import build_index
from tct_hf.retrieval.search import search


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, repeats=9, warmup=1)
    parser.add_argument("--corpus", type=int, default=None, help="Corpus vectors (default 50000, quick 20000).")
    parser.add_argument("--dim", type=int, default=None, help="Vector size (default 128, quick 64).")
    parser.add_argument("--queries", type=int, default=None, help="Queries (default 500, quick 200).")
    parser.add_argument("--k", type=int, default=None, help="Results per query (default 1000, quick 100).")
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW graph degree.")
    parser.add_argument("--hnsw-ef-search", type=int, default=256, help="HNSW search breadth.")
    args = parser.parse_args(argv)
    defaults = (20_000, 64, 200, 100) if args.quick else (50_000, 128, 500, 1000)
    for name, default in zip(("corpus", "dim", "queries", "k"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.device not in ("auto", "cpu"):
        raise SystemExit("--device: this benchmark times the CPU faiss index (faiss-cpu); use --device cpu.")
    return args


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found_i ∩ exact_i| / |exact_i| (rows of ids)."""
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(found, exact)]))


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    rng = np.random.default_rng(args.seed)
    corpus = rng.standard_normal((args.corpus, args.dim)).astype(np.float32)
    queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    docids = [f"doc{i}" for i in rng.permutation(args.corpus)]
    qids = [f"q{i}" for i in range(args.queries)]

    # ---- Part 1: our search vs raw faiss, same flat index and queries.
    log(f"flat index over {args.corpus} x {args.dim}, {args.queries} queries, k={args.k}")
    flat = build_index(corpus, docids, kind="flat")
    docid_array = flat.docid_array

    def raw_faiss():
        scores, ids = flat.faiss_index.search(queries, args.k)
        return scores, docid_array[ids]

    variants = {
        "raw_faiss": raw_faiss,
        "search": lambda: search(flat, queries, qids, k=args.k),
        "search_to_dict": lambda: search(flat, queries, qids, k=args.k).to_dict(),
    }
    times = interleaved_timings(variants, repeats=args.repeats, warmup=args.warmup)
    medians = {name: summarize(values) for name, values in times.items()}
    raw = medians["raw_faiss"]["median_s"]

    # Same results: our top-k ids equal faiss's wherever no tie crosses the cut (float data: no ties).
    raw_scores, raw_ids = flat.faiss_index.search(queries, args.k)
    ours = search(flat, queries, qids, k=args.k)
    ours_scores, ours_ids = ours.arrays
    same_ids = bool(np.array_equal(ours_ids, raw_ids))
    max_score_diff = float(np.abs(ours_scores - raw_scores).max())

    overhead = {
        "search_over_raw_faiss": medians["search"]["median_s"] / raw - 1.0,
        "search_to_dict_over_raw_faiss": medians["search_to_dict"]["median_s"] / raw - 1.0,
    }
    log(f"search overhead over raw faiss: {overhead['search_over_raw_faiss']:+.1%}")

    # ---- Part 2: flat vs fp16 vs HNSW at k=10.
    exact_ids = np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :10]
    indexes, build_seconds = {}, {}
    for kind in ("flat", "fp16", "hnsw"):
        start = time.perf_counter()
        indexes[kind] = build_index(corpus, docids, kind=kind, hnsw_m=args.hnsw_m, hnsw_ef_search=args.hnsw_ef_search)
        build_seconds[kind] = time.perf_counter() - start
        log(f"built {kind} in {build_seconds[kind]:.1f} s")
    kind_times = interleaved_timings(
        {kind: (lambda kind=kind: search(indexes[kind], queries, qids, k=10)) for kind in indexes},
        repeats=args.repeats,
        warmup=args.warmup,
    )
    kinds = {}
    for kind, values in kind_times.items():
        _, ids = search(indexes[kind], queries, qids, k=10).arrays
        median = summarize(values)["median_s"]
        kinds[kind] = {
            "queries_per_s": args.queries / median,
            "speed_vs_flat": summarize(kind_times["flat"])["median_s"] / median,
            "recall_at_10_vs_exact": recall_at(ids, exact_ids),
            "build_s": build_seconds[kind],
            "timing": summarize(values),
        }

    emit_json(
        {
            "benchmark": "search",
            "command": "python benchmarks/search.py" + (" --quick" if args.quick else ""),
            "machine": device_description(resolve_device("cpu")),
            "sizes": {"corpus": args.corpus, "dim": args.dim, "queries": args.queries, "k": args.k},
            "search_vs_raw_faiss": {
                "queries_per_s": {name: args.queries / value["median_s"] for name, value in medians.items()},
                "overhead": overhead,
                "target": "search_over_raw_faiss < 0.10",
                "meets_target": overhead["search_over_raw_faiss"] < 0.10,
                "same_ids_as_faiss": same_ids,
                "max_abs_score_diff": max_score_diff,
                "timing": medians,
            },
            "index_kinds_k10": kinds,
        }
    )


if __name__ == "__main__":
    main()
