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
    return DevSet(docids, passages, queries, qrels, metrics=("nDCG@10", "R@100"))


def numpy_pytrec_ndcg(model, dev: DevSet) -> float:
    passages = model.encode_passages(list(dev.passages))
    qids = list(dev.queries)
    queries = model.encode_queries([dev.queries[q] for q in qids])
    scores = queries @ passages.T
    run = {qid: {dev.docids[j]: float(scores[i, j]) for j in range(len(dev.docids))} for i, qid in enumerate(qids)}
    per_query = pytrec_eval.RelevanceEvaluator(dev.qrels, {"ndcg_cut"}).evaluate(run)
    return float(np.mean([values["ndcg_cut_10"] for values in per_query.values()]))


def test_evaluate_student_equals_numpy_and_pytrec_eval(tiny_dirs, dev_set):
    student = TCTModel.from_pretrained(tiny_dirs[0])
    metrics = evaluate_student(student, dev_set)
    assert set(metrics) == {"nDCG@10", "R@100"}
    assert metrics["nDCG@10"] == pytest.approx(numpy_pytrec_ndcg(student, dev_set), abs=1e-6)
    assert metrics["R@100"] == pytest.approx(1.0)  # 36 passages: every relevant one is in the top 100


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
