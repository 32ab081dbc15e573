"""Retrieval metrics during training: evaluate_student against a numpy + pytrec_eval pipeline, and the callback."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval
from conftest import make_examples
from datasets import Dataset

from tct_hf import TCTModel
from tct_hf.data import TCTCollator
from tct_hf.training import DevSet, RetrievalEvaluationCallback, TCTTrainer, TCTTrainingArguments, evaluate_student


@pytest.fixture()
def dev_set() -> DevSet:
    examples = make_examples(12, num_negatives=2, seed=4)
    docids, passages = [], []
    for i, example in enumerate(examples):
        docids += [f"p{i}", f"n{i}a", f"n{i}b"]
        passages += [example["positive"], *example["negatives"]]
    queries = {f"q{i}": example["query"] for i, example in enumerate(examples[:6])}
    qrels = {f"q{i}": {f"p{i}": 2, f"n{i}a": 0} for i in range(6)}
    return DevSet(docids, passages, queries, qrels, metrics=("nDCG@10", "R@5", "RR@10"))


def numpy_reference(model, dev: DevSet) -> dict[str, float]:
    """The metrics from a full numpy score matrix: nDCG@10 and R@5 by pytrec_eval over every passage, RR@10 by hand
    (1 / rank of the first relevant passage in the top 10, ties by docid as the package ranks)."""
    passages = model.encode_passages(list(dev.passages))
    qids = list(dev.queries)
    queries = model.encode_queries([dev.queries[q] for q in qids])
    scores = queries @ passages.T
    run = {qid: {dev.docids[j]: float(scores[i, j]) for j in range(len(dev.docids))} for i, qid in enumerate(qids)}
    per_query = pytrec_eval.RelevanceEvaluator(dev.qrels, {"ndcg_cut", "recall"}).evaluate(run)
    reciprocal_ranks = []
    for qid in qids:
        ranking = sorted(run[qid], key=lambda docid: (-run[qid][docid], docid))[:10]
        relevant = [rank for rank, docid in enumerate(ranking, start=1) if dev.qrels[qid].get(docid, 0) > 0]
        reciprocal_ranks.append(1 / relevant[0] if relevant else 0.0)
    return {
        "nDCG@10": float(np.mean([values["ndcg_cut_10"] for values in per_query.values()])),
        "R@5": float(np.mean([values["recall_5"] for values in per_query.values()])),
        "RR@10": float(np.mean(reciprocal_ranks)),
    }


def test_evaluate_student_equals_numpy_and_pytrec_eval(tiny_dirs, dev_set):
    student = TCTModel.from_pretrained(tiny_dirs[0])
    metrics = evaluate_student(student, dev_set)  # ranks the top 10 only (the deepest cutoff of the metrics)
    reference = numpy_reference(student, dev_set)
    assert set(metrics) == set(reference)
    for name, value in reference.items():
        assert metrics[name] == pytest.approx(value, abs=1e-6), name
    assert 0 < reference["R@5"] < 1  # the check can fail: a random student ranks some positives below 5th


def test_default_metrics_and_search_depth():
    from tct_hf.evaluation import DEFAULT_METRICS
    from tct_hf.training.retrieval_eval import search_depth

    dev = DevSet(["d1"], ["text"], {"q": "query"}, {"q": {"d1": 1}})
    assert tuple(dev.metrics) == DEFAULT_METRICS
    assert search_depth(["RR@10", "R@1000", "nDCG@10"], 50_000) == 1000
    assert search_depth(["RR@10", "R@1000"], 36) == 36
    assert search_depth(["nDCG@10", "AP"], 500) == 500  # AP has no cutoff: the whole ranking


def test_callback_adds_retrieval_metrics_to_evaluation(tiny_dirs, dev_set, tmp_path):
    student = TCTModel.from_pretrained(tiny_dirs[0])
    args = TCTTrainingArguments(
        output_dir=str(tmp_path), kd_mode="none", per_device_train_batch_size=4, max_steps=1, use_cpu=True,
        report_to="none", save_strategy="no", disable_tqdm=True, query_max_length=8, passage_max_length=16,
    )  # fmt: skip
    examples = Dataset.from_list(make_examples(8))
    trainer = TCTTrainer(
        model=student, args=args, train_dataset=examples, eval_dataset=examples,
        data_collator=TCTCollator(student, None, query_max_length=8, passage_max_length=16),
        callbacks=[RetrievalEvaluationCallback(dev_set)],
    )  # fmt: skip
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics
    assert metrics["eval_nDCG@10"] == pytest.approx(evaluate_student(student, dev_set)["nDCG@10"], abs=1e-9)
