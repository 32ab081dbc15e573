"""Retrieval evaluation of the student during and after training: encode a small dev corpus, exact search, metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import TrainerCallback

from ..evaluation.metrics import evaluate_run
from ..retrieval.index import build_index
from ..retrieval.search import search

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("nDCG@10", "RR@10", "R@100")


@dataclass
class DevSet:
    """A small judged collection: passages, queries and graded qrels (`{qid: {docid: rel}}`)."""

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


def evaluate_student(model, dev: DevSet, batch_size: int = 64, k: int = 100, dtype=None) -> dict[str, float]:
    """Encode `dev.passages` and `dev.queries` with the student, search exactly (inner product), return the metrics.

    `dtype` (e.g. `torch.bfloat16`) runs the encoder under autocast; vectors and search stay float32. A
    sentence-transformers model is evaluated through `SentenceTransformerEncoder` (its own prompts and pooling) and
    ranked by its own similarity (cosine: unit vectors; dot: as encoded)."""
    module = model
    if not hasattr(model, "encode_passages"):
        from ..retrieval.encoders import SentenceTransformerEncoder

        model = SentenceTransformerEncoder(module)
    was_training = module.training
    module.eval()
    try:
        with torch.autocast(module.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            passages = model.encode_passages(list(dev.passages), batch_size=batch_size, dtype=dtype)
            qids = list(dev.queries)
            queries = model.encode_queries([dev.queries[qid] for qid in qids], batch_size=batch_size, dtype=dtype)
    finally:
        module.train(was_training)
    if getattr(module, "similarity_fn_name", None) == "cosine":  # inner-product search ranks by cosine on unit vectors
        passages, queries = _unit_rows(passages), _unit_rows(queries)
    index = build_index(passages, list(dev.docids), kind="flat")
    run = search(index, queries, qids, k=min(k, len(dev.docids)))
    return dict(evaluate_run(run, dev.qrels, metrics=dev.metrics).metrics)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def evaluate_teacher(teacher, dev: DevSet, batch_size: int = 64, k: int = 100, dtype=None) -> dict[str, float]:
    """Exhaustive MaxSim of every dev query against every dev passage (the teacher's ceiling), then the metrics.

    `dtype` (e.g. `torch.bfloat16`) runs the encoder under autocast; MaxSim is accumulated in float32."""
    qids = list(dev.queries)
    context = torch.autocast(teacher.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with context:
        scores = teacher.score_matrix([dev.queries[qid] for qid in qids], list(dev.passages), batch_size=batch_size)
    k = min(k, len(dev.docids))
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

    def __init__(self, dev: DevSet, batch_size: int = 64, k: int = 100, dtype=None):
        self.dev, self.batch_size, self.k, self.dtype = dev, batch_size, k, dtype

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        if not state.is_world_process_zero or model is None:
            return
        unwrapped = getattr(model, "module", model)
        results = evaluate_student(unwrapped, self.dev, batch_size=self.batch_size, k=self.k, dtype=self.dtype)
        logger.info("retrieval metrics at step %d: %s", state.global_step, results)
        if metrics is not None:
            metrics.update({f"eval_{name}": value for name, value in results.items()})
        state.log_history.append({**{f"eval_{n}": v for n, v in results.items()}, "step": state.global_step})
