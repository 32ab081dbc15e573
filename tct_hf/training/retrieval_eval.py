"""Retrieval evaluation of the student during and after training: encode a small dev corpus, exact search, metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import TrainerCallback

from ..evaluation.metrics import DEFAULT_METRICS, evaluate_run
from ..retrieval.index import build_index
from ..retrieval.search import search

logger = logging.getLogger(__name__)


@dataclass
class DevSet:
    """A small judged collection: passages, queries and graded qrels (`{qid: {docid: rel}}`), and the metrics to
    report (ir-measures names; default `tct_hf.evaluation.DEFAULT_METRICS`)."""

    docids: Sequence[str]
    passages: Sequence[str]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    metrics: Sequence[str] = field(default_factory=lambda: DEFAULT_METRICS)

    def __post_init__(self):
        if len(self.docids) != len(self.passages):
            raise ValueError(f"{len(self.docids)} docids for {len(self.passages)} passages")
        judged = [qid for qid in self.queries if qid in self.qrels]
        if not judged:
            raise ValueError("no dev query has judgments: check that query ids match the qrels")


def search_depth(metrics: Sequence[str], num_passages: int) -> int:
    """How deep to rank so that every metric is exact: the largest cutoff among ``metrics`` (``R@100`` → 100), or
    every passage when a metric has no cutoff; never more than ``num_passages``."""
    import ir_measures

    cutoffs = [ir_measures.parse_measure(name)["cutoff"] for name in metrics]
    if not all(isinstance(cutoff, int) for cutoff in cutoffs):  # e.g. "nDCG" or "AP": the whole ranking counts
        return num_passages
    return min(max(cutoffs), num_passages)


def evaluate_student(
    model, dev: DevSet, batch_size: int = 64, k: int | None = None, autocast_dtype: torch.dtype | None = None
) -> dict[str, float]:
    """Encode `dev.passages` and `dev.queries` with the student, search exactly (inner product), return the metrics.

    `k` = how many passages each query ranks (default: `search_depth(dev.metrics)`, which makes every metric exact).
    `autocast_dtype` (e.g. `torch.bfloat16`) runs the encoder under autocast; vectors and search stay float32. A
    sentence-transformers model is evaluated through `SentenceTransformerEncoder` (its own prompts and pooling) and
    ranked by its own similarity (cosine: unit vectors; dot: as encoded)."""
    module = model
    if not hasattr(model, "encode_passages"):
        from ..retrieval.encoders import SentenceTransformerEncoder

        model = SentenceTransformerEncoder(module)
    was_training = module.training
    module.eval()
    try:
        autocast = (
            torch.autocast(module.device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            passages = model.encode_passages(list(dev.passages), batch_size=batch_size, autocast_dtype=autocast_dtype)
            qids = list(dev.queries)
            queries = [dev.queries[qid] for qid in qids]
            queries = model.encode_queries(queries, batch_size=batch_size, autocast_dtype=autocast_dtype)
    finally:
        module.train(was_training)
    if getattr(module, "similarity_fn_name", None) == "cosine":  # inner-product search ranks by cosine on unit vectors
        passages, queries = _unit_rows(passages), _unit_rows(queries)
    index = build_index(passages, list(dev.docids), kind="flat")
    depth = search_depth(dev.metrics, len(dev.docids)) if k is None else min(k, len(dev.docids))
    run = search(index, queries, qids, k=depth)
    return dict(evaluate_run(run, dev.qrels, metrics=dev.metrics).metrics)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def evaluate_teacher(
    teacher, dev: DevSet, batch_size: int = 64, k: int | None = None, autocast_dtype: torch.dtype | None = None
) -> dict[str, float]:
    """Exhaustive MaxSim of every dev query against every dev passage (the teacher's ceiling), then the metrics.

    `k` as in `evaluate_student`. `autocast_dtype` (e.g. `torch.bfloat16`) runs the encoder under autocast; MaxSim
    is accumulated in float32."""
    qids = list(dev.queries)
    context = (
        torch.autocast(teacher.device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with context:
        scores = teacher.score_matrix([dev.queries[qid] for qid in qids], list(dev.passages), batch_size=batch_size)
    k = search_depth(dev.metrics, len(dev.docids)) if k is None else min(k, len(dev.docids))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    docids = np.asarray(dev.docids, dtype=object)
    run = {
        qid: dict(zip(docids[row].tolist(), scores[i, row].astype(float).tolist()))
        for i, (qid, row) in enumerate(zip(qids, top))
    }
    return dict(evaluate_run(run, dev.qrels, metrics=dev.metrics).metrics)


class RetrievalEvaluationCallback(TrainerCallback):
    """At every evaluation, add the student's retrieval metrics on `dev` to the logs as `eval_<metric>`.

    Runs on the main process only (other processes skip it) and needs no gradient.
    """

    def __init__(
        self, dev: DevSet, batch_size: int = 64, k: int | None = None, autocast_dtype: torch.dtype | None = None
    ):
        self.dev, self.batch_size, self.k, self.autocast_dtype = dev, batch_size, k, autocast_dtype

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        if not state.is_world_process_zero or model is None:
            return
        unwrapped = getattr(model, "module", model)
        results = evaluate_student(
            unwrapped, self.dev, batch_size=self.batch_size, k=self.k, autocast_dtype=self.autocast_dtype
        )
        logger.info("retrieval metrics at step %d: %s", state.global_step, results)
        if metrics is not None:
            metrics.update({f"eval_{name}": value for name, value in results.items()})
        state.log_history.append({**{f"eval_{n}": v for n, v in results.items()}, "step": state.global_step})
