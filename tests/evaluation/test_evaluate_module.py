"""The `evaluate` metric module loads offline from the installed package and agrees with evaluate_run."""

from __future__ import annotations

import pytest

evaluate = pytest.importorskip("evaluate")

from tct_hf.evaluation import METRIC_MODULE_PATH, evaluate_run  # noqa: E402


def test_metric_module_loads_offline_and_wraps_evaluate_run(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(METRIC_MODULE_PATH)
    run = {"0": {"d1": 2.0, "d2": 1.0, "d3": 1.0}, "1": {"a": 0.3, "b": 0.9}, "2": {}}
    qrels = {"0": {"d3": 2, "d1": 0}, "1": {"a": 1}, "2": {"x": 1}}
    predictions = [{"doc_ids": list(docs), "scores": list(docs.values())} for docs in run.values()]
    references = [{"doc_ids": list(judged), "relevance": list(judged.values())} for judged in qrels.values()]
    names = ["RR@10", "nDCG@10", "R@1000", "AP"]
    got = metric.compute(predictions=predictions, references=references, metrics=names)
    expected = evaluate_run(run, qrels, metrics=names).metrics
    assert got == pytest.approx(expected, abs=1e-12)
    assert got["RR@10"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)  # d3 ties d2, trec_eval puts d3 first


def test_metric_module_add_batch_and_length_check():
    metric = evaluate.load(METRIC_MODULE_PATH)
    metric.add_batch(
        predictions=[{"doc_ids": ["a", "b"], "scores": [1.0, 2.0]}],
        references=[{"doc_ids": ["a"], "relevance": [1]}],
    )
    assert metric.compute(metrics=["RR@10"]) == {"RR@10": pytest.approx(0.5)}
    with pytest.raises(ValueError, match="2 doc_ids for 1 scores"):
        metric.compute(
            predictions=[{"doc_ids": ["a", "b"], "scores": [1.0]}],
            references=[{"doc_ids": ["a"], "relevance": [1]}],
        )
