"""Training data from command-line arguments: the `DataArguments` dataclass of the training scripts and
`load_training_data`, which turns it into training examples, held-out examples and a `DevSet`.

Sources, first match wins: text triples (`--train_triples`, streamed), a `save_to_disk` folder of mined negatives or
a Hub dataset (`--train_dataset`), or qrels-driven examples (`--collection --train_queries --train_qrels`: each
judged positive with negatives from BM25 or `--train_negatives_run`; judged-relevant passages never negatives).
Documents (`--documents`, or a msmarco-docs.tsv) are read as FirstP passages. With no source, the embedded MS MARCO
sample (`tct_hf.data.sample_paths`) is used, its held-out queries as the dev set.

Example:
    >>> data = load_training_data(DataArguments(), seed=42, num_negatives=1)  # doctest: +SKIP
    >>> data.uses_sample, len(data.train)                                     # doctest: +SKIP
    (True, 46)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..data import (
    build_training_examples,
    load_hub_dataset,
    load_mined_negatives,
    load_text_triples,
    sample_paths,
)
from ..data.documents import firstp_dataset, is_msmarco_documents
from ..data.msmarco import load_collection, qrels_to_dict, read_queries
from ..data.run_files import read_run
from ..evaluation.metrics import DEFAULT_METRICS, DOCUMENT_METRICS
from ..retrieval.bm25 import bm25_search
from .retrieval_eval import DevSet


@dataclass
class DataArguments:
    train_triples: str | None = field(
        default=None, metadata={"help": "MS MARCO text triples TSV (query, positive, negative), streamed."}
    )
    train_dataset: str | None = field(
        default=None,
        metadata={"help": "A save_to_disk dir (e.g. `tct-hf mine-negatives` output) or a Hub dataset name."},
    )
    train_dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config, e.g. triplet-hard."})
    train_split: str = field(default="train", metadata={"help": "Hub dataset split."})
    collection: str | None = field(default=None, metadata={"help": "collection.tsv for qrels-driven training pairs."})
    train_queries: str | None = field(default=None, metadata={"help": "queries.train.tsv (with --collection)."})
    train_qrels: str | None = field(default=None, metadata={"help": "qrels.train (with --collection)."})
    min_relevance: int = field(default=2, metadata={"help": "Relevance grade a positive needs (qrels-driven pairs)."})
    negatives_depth: int = field(default=1000, metadata={"help": "BM25 depth the negatives are sampled from."})
    train_negatives_run: str | None = field(
        default=None,
        metadata={
            "help": "A TREC run whose top --negatives_depth give the negatives (e.g. msmarco-doctrain-top100) "
            "instead of BM25 over --collection."
        },
    )
    documents: bool = field(
        default=False,
        metadata={
            "help": "Read --collection / --dev_collection as documents (id/title/text TSV or JSONL; automatic for "
            "msmarco-docs.tsv): FirstP text = title + body, cut to --passage_max_length; dev metrics RR@100 first."
        },
    )
    max_train_examples: int | None = field(default=None, metadata={"help": "Cap on training examples."})
    dev_collection: str | None = field(default=None, metadata={"help": "Held-out corpus for retrieval metrics."})
    dev_queries: str | None = field(default=None, metadata={"help": "Held-out queries."})
    dev_qrels: str | None = field(default=None, metadata={"help": "Held-out qrels."})
    dev_metrics: list[str] = field(
        default_factory=lambda: list(DEFAULT_METRICS),
        metadata={"help": "Metrics on the held-out queries (ir-measures names; documents use DOCUMENT_METRICS)."},
    )
    evaluate_teacher: bool = field(
        default=True, metadata={"help": "Also report the teacher's exhaustive MaxSim metrics."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into a non-empty --output_dir (files of the same names are replaced, no other file is "
            "deleted). Without it (or --resume_from_checkpoint) a non-empty --output_dir is refused."
        },
    )


class TrainingData(NamedTuple):
    """What `load_training_data` returns (a tuple: ``train, held_out, dev, uses_sample = ...`` works)."""

    train: Any
    held_out: Any
    dev: DevSet | None
    uses_sample: bool


def load_training_dataset(data: DataArguments):
    """Text triples (streamed), a `save_to_disk` folder of mined negatives, or a Hub dataset, as training examples."""
    if data.train_triples:
        return load_text_triples(data.train_triples, streaming=True)
    if Path(data.train_dataset).is_dir() and (Path(data.train_dataset) / "dataset_info.json").is_file():
        return load_mined_negatives(data.train_dataset)
    return load_hub_dataset(data.train_dataset, data.train_dataset_config, data.train_split, streaming=True)


def qrels_examples(
    collection, queries_path, qrels_path, data: DataArguments, seed: int, negatives: int, on_short="error"
):
    """(query, judged positive, BM25 negatives) examples; judged-relevant passages never become negatives."""
    qrels = qrels_to_dict(qrels_path)
    query_map = read_queries(queries_path)
    qids = [qid for qid in query_map if qid in qrels]
    if not qids:
        raise ValueError(f"no query of {queries_path} is judged in {qrels_path}: check that the ids match")
    if data.train_negatives_run and qrels_path == data.train_qrels:
        negatives_run = read_run(data.train_negatives_run)
    else:
        negatives_run = bm25_search(
            collection["id"], collection["text"], qids, [query_map[q] for q in qids], k=data.negatives_depth
        )
    return build_training_examples(
        {qid: query_map[qid] for qid in qids},
        qrels,
        collection,
        negatives_run,
        num_negatives=max(negatives, 1),
        min_relevance=data.min_relevance,
        depth=data.negatives_depth,
        seed=seed,
        on_short=on_short,
    )


def read_collection(path: str, data: DataArguments, text_tokens: int):
    """A passage collection, or documents as FirstP passages (title + body cut to the training length)."""
    if data.documents or is_msmarco_documents(path):
        data.documents = True
        return firstp_dataset(path, max_tokens=text_tokens)
    return load_collection(path)


def load_training_data(
    data: DataArguments,
    seed: int,
    num_negatives: int,
    held_out_examples: bool = False,
    text_tokens: int = 512,
    on_short: str = "error",
) -> TrainingData:
    """Training examples, held-out examples for the eval loss (or None), the held-out `DevSet` for retrieval metrics
    (or None), and whether the embedded sample is used, as a `TrainingData` (see the module docstring). Paths the
    sample fills in are written into ``data``. ``text_tokens`` cuts documents read as FirstP passages. ``on_short``
    ("error" or "skip", as `build_training_examples`) decides what a qrels-driven training query with too few
    negative candidates in the top ``--negatives_depth`` does."""
    uses_sample = not any([data.train_triples, data.train_dataset, data.collection])
    if uses_sample:
        paths = sample_paths()
        data.collection = str(paths["collection"])
        data.train_queries, data.train_qrels = str(paths["queries_train"]), str(paths["qrels_train"])
        data.dev_collection = data.dev_collection or str(paths["collection"])
        data.dev_queries = data.dev_queries or str(paths["queries_dev"])
        data.dev_qrels = data.dev_qrels or str(paths["qrels_dev"])
    if data.train_triples or data.train_dataset:
        train = load_training_dataset(data)
    else:
        if not (data.collection and data.train_queries and data.train_qrels):
            raise ValueError("qrels-driven training needs --collection, --train_queries and --train_qrels")
        collection = read_collection(data.collection, data, text_tokens)
        train = qrels_examples(
            collection, data.train_queries, data.train_qrels, data, seed, num_negatives, on_short=on_short
        )
    if data.max_train_examples is not None and hasattr(train, "select"):
        train = train.shuffle(seed=seed).select(range(min(data.max_train_examples, len(train))))
    dev, held_out = None, None
    if data.dev_collection and data.dev_queries and data.dev_qrels:
        dev_collection = read_collection(data.dev_collection, data, text_tokens)
        dev_queries = read_queries(data.dev_queries)
        metrics = {"metrics": DOCUMENT_METRICS} if data.documents else {"metrics": list(data.dev_metrics)}
        dev = DevSet(
            dev_collection["id"], dev_collection["text"], dev_queries, qrels_to_dict(data.dev_qrels), **metrics
        )
        if held_out_examples:  # for the eval loss; queries without unjudged BM25 candidates are skipped (logged)
            held_out = qrels_examples(
                dev_collection, data.dev_queries, data.dev_qrels, data, seed, num_negatives, on_short="skip"
            )
    return TrainingData(train, held_out, dev, uses_sample)
