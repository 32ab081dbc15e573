"""Retrieval parity (issue 4): our encode -> index -> search -> evaluate pipeline vs a plain numpy brute force.

all-MiniLM-L6-v2 as a sentence-transformers model on real collections (``/work/shared/data``, i.e. ``../shared/data``
next to the repository): Cranfield (1,400 documents, 225 queries) and the MS MARCO DL19 relevant subset (4,103
passages, 43 queries).

- ``tct_hf``: ``load_encoder`` (detected as sentence-transformers) -> ``encode_corpus`` (``skip_empty``: Cranfield's
  two empty documents are left out, as documented) -> ``build_index`` (flat inner product) -> ``search`` (k=1000) ->
  ``evaluate_run`` (ir-measures, pytrec_eval backend);
- ``numpy``: written here, sharing nothing with the package: TSV files split by hand, ``SentenceTransformer.encode``
  on every document and query, ``queries @ docs.T``, ``argsort`` top 1000, ``pytrec_eval.RelevanceEvaluator`` with
  ``ndcg_cut.10`` and ``recall.1000`` (trec_eval semantics: linear gain, mean over the judged queries).

nDCG@10 must agree to 1e-3 (and the data README's reference values: Cranfield nDCG@10 0.3953, R@1000 0.9899; DL19
subset nDCG@10 0.7987).

Usage:
    python benchmarks/retrieval_parity.py            # both collections
    python benchmarks/retrieval_parity.py --quick    # Cranfield only
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import add_common_arguments, device_description, emit_json, log, setup_torch

REFERENCE = {
    "cranfield": {"nDCG@10": 0.3953, "R@1000": 0.9899},
    "msmarco_dl19_relevant_subset": {"nDCG@10": 0.7987},
}
TOLERANCE = 1e-3


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, repeats=1, warmup=0)
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"), help="../shared/data"
    )
    parser.add_argument("--collections", nargs="*", default=None, help="Default: both (quick: cranfield).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--model", default=None, help="Sentence-transformers model dir (default all-MiniLM-L6-v2).")
    args = parser.parse_args(argv)
    if args.collections is None:
        args.collections = ["cranfield"] if args.quick else list(REFERENCE)
    return args


def read_tsv(path: Path) -> tuple[list[str], list[str]]:
    """``id<TAB>text`` lines, split by hand (an empty text is kept as '')."""
    ids, texts = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line:
                continue
            identifier, _, text = line.partition("\t")
            ids.append(identifier)
            texts.append(text)
    return ids, texts


def read_trec_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                qid, _, docid, rel = line.split()
                qrels.setdefault(qid, {})[docid] = int(rel)
    return qrels


def numpy_pipeline(model, directory: Path, args: argparse.Namespace) -> dict[str, float]:
    import pytrec_eval

    docids, documents = read_tsv(directory / "collection.tsv")
    qids, queries = read_tsv(directory / "queries.tsv")
    qrels = read_trec_qrels(directory / "qrels.txt")
    doc_vectors = model.encode(documents, batch_size=args.batch_size, convert_to_numpy=True)
    query_vectors = model.encode(queries, batch_size=args.batch_size, convert_to_numpy=True)
    scores = query_vectors.astype(np.float64) @ doc_vectors.astype(np.float64).T
    k = min(args.k, len(docids))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    run = {qid: {docids[j]: float(scores[i, j]) for j in top[i]} for i, qid in enumerate(qids) if qid in qrels}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", f"recall.{args.k}"})
    per_query = evaluator.evaluate(run)
    judged = [qid for qid in qrels if any(rel > 0 for rel in qrels[qid].values())]
    values = {
        "nDCG@10": float(np.mean([per_query.get(qid, {}).get("ndcg_cut_10", 0.0) for qid in judged])),
        f"R@{args.k}": float(np.mean([per_query.get(qid, {}).get(f"recall_{args.k}", 0.0) for qid in judged])),
    }
    return {**values, "documents": len(docids), "queries": len(judged)}


def tct_hf_pipeline(model_dir: str, directory: Path, args: argparse.Namespace) -> dict[str, float]:
    from tct_hf.retrieval import (
        build_index,
        encode_corpus,
        evaluate_run,
        load_encoder,
        read_qrels,
        read_queries,
        search,
    )

    encoder = load_encoder(model_dir, device=args.device_resolved)
    embeddings, docids = encode_corpus(
        encoder, directory / "collection.tsv", batch_size=args.batch_size, show_progress_bar=False, skip_empty=True
    )
    index = build_index(embeddings, docids)
    queries = read_queries(directory / "queries.tsv")
    query_vectors = encoder.encode_queries(list(queries.values()), batch_size=args.batch_size)
    run = search(index, query_vectors, list(queries), k=args.k)
    result = evaluate_run(run, read_qrels(directory / "qrels.txt"), metrics=("nDCG@10", f"R@{args.k}", "RR@10"))
    return {**result.metrics, "documents": index.count, "queries": result.num_queries}


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    device = setup_torch(args)
    args.device_resolved = str(device)
    from sentence_transformers import SentenceTransformer

    if args.model is None:
        from tct_hf.backbones import default_backbone

        args.model = default_backbone(instead="pass --model")
    model = SentenceTransformer(args.model, device=str(device))
    collections = {}
    for name in args.collections:
        directory = Path(args.data) / name
        if not (directory / "collection.tsv").is_file():
            raise SystemExit(f"{directory}/collection.tsv not found. Fix: --data pointing at ../shared/data.")
        log(f"{name}: numpy brute force")
        start = time.perf_counter()
        reference = numpy_pipeline(model, directory, args)
        numpy_seconds = time.perf_counter() - start
        log(f"{name}: tct_hf pipeline")
        start = time.perf_counter()
        ours = tct_hf_pipeline(args.model, directory, args)
        ours_seconds = time.perf_counter() - start
        difference = {metric: ours[metric] - reference[metric] for metric in ("nDCG@10", f"R@{args.k}")}
        collections[name] = {
            "tct_hf": ours,
            "numpy_pytrec_eval": reference,
            "difference": difference,
            "data_readme_reference": REFERENCE.get(name),
            "agree_to_1e-3": abs(difference["nDCG@10"]) <= TOLERANCE,
            "seconds": {"tct_hf": ours_seconds, "numpy": numpy_seconds},
        }
        log(f"{name}: nDCG@10 ours {ours['nDCG@10']:.4f} numpy {reference['nDCG@10']:.4f}")
    emit_json(
        {
            "benchmark": "retrieval_parity",
            "command": "python benchmarks/retrieval_parity.py" + (" --quick" if args.quick else ""),
            "machine": device_description(device),
            "model": "all-MiniLM-L6-v2 (sentence-transformers)",
            "collections": collections,
            "all_agree": all(entry["agree_to_1e-3"] for entry in collections.values()),
        }
    )


if __name__ == "__main__":
    main()
